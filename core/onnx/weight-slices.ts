// Which entries of which initializers each circuit node owns, found from the graph's structure (never from names):
// - a head a{L}.h{H}: its columns of the query, key and value projections (and of their biases), and its rows of
//   the output projection. Separate q/k/v projections, a fused QKV projection split into q, k, v (GPT-2's
//   Conv1D/Gemm or a MatMul), and the per-head interleaved layout ([.., H, 3·d_head], GPT-NeoX) are recognised
//   by following the projection's output columns through the layout operators (bias Add, constant scale, Split,
//   Slice, Reshape, Transpose) to the first tensor [B, heads, ·, ·]; which of q, k, v it is comes from which
//   operand of the attention products it feeds. From that tensor on, each head's slot is taken to stay its own
//   (rotary, scaling and the repeat of key/value groups act per head); test/engine/weight-slices.test.ts checks
//   this on every zoo family by zeroing a head's slices and comparing every head's hook_z.
// - grouped-query and multi-query attention (G key/value heads for H query heads): query head h reads key/value
//   group ⌊h / (H/G)⌋, the usual repeat. A group's key and value columns belong to every head of the group, so
//   protecting one head protects its group's keys and values (and zeroing them changes the whole group).
// - the output projection's bias belongs to no head (it is added whatever the heads compute; ablating a head
//   leaves it); the norm before attention is shared by the heads and belongs to none.
// - an MLP m{L}: every initializer (more than one element, floating point) that only its branch reads: its
//   matrices, biases and, when no other branch reads it, its input norm's weights.
// A layout not recognised is refused with the node named; nothing is guessed.
import { UserError } from '../errors';
import { parseNodeId } from '../ids';
import type { LayerTensors, ModelStructure } from './detect';
import { constInts, GraphIndex, isConstScalar } from './graph';
import { initializerBehind, readersOf } from './initializers';
import { DataType, num, type Graph, type OnnxNode } from './model';
import { inferShapes, type Dim } from './shapes';

/** What a slice is to its node, in TransformerLens' words; `mlp` for every initializer an MLP owns. */
export type SliceRole = 'W_Q' | 'W_K' | 'W_V' | 'b_Q' | 'b_K' | 'b_V' | 'W_O' | 'mlp';

/** Entries of one initializer a node owns: indices [start, end) along `axis`, every index along the others. */
export interface OwnedSlice { initializer: string; role: SliceRole; dims: number[]; axis: number; start: number; end: number }

type Qkv = 'q' | 'k' | 'v';
const ROLE_ORDER: SliceRole[] = ['W_Q', 'b_Q', 'W_K', 'b_K', 'W_V', 'b_V', 'W_O'];

/** How a tensor's entries map to the projection's output columns. */
type Layout =
  /** Last axis index i ↔ column o + i. */
  | { kind: 'flat'; o: number }
  /** Index a on axis hAx, c on axis fAx ↔ column o + a·S + c0 + c (A heads of stride S). */
  | { kind: 'heads'; o: number; hAx: number; fAx: number; A: number; S: number; c0: number };

/** A weight product: `weight` [in, out] (MatMul, Gemm) or [out, in] (Gemm with transB); `colAxis` indexes its outputs. */
interface Projection { node: OnnxNode; weight: string; dims: number[]; colAxis: number; width: number; biases: { init: string; offset: number; dims: number[] }[] }

/** A head input's columns: group a has columns [o + a·S + c0, + C). */
interface Columns { o: number; A: number; S: number; c0: number; C: number }

interface Cx { graph: Graph; g: GraphIndex; dims: Map<string, Dim[]>; what: string; s: ModelStructure }

/**
 * The slices each node of `nodes` owns, in the graph as normalised and detected (normalizeExport, detectStructure).
 * Throws a UserError naming the node when its layout is not recognised.
 */
export function ownedSlices(graph: Graph, s: ModelStructure, nodes: readonly string[], what: string): Map<string, OwnedSlice[]> {
  const cx: Cx = { graph, g: new GraphIndex(graph), dims: inferShapes(graph).dims, what, s };
  const perLayer = new Map<number, { heads: OwnedSlice[][] }>();
  const out = new Map<string, OwnedSlice[]>();
  for (const id of nodes) {
    const p = parseNodeId(id);
    if (p.kind === 'input' || p.kind === 'logits') throw new UserError(`${what}: "${id}" owns no weights of a layer (only heads a<L>.h<H> and MLPs m<L> do)`);
    const L = s.layers[p.layer];
    if (!L) throw new UserError(`${what}: ${id} is not in the model (${s.layers.length} layers)`);
    if (p.kind === 'mlp') { out.set(id, mlpSlices(cx, L, id)); continue; }
    let layer = perLayer.get(p.layer);
    if (!layer) { layer = { heads: headSlices(cx, L, p.layer, id) }; perLayer.set(p.layer, layer); }
    const owned = layer.heads[p.head];
    if (!owned) throw new UserError(`${what}: ${id} is not in the model (${layer.heads.length} heads per layer)`);
    out.set(id, owned);
  }
  return out;
}

function refuse(cx: Cx, id: string, reason: string, n?: OnnxNode): never {
  throw new UserError(`${cx.what}: cannot tell which weights ${id} owns: ${reason}${n ? ` (node "${n.name || n.output[0]}", ${n.opType})` : ''}. ` +
    'Protect recognises separate, fused (GPT-2) and per-head interleaved (GPT-NeoX) q/k/v projections and a plain output projection; nothing is guessed.');
}


/** The numeric dims of an initializer. */
function initDims(cx: Cx, name: string): number[] {
  return cx.graph.initializer.find((t) => t.name === name)!.dims.map(num);
}

/** The weight product `n` reading `x`, when its weight is a constant 2-D initializer. */
function projectionOf(cx: Cx, n: OnnxNode, x: string): Projection | undefined {
  if (n.opType !== 'MatMul' && n.opType !== 'Gemm') return undefined;
  const weight = initializerBehind(cx.g, n.input[1]);
  if (n.input[0] !== x || !weight) return undefined;
  const dims = initDims(cx, weight);
  if (dims.length !== 2) return undefined;
  const attr = (k: string) => num(n.attribute.find((a) => a.name === k)?.i);
  if (n.opType === 'Gemm' && attr('transA')) return undefined;
  const colAxis = n.opType === 'Gemm' && attr('transB') ? 0 : 1;
  const p: Projection = { node: n, weight, dims, colAxis, width: dims[colAxis]!, biases: [] };
  const c = n.opType === 'Gemm' ? initializerBehind(cx.g, n.input[2]) : undefined;
  if (c) {
    const cd = initDims(cx, c);
    if (cd.reduce((a, v) => a * v, 1) !== p.width) return undefined;
    p.biases.push({ init: c, offset: 0, dims: cd });
  }
  return p;
}

/** Every head's slices in layer `l` (one refusal names `id`, the node asked for). */
function headSlices(cx: Cx, L: LayerTensors, l: number, id: string): OwnedSlice[][] {
  const { g } = cx;
  const zDims = cx.dims.get(L.zBhtd);
  const [H, dh] = [zDims?.[1], zDims?.[3]];
  if (zDims?.length !== 4 || typeof H !== 'number' || typeof dh !== 'number') refuse(cx, id, `the per-head output of layer ${l} has no known [batch, heads, seq, d_head] shape`);
  const branch = new Set(g.between(L.residPre, L.attnOut) ?? refuse(cx, id, `the attention branch of layer ${l} was not found`));
  const { qk, pv } = attentionProducts(cx, L, l, id);
  const operands: Record<Qkv, string> = { q: qk.input[0]!, k: qk.input[1]!, v: pv.input[1]! };
  const afterZ = g.descendants(L.zBhtd);
  const projections = [...branch].map((i) => g.node(i)).filter((n) => !afterZ.has(g.producer.get(n.output[0]!)!) && (n.opType === 'MatMul' || n.opType === 'Gemm') && initializerBehind(g, n.input[1]));
  const heads: OwnedSlice[][] = Array.from({ length: H }, () => []);
  const found = new Set<Qkv>();
  for (const n of projections) {
    const p = projectionOf(cx, n, n.input[0]!) ?? refuse(cx, id, 'a weight product whose weight is not a 2-D [in, out] matrix', n);
    exclusive(cx, id, p.weight, [n]);
    const roles = trackQkv(cx, p, branch, operands, id);
    for (const [role, cols] of roles) {
      if (found.has(role)) refuse(cx, id, `two projections feed the ${role === 'q' ? 'queries' : role === 'k' ? 'keys' : 'values'} of layer ${l}`, n);
      found.add(role);
      if (H % cols.A !== 0 || (role === 'q' && cols.A !== H)) refuse(cx, id, `${cols.A} ${role} heads for ${H} query heads`, n);
      const W = role === 'q' ? 'W_Q' : role === 'k' ? 'W_K' : 'W_V';
      const b = role === 'q' ? 'b_Q' : role === 'k' ? 'b_K' : 'b_V';
      for (let h = 0; h < H; h++) {
        const a = Math.floor(h / (H / cols.A));
        const start = cols.o + a * cols.S + cols.c0;
        heads[h]!.push({ initializer: p.weight, role: W, dims: p.dims, axis: p.colAxis, start, end: start + cols.C });
        for (const bias of p.biases) {
          const [bs, be] = [Math.max(start, bias.offset) - bias.offset, Math.min(start + cols.C, bias.offset + bias.dims.at(-1)!) - bias.offset];
          if (be > bs) heads[h]!.push({ initializer: bias.init, role: b, dims: bias.dims, axis: bias.dims.length - 1, start: bs, end: be });
        }
      }
    }
  }
  for (const role of ['q', 'k', 'v'] as const) if (!found.has(role)) refuse(cx, id, `no projection of the residual stream feeds the ${role === 'q' ? 'queries' : role === 'k' ? 'keys' : 'values'} of layer ${l}`);
  const o = trackOutput(cx, L, branch, H, dh, id);
  for (let h = 0; h < H; h++) heads[h]!.push({ initializer: o.weight, role: 'W_O', dims: o.dims, axis: o.rowAxis, start: h * dh, end: (h + 1) * dh });
  return heads.map((slices) => slices.sort((a, b) => ROLE_ORDER.indexOf(a.role) - ROLE_ORDER.indexOf(b.role)));
}

/** The attention products: Q·Kᵀ (both operands computed from the stream) and pattern·V. */
function attentionProducts(cx: Cx, L: LayerTensors, l: number, id: string): { qk: OnnxNode; pv: OnnxNode } {
  const { g } = cx;
  const fromStream = g.descendants(L.residPre);
  const qk = [...g.ancestors(L.pattern, L.residPre).nodes].map((i) => g.node(i))
    .filter((n) => n.opType === 'MatMul' && n.input.every((t) => fromStream.has(g.producer.get(t) ?? -1)));
  if (qk.length !== 1) refuse(cx, id, `expected one query·key product in layer ${l}, found ${qk.length}`);
  let pvOut = L.zBhtd;
  while (['Reshape', 'Identity'].includes(g.producerOf(pvOut)?.opType ?? '')) pvOut = g.producerOf(pvOut)!.input[0]!;
  const pv = g.producerOf(pvOut);
  if (pv?.opType !== 'MatMul') refuse(cx, id, `the pattern·V product of layer ${l} was not found`);
  return { qk: qk[0]!, pv: pv! };
}

/** Refuses when initializer `name` is read by nodes other than `own` (weights shared between layers or tied). */
function exclusive(cx: Cx, id: string, name: string, own: OnnxNode[]): void {
  const other = readersOf(cx.g, name).find((n) => !own.includes(n));
  if (other) refuse(cx, id, `its weight "${name}" is also read elsewhere`, other);
}

/**
 * Follows projection `p`'s output columns to the first [B, heads, ·, ·] tensors and names the head input (q, k
 * or v) each feeds. Every column must reach exactly one head input.
 */
function trackQkv(cx: Cx, p: Projection, branch: Set<number>, operands: Record<Qkv, string>, id: string): Map<Qkv, Columns> {
  const { g } = cx;
  const pending: [string, Layout][] = [[p.node.output[0]!, { kind: 'flat', o: 0 }]];
  const seen = new Set<string>();
  const finished: [string, Columns][] = [];
  const stuck: [string, OnnxNode, string][] = [];
  while (pending.length) {
    const [t, lay] = pending.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    const d = cx.dims.get(t);
    if (lay.kind === 'heads' && d?.length === 4 && lay.hAx === 1) {
      const C = d[lay.fAx];
      if (typeof C !== 'number') { stuck.push([t, g.producerOf(t)!, 'a head width that is not known']); continue; }
      finished.push([t, { o: lay.o, A: lay.A, S: lay.S, c0: lay.c0, C }]);
      continue;
    }
    for (const i of g.consumers.get(t) ?? []) {
      const n = g.node(i);
      if (!branch.has(i) || n.opType === 'Shape' || n.opType === 'Size') continue;
      const next = step(cx, p, n, t, lay);
      if (typeof next === 'string') stuck.push([t, n, next]);
      else next.forEach(([o, l2]) => pending.push([o, l2]));
    }
  }
  const reaches = (t: string, target: string) => valuesReach(g, t, target);
  for (const [t, n, why] of stuck) {
    if (Object.values(operands).some((op) => reaches(t, op))) refuse(cx, id, `the projection's output reaches the attention through ${why}`, n);
  }
  const roles = new Map<Qkv, Columns>();
  const used = new Uint8Array(p.width);
  for (const [t, cols] of finished) {
    const to = (Object.keys(operands) as Qkv[]).filter((r) => reaches(t, operands[r]));
    if (to.length === 0) continue; // a key/value cache output, not read by the attention
    if (to.length > 1) refuse(cx, id, `one tensor feeds the ${to.join(' and ')} of the attention`, g.producerOf(t));
    const prev = roles.get(to[0]!);
    if (prev && JSON.stringify(prev) !== JSON.stringify(cols)) refuse(cx, id, `two paths feed the ${to[0]} with different columns`, g.producerOf(t));
    if (prev) continue;
    roles.set(to[0]!, cols);
    for (let a = 0; a < cols.A; a++) for (let c = 0; c < cols.C; c++) used[cols.o + a * cols.S + cols.c0 + c]!++;
  }
  const bad = used.findIndex((u) => u !== 1);
  if (roles.size === 0 || bad >= 0) {
    refuse(cx, id, roles.size === 0 ? 'the projection reaches no query, key or value' : `column ${bad} of the projection's ${p.width} reaches ${used[bad]} head inputs (expected exactly 1)`, p.node);
  }
  return roles;
}

/** What node `n` makes of layout `lay` on its input `t`: its outputs' layouts, or why it is not understood. */
function step(cx: Cx, p: Projection, n: OnnxNode, t: string, lay: Layout): [string, Layout][] | string {
  const { g } = cx;
  const out = n.output[0]!;
  const inDims = cx.dims.get(t);
  const r = inDims?.length ?? 0;
  const od = cx.dims.get(out);
  const same = (): [string, Layout][] => [[out, lay]];
  if (n.opType === 'Identity' || n.opType === 'Cast' || n.opType === 'Dropout') return same();
  if ((n.opType === 'Mul' && isConstScalar(g, n.input[0] === t ? n.input[1]! : n.input[0]!)) || (n.opType === 'Div' && n.input[0] === t && isConstScalar(g, n.input[1]!))) return same();
  const w = inDims?.at(-1);
  if (lay.kind === 'flat') {
    if (n.opType === 'Add' && typeof w === 'number') {
      const bias = initializerBehind(g, n.input[0] === t ? n.input[1] : n.input[0]);
      const bd = bias ? initDims(cx, bias) : undefined;
      if (!bias || !bd || bd.at(-1) !== w || bd.reduce((a, v) => a * v, 1) !== w || !isFloat(cx, bias)) return 'an Add of something other than a bias vector';
      if (readersOf(g, bias).length !== 1) return `a bias "${bias}" read elsewhere too`;
      p.biases.push({ init: bias, offset: lay.o, dims: bd });
      return same();
    }
    if (n.opType === 'Reshape' && n.input[0] === t && typeof w === 'number' && od && od.length >= 2) {
      // [.., A, S] with A·S the width splits the columns into heads (A = 1 too: one key/value head); a last
      // axis of the same width under a leading axis of unknown size ([B·T, N] → [B, T, N]) keeps them as they are.
      const [A, S] = od.slice(-2);
      if (typeof A === 'number' && typeof S === 'number' && A * S === w) return [[out, { kind: 'heads', o: lay.o, hAx: od.length - 2, fAx: od.length - 1, A, S, c0: 0 }]];
      if (S === w) return same();
    }
    if (n.opType === 'Split' && n.input[0] === t && splitAxis(n, r) === r - 1) {
      const widths = n.output.map((o) => cx.dims.get(o)?.at(-1));
      if (widths.every((x): x is number => typeof x === 'number')) {
        let o = lay.o;
        return n.output.map((name, k) => { const at = o; o += widths[k]!; return [name, { kind: 'flat', o: at }]; });
      }
    }
    if (n.opType === 'Slice' && n.input[0] === t && typeof w === 'number') {
      const sl = sliceOf(cx, n, r, w);
      if (sl && sl.axis === r - 1) return [[out, { kind: 'flat', o: lay.o + sl.start }]];
    }
    if (n.opType === 'Transpose' && perm(n)?.[r - 1] === r - 1) return same();
    return `a ${n.opType} not understood on the projection's columns`;
  }
  if (n.opType === 'Transpose') {
    const pm = perm(n);
    if (!pm) return 'a Transpose without a permutation';
    return [[out, { ...lay, hAx: pm.indexOf(lay.hAx), fAx: pm.indexOf(lay.fAx) }]];
  }
  if (n.opType === 'Slice' && n.input[0] === t) {
    const fw = inDims?.[lay.fAx];
    const sl = typeof fw === 'number' ? sliceOf(cx, n, r, fw) : undefined;
    if (sl && sl.axis === lay.fAx) return [[out, { ...lay, c0: lay.c0 + sl.start }]];
    return 'a Slice that is not within each head';
  }
  if (n.opType === 'Split' && n.input[0] === t && splitAxis(n, r) === lay.fAx) {
    const widths = n.output.map((o) => cx.dims.get(o)?.[lay.fAx]);
    if (widths.every((x): x is number => typeof x === 'number')) {
      let c = lay.c0;
      return n.output.map((name, k) => { const at = c; c += widths[k]!; return [name, { ...lay, c0: at }]; });
    }
  }
  return `a ${n.opType} on the heads before they are laid out [batch, heads, ·, ·]`;
}

/** Whether `target`'s values depend on `t`'s (not only its shape: reads through Shape and Size are left out). */
function valuesReach(g: GraphIndex, t: string, target: string): boolean {
  const seen = new Set<string>();
  const pending = [t];
  while (pending.length) {
    const x = pending.pop()!;
    if (x === target) return true;
    if (seen.has(x)) continue;
    seen.add(x);
    for (const n of g.consumersOf(x)) if (n.opType !== 'Shape' && n.opType !== 'Size') pending.push(...n.output.filter(Boolean));
  }
  return false;
}

function isFloat(cx: Cx, name: string): boolean {
  const t = cx.graph.initializer.find((x) => x.name === name)!;
  return t.dataType === DataType.FLOAT || t.dataType === DataType.FLOAT16 || t.dataType === DataType.BFLOAT16 || t.dataType === DataType.DOUBLE;
}

function perm(n: OnnxNode): number[] | undefined {
  return n.attribute.find((a) => a.name === 'perm')?.ints?.map(num);
}

function splitAxis(n: OnnxNode, rank: number): number {
  const a = num(n.attribute.find((x) => x.name === 'axis')?.i);
  return a < 0 ? a + rank : a;
}

/** A Slice along one axis with step 1 and constant bounds: the axis (non-negative) and its start. */
function sliceOf(cx: Cx, n: OnnxNode, rank: number, size: number): { axis: number; start: number } | undefined {
  const attr = (k: string) => n.attribute.find((a) => a.name === k)?.ints?.map(num);
  const starts = n.input[1] ? constInts(cx.g, n.input[1]) : attr('starts');
  const axes = n.input[3] ? constInts(cx.g, n.input[3]) : attr('axes') ?? starts?.map((_, i) => i);
  const steps = n.input[4] ? constInts(cx.g, n.input[4]) : undefined;
  if (!starts || !axes || starts.length !== 1 || axes.length !== 1 || (steps && steps.some((x) => x !== 1))) return undefined;
  const axis = axes[0]! < 0 ? axes[0]! + rank : axes[0]!;
  const s0 = starts[0]!;
  return { axis, start: Math.min(Math.max(s0 < 0 ? s0 + size : s0, 0), size) };
}

/** The output projection: per-head outputs [B, H, T, d_head] → [.., H·d_head] → weight product. */
function trackOutput(cx: Cx, L: LayerTensors, branch: Set<number>, H: number, dh: number, id: string): { weight: string; dims: number[]; rowAxis: number } {
  const { g } = cx;
  let t = L.zBhtd;
  let lay: Layout = { kind: 'heads', o: 0, hAx: 1, fAx: 3, A: H, S: dh, c0: 0 };
  for (let hops = 0; hops < 16; hops++) {
    const next = (g.consumers.get(t) ?? []).filter((i) => branch.has(i) && !['Shape', 'Size'].includes(g.node(i).opType)).map((i) => g.node(i));
    if (next.length !== 1) refuse(cx, id, `the per-head outputs are read by ${next.length} operators on the way to the output projection`, next[0] ?? g.producerOf(t));
    const n = next[0]!;
    if (lay.kind === 'flat') {
      const p = projectionOf(cx, n, t);
      if (p) {
        if (p.dims[1 - p.colAxis] !== H * dh) refuse(cx, id, `an output projection of shape [${p.dims}] for ${H} heads of ${dh}`, n);
        exclusive(cx, id, p.weight, [n]);
        return { weight: p.weight, dims: p.dims, rowAxis: 1 - p.colAxis };
      }
    }
    const last = cx.dims.get(n.output[0]!)?.at(-1);
    const r = cx.dims.get(t)?.length ?? 0;
    const pm = n.opType === 'Transpose' ? perm(n) : undefined;
    // A row-major Reshape whose last axis is H·d_head flattens exactly the input's trailing axes of that product.
    // Where shapes leave the last size unproven, the output projection's H·d_head rows make it so at run time.
    const merges = last === H * dh || typeof last !== 'number';
    if (n.opType === 'Reshape' && n.input[0] === t && merges && (lay.kind === 'flat' || (lay.hAx === r - 2 && lay.fAx === r - 1))) lay = { kind: 'flat', o: 0 };
    else if (pm && lay.kind === 'heads') lay = { ...lay, hAx: pm.indexOf(lay.hAx), fAx: pm.indexOf(lay.fAx) };
    else if (!['Identity', 'Cast'].includes(n.opType) && !(pm && pm[r - 1] === r - 1)) {
      refuse(cx, id, 'the per-head outputs reach the output projection through an operator not understood', n);
    }
    t = n.output[0]!;
  }
  return refuse(cx, id, 'the output projection was not found', g.producerOf(t));
}

/** Every initializer only the MLP of layer L reads (more than one element, floating point). */
function mlpSlices(cx: Cx, L: LayerTensors, id: string): OwnedSlice[] {
  const { g } = cx;
  if (!L.mlpIn) refuse(cx, id, 'the MLP\'s input is not known (the hooks came from a sidecar)');
  const branch = g.between(L.mlpIn!, L.mlpOut) ?? refuse(cx, id, 'the MLP branch was not found');
  // What the branch computes for others too (the norm a parallel block's attention shares) is not the MLP's own.
  const inBranch = new Set(branch);
  const shared = new Set<number>();
  const pending = branch.filter((i) => g.node(i).output.some((o) => o !== L.mlpOut && (g.consumers.get(o) ?? []).some((c) => !inBranch.has(c))));
  while (pending.length) {
    const i = pending.pop()!;
    if (shared.has(i)) continue;
    shared.add(i);
    for (const t of g.node(i).input) { const p = g.producer.get(t); if (p !== undefined && inBranch.has(p)) pending.push(p); }
  }
  const nodes = new Set(branch.filter((i) => !shared.has(i)));
  const out: OwnedSlice[] = [];
  const seen = new Set<string>();
  for (const i of nodes) {
    for (const t of g.node(i).input) {
      const init = initializerBehind(g, t);
      if (!init || seen.has(init) || !isFloat(cx, init)) continue;
      seen.add(init);
      const dims = initDims(cx, init);
      if (dims.length === 0 || dims.reduce((a, v) => a * v, 1) <= 1) continue;
      if (!readersOf(g, init).every((n) => nodes.has(g.producer.get(n.output[0]!)!))) continue;
      out.push({ initializer: init, role: 'mlp', dims, axis: 0, start: 0, end: dims[0]! });
    }
  }
  if (!out.some((x) => x.dims.length === 2)) refuse(cx, id, 'no weight matrix is read by the MLP alone');
  return out;
}
