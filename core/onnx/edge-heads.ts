// Per-head copies of a layer's attention for edge instrumentation (core/onnx/edges.ts): each head's query, key
// and value computed from its own copy of the residual stream, and each head's share of the attention output.
// Where the export's projection is recognised, each head's copy is multiplied by that head's columns of the weight
// only; otherwise the path is cloned with the heads folded into the batch axis and each head keeps its own slot.
import { UserError } from '../errors';
import type { Builder } from './builder';
import type { ModelStructure } from './detect';
import { constInts, isConstScalar, type GraphIndex } from './graph';
import { initializerBehind } from './initializers';
import { intAttr, intsAttr, num, type Graph, type OnnxNode, type TensorProto } from './model';

/** What the steps of one edge rewrite share. */
export interface EdgeRewrite {
  graph: Graph;
  g: GraphIndex;
  s: ModelStructure;
  /** Query heads. */
  heads: number;
  what: string;
  b: Builder;
  /** Graph inputs with a batch axis other than the token ids: position ids, attention masks, past key/values. */
  batchInputs: string[];
  /** Nodes whose values (not just shapes: a length read with Shape is fine) come from batchInputs. */
  fromBatchInput: Set<number>;
  initByName: Map<string, TensorProto>;
}

/** Beyond ±2^62 a Slice bound means "to the end". */
export const BIG = 2 ** 62;

export function edgeFail(cx: EdgeRewrite, msg: string): never {
  throw new UserError(`${cx.what}: edge-level analysis cannot be set up for this export: ${msg}. Node-level analysis works on it.`);
}

export function unsq(b: Builder, x: string, axis: number): string {
  return b.op('Unsqueeze', [x, b.i64([axis])]);
}

/** `x` repeated `fold` times along its first axis, unless that axis is 1 (then it broadcasts as it is). */
function tileBatch({ b }: EdgeRewrite, x: string, fold: number): string {
  const shape = b.op('Shape', [x]);
  const first = b.op('Slice', [shape, b.i64([0]), b.i64([1])]);
  const r0 = b.op('Where', [b.op('Equal', [first, b.i64([1])]), b.i64([1]), b.i64([fold])]);
  const ones = b.filled(b.op('Sub', [b.op('Shape', [shape]), b.i64([1])]), 1, 'int64');
  return b.op('Tile', [x, b.op('Concat', [r0, ones], [intAttr('axis', 0)])]);
}

/**
 * Clones the nodes between `from` and `to` onto `newFrom`, whose outermost axis is `fold` times the batch.
 * `given`: tensors on the path whose values are supplied (in the same layout); what only produces them is not cloned.
 */
export function clonePath(cx: EdgeRewrite, from: string, to: string, newFrom: string, fold: number, tag: string, given?: Map<string, string>): string {
  const { b, g } = cx;
  let nodes = g.between(from, to) ?? edgeFail(cx, `"${to}" does not depend on "${from}"`);
  if (given?.size) {
    const need = new Set<number>();
    const stack = [to];
    const seen = new Set<string>();
    while (stack.length) {
      const t = stack.pop()!;
      if (seen.has(t) || t === from || given.has(t)) continue;
      seen.add(t);
      const p = g.producer.get(t);
      if (p === undefined || need.has(p)) continue;
      need.add(p);
      for (const i of g.node(p).input) if (i) stack.push(i);
    }
    nodes = nodes.filter((i) => need.has(i));
  }
  const rename = new Map<string, string>([[from, newFrom], ...(given ?? [])]);
  for (const i of nodes) for (const o of g.node(i).output) if (o && !given?.has(o)) rename.set(o, `${o}@${tag}`);
  for (const i of nodes) {
    const n = g.node(i);
    const input = n.input.map((t) => {
      if (rename.has(t)) return rename.get(t)!;
      // Values with a batch axis from other inputs (rotary tables gathered by position ids, an empty past
      // key/value) join the folded batch: repeat them along it.
      if (cx.batchInputs.includes(t) || cx.fromBatchInput.has(g.producer.get(t) ?? -1)) return tileBatch(cx, t, fold);
      return t;
    });
    if ((n.opType === 'Reshape' || n.opType === 'Expand') && n.input[1] && !rename.has(n.input[1])) {
      // A target shape computed outside the cloned path names the batch size: scale its first entry (kept
      // when 0 = copy or −1 = infer).
      const shape = n.input[1];
      const first = b.op('Slice', [shape, b.i64([0]), b.i64([1])]);
      const scaled = b.op('Where', [b.op('Greater', [first, b.i64([0])]), b.op('Mul', [first, b.i64([fold])]), first]);
      input[1] = b.op('Concat', [scaled, b.op('Slice', [shape, b.i64([1]), b.i64([BIG])])], [intAttr('axis', 0)]);
    }
    b.add({ ...n, name: `${n.name}@${tag}`, input, output: n.output.map((t) => rename.get(t) ?? t) });
  }
  return rename.get(to)!;
}

/** [H·B, H, a, c] (heads folded outermost) → [B, H, a, c], keeping head h's slot from copy h. */
export function diagonal({ b, heads }: EdgeRewrite, x: string): string {
  const shape = b.op('Concat', [b.i64([heads, -1]), b.op('Slice', [b.op('Shape', [x]), b.i64([1]), b.i64([BIG])])], [intAttr('axis', 0)]);
  const eye = new Float32Array(heads * heads);
  for (let h = 0; h < heads; h++) eye[h * heads + h] = 1;
  const masked = b.op('Mul', [b.op('Reshape', [x, shape]), b.floats([heads, 1, heads, 1, 1], eye)]);
  return b.op('ReduceSum', [masked, b.i64([0])], [intAttr('keepdims', 0)]);
}

/** Per-head residual inputs [B, H, T, D] → [H·B, T, D], heads outermost. */
export function foldHeads({ b }: EdgeRewrite, x: string, resid: string): string {
  const t = b.op('Transpose', [x], [intsAttr('perm', [1, 0, 2, 3])]);
  const shape = b.op('Concat', [b.i64([-1]), b.op('Slice', [b.op('Shape', [resid]), b.i64([1]), b.i64([BIG])])], [intAttr('axis', 0)]);
  return b.op('Reshape', [t, shape]);
}

// ---- Head-sliced projections: each head's copy multiplied by its own columns of the weight only. ----

/** The initializer behind `t`, through Identity nodes. */
function initName(cx: EdgeRewrite, t: string | undefined): string | undefined {
  return initializerBehind(cx.g, t);
}

function dimsOfInit(cx: EdgeRewrite, t: string | undefined): number[] | undefined {
  const n = initName(cx, t);
  return n !== undefined ? cx.initByName.get(n)!.dims.map(num) : undefined;
}

/** The one consumer of `t` among `on`, if there is exactly one. */
function nextOn(g: GraphIndex, t: string, on: Set<number>): OnnxNode | undefined {
  // A Shape read of the tensor (GPT-NeoX views its fused QKV as qkv.size()[:-1] + (H, 3·d_head)) is not a step.
  const c = (g.consumers.get(t) ?? []).filter((i) => on.has(i) && g.node(i).opType !== 'Shape');
  return c.length === 1 ? g.node(c[0]!) : undefined;
}

/** The last two entries of a Reshape's target shape, when they are constants. */
function shapeTail(g: GraphIndex, shape: string): [number, number] | undefined {
  const direct = constInts(g, shape);
  if (direct) return direct.length >= 2 ? [direct[direct.length - 2]!, direct[direct.length - 1]!] : undefined;
  const c = g.producerOf(shape);
  if (c?.opType !== 'Concat' || c.input.length < 2) return undefined;
  const a = constInts(g, c.input[c.input.length - 2]!);
  const b = constInts(g, c.input[c.input.length - 1]!);
  return a?.length === 1 && b?.length === 1 ? [a[0]!, b[0]!] : undefined;
}

/**
 * `target` (a head-split query, key or value tensor) computed from per-head residual inputs `x` [B, T, H, D]
 * with each head multiplied by its own columns of the projection weight only: 1× the projection's cost, not
 * H×. Recognised when the path from `from` is [norm] → MatMul(weight [D, N]) → [Add bias] → [Split on the last
 * axis] → Reshape to [..., H, d_head] → anything; otherwise undefined (the caller folds the heads instead).
 */
export function slicedProjection(cx: EdgeRewrite, from: string, target: string, x: string, tag: string): string | undefined {
  const { b, g, heads } = cx;
  const nodes = g.between(from, target);
  if (!nodes) return undefined;
  const on = new Set(nodes);
  const mms = nodes.map((i) => g.node(i)).filter((n) => n.opType === 'MatMul' && dimsOfInit(cx, n.input[1])?.length === 2);
  if (mms.length !== 1) return undefined;
  const mm = mms[0]!;
  const [D, N] = dimsOfInit(cx, mm.input[1]) as [number, number];
  let cur = mm.output[0]!;
  let n = nextOn(g, cur, on);
  let bias: string | undefined;
  if (n?.opType === 'Add') {
    const other = n.input.find((t) => t !== cur);
    const dims = dimsOfInit(cx, other);
    if (!dims || dims.length !== 1 || dims[0] !== N) return undefined;
    bias = initName(cx, other);
    cur = n.output[0]!;
    n = nextOn(g, cur, on);
  }
  // A constant scale (OPT scales the query by 1/√d_head right after its projection) commutes with the slicing.
  const scales: OnnxNode[] = [];
  while ((n?.opType === 'Mul' || n?.opType === 'Div') && n.input[0] === cur && isConstScalar(g, n.input[1]!)) {
    scales.push(n);
    cur = n.output[0]!;
    n = nextOn(g, cur, on);
  }
  let offset = 0;
  let width = N;
  if (n?.opType === 'Split') {
    const axis = num(n.attribute.find((a) => a.name === 'axis')?.i);
    if (axis !== -1 && axis !== 2) return undefined;
    const parts = n.output.length;
    const sizes = (n.input[1] ? constInts(g, n.input[1]) : n.attribute.find((a) => a.name === 'split')?.ints?.map(num))
      ?? (N % parts === 0 ? Array.from({ length: parts }, () => N / parts) : undefined);
    const used = n.output.map((o, k) => ((g.consumers.get(o) ?? []).some((i) => on.has(i)) ? k : -1)).filter((k) => k >= 0);
    if (!sizes || sizes.length !== parts || used.length !== 1) return undefined;
    const k = used[0]!;
    offset = sizes.slice(0, k).reduce((a, v) => a + v, 0);
    width = sizes[k]!;
    cur = n.output[k]!;
    n = nextOn(g, cur, on);
  }
  if (n?.opType !== 'Reshape' || n.input[0] !== cur) return undefined;
  const tail = shapeTail(g, n.input[1]!);
  // H heads of their own, or G key/value heads shared by groups of H/G query heads (query head h reads group
  // ⌊h / (H/G)⌋, the usual repeat of grouped-query attention).
  if (!tail || tail[1] <= 0 || tail[0] * tail[1] !== width || tail[0] > heads || heads % tail[0] !== 0) return undefined;
  const [G, dh] = tail;
  const group = Array.from({ length: heads }, (_, h) => Math.floor(h / (heads / G)));
  const folded = foldHeads(cx, x, from); // [H·B, T, D], heads outermost
  const y = mm.input[0] === from ? folded : clonePath(cx, from, mm.input[0]!, folded, heads, `${tag}n`);
  const perGroup = (t: string, axis: number, shape: number[]) => b.op('Reshape', [b.op('Slice', [initName(cx, t)!, b.i64([offset]), b.i64([offset + width]), b.i64([axis])]), b.i64(shape)]);
  let w = b.op('Transpose', [perGroup(mm.input[1]!, 1, [D, G, dh])], [intsAttr('perm', [1, 0, 2])]); // [G, D, d_head]
  let biases = bias ? perGroup(bias, 0, [G, 1, dh]) : undefined;
  if (G !== heads) {
    w = b.op('Gather', [w, b.i64(group)], [intAttr('axis', 0)]);
    if (biases) biases = b.op('Gather', [biases, b.i64(group)], [intAttr('axis', 0)]);
  }
  let p = b.op('MatMul', [b.op('Reshape', [y, b.i64([heads, -1, D])]), w]); // [H, B·T, d_head]: head h from its own copy
  if (biases) p = b.op('Add', [p, biases]);
  for (const sc of scales) p = b.op(sc.opType, [p, sc.input[1]!]);
  if (G === heads) {
    // Back to the layout of `cur` ([B, T, H·d_head]), then the rest of the path as it is.
    const back = b.op('Reshape', [b.op('Transpose', [p], [intsAttr('perm', [1, 0, 2])]), b.op('Shape', [cur])]);
    return clonePath(cx, cur, target, back, 1, tag);
  }
  // Grouped: query head h's copy holds its values in its group's slot ([H·B, T, G·d_head], zeros elsewhere).
  // The path is cloned on the folded batch as when folding (so shapes computed from the normalised input see
  // the folded batch), with the projection's output given instead of cloned; head h keeps its own slot.
  const onehot = new Float32Array(heads * G);
  group.forEach((k, h) => { onehot[h * G + k] = 1; });
  const slots = b.op('Mul', [unsq(b, p, 2), b.floats([heads, 1, G, 1], onehot)]); // [H, B·T, G, d_head]
  const shape = b.op('Concat', [b.i64([-1]), b.op('Slice', [b.op('Shape', [cur]), b.i64([1]), b.i64([BIG])])], [intAttr('axis', 0)]);
  return diagonal(cx, clonePath(cx, from, target, folded, heads, tag, new Map([[cur, b.op('Reshape', [slots, shape])]])));
}

/**
 * Per-head outputs z_h · W_O[h] ([B, T, H, D], no bias) into `out`, when the z → attn_out path is
 * Transpose([0, 2, 1, 3]) → Reshape → MatMul(weight [H·d_head, D]) → [Add bias]. False otherwise.
 */
export function slicedHeadOutputs(cx: EdgeRewrite, z: string, attnOut: string, out: string, l: number): boolean {
  const { b, g, heads } = cx;
  const nodes = g.between(z, attnOut);
  if (!nodes) return false;
  const on = new Set(nodes);
  const t = nextOn(g, z, on);
  const perm = t?.attribute.find((a) => a.name === 'perm')?.ints?.map(num);
  if (t?.opType !== 'Transpose' || perm?.join() !== '0,2,1,3') return false;
  const r = nextOn(g, t.output[0]!, on);
  if (r?.opType !== 'Reshape' || r.input[0] !== t.output[0]) return false;
  const mm = nextOn(g, r.output[0]!, on);
  const w = dimsOfInit(cx, mm?.input[1]);
  if (mm?.opType !== 'MatMul' || mm.input[0] !== r.output[0] || w?.length !== 2 || w[0]! % heads !== 0) return false;
  let count = 3;
  if (mm.output[0] !== attnOut) {
    const add = nextOn(g, mm.output[0]!, on);
    const bias = dimsOfInit(cx, add?.input.find((x) => x !== mm.output[0]));
    if (add?.opType !== 'Add' || add.output[0] !== attnOut || bias?.length !== 1 || bias[0] !== w[1]) return false;
    count = 4;
  }
  if (nodes.length !== count) return false;
  const perHeadW = b.op('Reshape', [initName(cx, mm.input[1])!, b.i64([heads, w[0]! / heads, w[1]!])]); // [H, d_head, D]
  b.node('Transpose', [b.op('MatMul', [z, perHeadW])], [out], `circuitlens/edges/head_out_${l}`, [intsAttr('perm', [0, 2, 1, 3])]);
  return true;
}

/**
 * Per-head outputs [B, T, H, D] into `out` when the z → attn_out path is not the plain projection: the path on
 * H + 1 copies of z (copy h keeps head h; the last keeps none: the bias), differenced.
 */
export function foldedHeadOutputs(cx: EdgeRewrite, z: string, attnOut: string, out: string, l: number): void {
  const { b, heads } = cx;
  const keep = new Float32Array((heads + 1) * heads);
  for (let h = 0; h < heads; h++) keep[h * heads + h] = 1;
  const zCopies = b.op('Mul', [unsq(b, z, 0), b.floats([heads + 1, 1, heads, 1, 1], keep)]);
  const zShape = b.op('Concat', [b.i64([-1]), b.op('Slice', [b.op('Shape', [z]), b.i64([1]), b.i64([BIG])])], [intAttr('axis', 0)]);
  const outCopies = clonePath(cx, z, attnOut, b.op('Reshape', [zCopies, zShape]), heads + 1, `edges${l}o`); // [(H+1)·B, T, D]
  const oShape = b.op('Concat', [b.i64([heads + 1, -1]), b.op('Slice', [b.op('Shape', [outCopies]), b.i64([1]), b.i64([BIG])])], [intAttr('axis', 0)]);
  const o = b.op('Reshape', [outCopies, oShape]); // [H+1, B, T, D]
  const perHeadOut = b.op('Sub', [b.op('Slice', [o, b.i64([0]), b.i64([heads]), b.i64([0])]), b.op('Slice', [o, b.i64([heads]), b.i64([heads + 1]), b.i64([0])])]);
  b.node('Transpose', [perHeadOut], [out], `circuitlens/edges/head_out_${l}`, [intsAttr('perm', [1, 2, 0, 3])]);
}
