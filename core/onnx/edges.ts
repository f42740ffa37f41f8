// Edge-level instrumentation: every destination of the computational graph (each head's query, key and value
// input, each MLP's input, the logits' input) gets its own copy of the residual stream, so what flows along one
// edge can be replaced without touching the others.
//
// The residual stream at any point is the sum of the outputs of the nodes upstream of it (input embedding, each
// head's share of the attention output, each MLP) plus biases. Destination v reads
//     input_v = resid + Σ_u M_v[u] · (corr_u − out_u)
// where out_u is u's actual output in this run, corr_u its ablated value (0, a mean, or a corrupted prompt's) and
// M_v[u] ∈ [0, 1] the edge mask: 1 replaces what flows along u→v, 0 keeps it. M is a graph input, so the
// gradient of the metric with respect to M is one backward run away (EAP-IG steps). At M = 0 (EAP) every
// destination reads the unchanged stream and ∂metric/∂M_v[u] = Σ (corr_u − out_u) · ∂metric/∂input_v: a graph
// without masks gives it (addEdgeGradientsAtZero), each destination reading its own copy of the stream.
//
// Heads need per-head inputs. Where the export's projection is recognised ([norm] → MatMul(weight) → [bias] →
// [split into q, k, v] → reshape into heads), each head's copy of the residual stream goes through the norm and
// is multiplied by that head's columns of the weight only (a batched per-head MatMul: the projection's usual
// cost; with grouped key/value heads, its group's columns), and the rest of the path runs as it is. Otherwise the path from the residual stream to the query (key,
// value) tensor is cloned once with the heads folded into the batch axis ([H·B, T, D] in, [H·B, H, ...] out) and
// each head keeps its own slot (a diagonal): H× the projection's work, nothing assumed but a leading batch axis.
// Per-head outputs likewise: z_h · W_O[h] when the z → attention output path is a plain projection, else that
// path cloned on H + 1 copies of z, each with one head kept (and one with none: the bias), and differenced.
import { UserError } from '../errors';
import { GraphIndex } from './graph';
import { AttrType, DataType, floatValueInfo, int64Tensor, intAttr, intsAttr, makeNode, num, type OnnxModel, type OnnxNode, type TensorProto } from './model';
import { addGradients } from './autodiff';
import { constInts, isConstScalar, PATCHED, type ModelStructure } from './instrument';

/** Graph inputs and outputs added for edges. */
export const EDGE = {
  /** [B, 3H, n_l]: rows q of heads 0..H−1, then k, then v; columns the n_l = 1 + l·(H + 1) upstream nodes. */
  maskQkv: (l: number) => `circuitlens.edges.${l}.mask_qkv`,
  /** [B, 1, n_l + H]: the MLP's upstream nodes include its own layer's heads ([B, 1, n_l] in parallel blocks). */
  maskMlp: (l: number) => `circuitlens.edges.${l}.mask_mlp`,
  /** [B, 1, 1 + L·(H + 1)] */
  maskLogits: 'circuitlens.edges.mask_logits',
  corrInput: 'circuitlens.edges.corr_input',
  corrHeads: (l: number) => `circuitlens.edges.${l}.corr_heads`,
  corrMlp: (l: number) => `circuitlens.edges.${l}.corr_mlp`,
  /** Per-head outputs [B, T, H, D] (each head's share of hook_attn_out, without the output bias). */
  outHeads: (l: number) => `circuitlens.edges.${l}.head_out`,
};

/** Where one edge's mask entry lives. */
export interface EdgeSlot { source: string; target: string; input: string; row: number; col: number }

export interface EdgeLayout {
  /** Every edge, in EAP-IG order (core/formats/interop.ts allEdges). */
  edges: EdgeSlot[];
  /** Mask inputs with their per-row shape [rows, cols]. */
  masks: { name: string; rows: number; cols: number }[];
}

/** Index of an upstream node in the stacked outputs: input, then per layer its heads and its MLP. */
export function upstreamIndex(node: string, heads: number): number {
  if (node === 'input') return 0;
  const h = /^a(\d+)\.h(\d+)$/.exec(node);
  if (h) return 1 + Number(h[1]) * (heads + 1) + Number(h[2]);
  const m = /^m(\d+)$/.exec(node);
  if (m) return 1 + Number(m[1]) * (heads + 1) + heads;
  throw new Error(`not an upstream node: ${node}`);
}

/** `parallel`: attention and MLP read the block's input (GPT-NeoX, GPT-J, Phi): no edge from a head to its own layer's MLP. */
export function edgeLayout(layers: number, heads: number, parallel = false): EdgeLayout {
  const edges: EdgeSlot[] = [];
  const masks: EdgeLayout['masks'] = [];
  const up: string[] = ['input'];
  for (let l = 0; l < layers; l++) {
    masks.push({ name: EDGE.maskQkv(l), rows: 3 * heads, cols: up.length });
    for (let h = 0; h < heads; h++) {
      for (const u of up) {
        ['q', 'k', 'v'].forEach((x, i) => edges.push({ source: u, target: `a${l}.h${h}<${x}>`, input: EDGE.maskQkv(l), row: i * heads + h, col: upstreamIndex(u, heads) }));
      }
    }
    const attn = Array.from({ length: heads }, (_, h) => `a${l}.h${h}`);
    const mlpUp = parallel ? [...up] : [...up, ...attn];
    masks.push({ name: EDGE.maskMlp(l), rows: 1, cols: mlpUp.length });
    for (const u of mlpUp) edges.push({ source: u, target: `m${l}`, input: EDGE.maskMlp(l), row: 0, col: upstreamIndex(u, heads) });
    up.push(...attn, `m${l}`);
  }
  masks.push({ name: EDGE.maskLogits, rows: 1, cols: up.length });
  for (const u of up) edges.push({ source: u, target: 'logits', input: EDGE.maskLogits, row: 0, col: upstreamIndex(u, heads) });
  return { edges, masks };
}

const BIG = 2 ** 62;

/**
 * The tensors of a graph built with `atZero` (see addEdgeInputs). `layers`: per layer, the copies of the stream
 * the heads' query, key and value inputs read ([B, H, T, D] each) and the MLP's ([B, T, D]); `logits`: the final
 * stream's ([B, T, D]). `pieces`: the upstream (ablated − actual) outputs [B, rows, T, D] in mask column order
 * (input; then per layer its heads, its MLP). A mask entry (row, col) at zero is Σ over positions and features
 * of ∂L/∂(its row's leaf) · (its column's piece).
 */
export interface ZeroEdgeTensors { layers: { qkv: string[]; mlp: string }[]; logits: string; pieces: { t: string; rows: number }[] }

/**
 * Adds the edge inputs (masks, ablated values) and per-head output taps to an instrumented model. `heads` is the
 * number of query heads. Throws a UserError naming what it could not find.
 *
 * `atZero`: the graph for EAP, mask gradients at all-zero masks only. There every destination reads the
 * unchanged residual stream, so the masks are left out: each destination reads its own copy of the stream (a
 * leaf: an Expand for a head's input, an Identity for the MLP's and the logits'), and the caller takes gradients
 * with respect to the leaves and contracts them with the upstream pieces (`zero`; addEdgeGradientsAtZero).
 * That drops what the masked graph computes only to multiply it by zero: the products mask × upstream values,
 * the sums into each destination's input, and the ever-longer stack of upstream values copied at every layer.
 */
export function addEdgeInputs(model: OnnxModel, s: ModelStructure, heads: number, what: string, opts: { sliceHeads?: boolean; atZero?: boolean } = {}): { outputs: string[]; zero?: ZeroEdgeTensors } {
  const slice = opts.sliceHeads ?? true;
  const atZero = opts.atZero ?? false;
  const parallel = s.features.block === 'parallel';
  const zero: ZeroEdgeTensors = { layers: [], logits: '', pieces: [] };
  const graph = model.graph!;
  const g = new GraphIndex(graph);
  const added: OnnxNode[] = [];
  const inits: TensorProto[] = [];
  let uid = 0;
  const fresh = (base: string) => `circuitlens.edges.t${uid++}.${base}`;
  const op = (type: string, inputs: string[], attrs: ReturnType<typeof intAttr>[] = [], base = type.toLowerCase()): string => {
    const out = fresh(base);
    added.push(makeNode(type, inputs, [out], `circuitlens/edges/${out}`, attrs));
    return out;
  };
  const ints = (values: number[]): string => {
    const name = fresh('const');
    inits.push(int64Tensor(name, values));
    return name;
  };
  const floats = (dims: number[], values: Float32Array): string => {
    const name = fresh('fconst');
    inits.push({ name, dims, dataType: DataType.FLOAT, rawData: new Uint8Array(values.buffer.slice(0)) });
    return name;
  };
  const fail = (msg: string): never => {
    throw new UserError(`${what}: edge-level analysis cannot be set up for this export: ${msg}. Node-level analysis works on it.`);
  };
  // Nodes whose values (not just shapes: a length read with Shape is fine) come from graph inputs with a batch
  // axis other than the token ids: position ids, attention masks, past key/values.
  const batchInputs = s.extraInputs.map((v) => v.name);
  const fromBatchInput = new Set<number>();
  const pending = [...batchInputs];
  while (pending.length) {
    const t = pending.pop()!;
    for (const i of g.consumers.get(t) ?? []) {
      const n = g.node(i);
      if (fromBatchInput.has(i) || n.opType === 'Shape' || n.opType === 'Size') continue;
      fromBatchInput.add(i);
      pending.push(...n.output.filter(Boolean));
    }
  }
  /** `x` repeated `fold` times along its first axis, unless that axis is 1 (then it broadcasts as it is). */
  const tileBatch = (x: string, fold: number): string => {
    const shape = op('Shape', [x]);
    const first = op('Slice', [shape, ints([0]), ints([1])]);
    const r0 = op('Where', [op('Equal', [first, ints([1])]), ints([1]), ints([fold])]);
    const ones = op('ConstantOfShape', [op('Sub', [op('Shape', [shape]), ints([1])])], [{ name: 'value', type: AttrType.TENSOR, t: { name: '', dims: [1], dataType: DataType.INT64, rawData: new Uint8Array(new BigInt64Array([1n]).buffer) } }]);
    return op('Tile', [x, op('Concat', [r0, ones], [intAttr('axis', 0)])]);
  };

  /**
   * Clones the nodes between `from` and `to` onto `newFrom`, whose outermost axis is `fold` times the batch.
   * `given`: tensors on the path whose values are supplied (in the same layout); what only produces them is not cloned.
   */
  const clonePath = (from: string, to: string, newFrom: string, fold: number, tag: string, given?: Map<string, string>): string => {
    let nodes = g.between(from, to) ?? fail(`"${to}" does not depend on "${from}"`);
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
        if (batchInputs.includes(t) || fromBatchInput.has(g.producer.get(t) ?? -1)) return tileBatch(t, fold);
        return t;
      });
      if ((n.opType === 'Reshape' || n.opType === 'Expand') && n.input[1] && !rename.has(n.input[1])) {
        // A target shape computed outside the cloned path names the batch size: scale its first entry (kept
        // when 0 = copy or −1 = infer).
        const shape = n.input[1];
        const first = op('Slice', [shape, ints([0]), ints([1])]);
        const scaled = op('Where', [op('Greater', [first, ints([0])]), op('Mul', [first, ints([fold])]), first]);
        input[1] = op('Concat', [scaled, op('Slice', [shape, ints([1]), ints([BIG])])], [intAttr('axis', 0)]);
      }
      added.push({ ...n, name: `${n.name}@${tag}`, input, output: n.output.map((t) => rename.get(t) ?? t) });
    }
    return rename.get(to)!;
  };
  /** [H·B, H, a, c] (heads folded outermost) → [B, H, a, c], keeping head h's slot from copy h. */
  const diagonal = (x: string): string => {
    const shape = op('Concat', [ints([heads, -1]), op('Slice', [op('Shape', [x]), ints([1]), ints([BIG])])], [intAttr('axis', 0)]);
    const eye = new Float32Array(heads * heads);
    for (let h = 0; h < heads; h++) eye[h * heads + h] = 1;
    const masked = op('Mul', [op('Reshape', [x, shape]), floats([heads, 1, heads, 1, 1], eye)]);
    return op('ReduceSum', [masked, ints([0])], [intAttr('keepdims', 0)]);
  };
  /** Per-head residual inputs [B, H, T, D] → [H·B, T, D], heads outermost. */
  const foldHeads = (x: string, resid: string): string => {
    const t = op('Transpose', [x], [intsAttr('perm', [1, 0, 2, 3])]);
    const shape = op('Concat', [ints([-1]), op('Slice', [op('Shape', [resid]), ints([1]), ints([BIG])])], [intAttr('axis', 0)]);
    return op('Reshape', [t, shape]);
  };
  // ---- Head-sliced projections: each head's copy multiplied by its own columns of the weight only. ----
  const initByName = new Map(graph.initializer.map((t) => [t.name, t]));
  /** The initializer behind `t`, through Identity nodes (exporters share equal initializers that way). */
  const initName = (t: string | undefined): string | undefined => {
    for (let i = 0; t !== undefined && i < 8; i++) {
      if (initByName.has(t)) return t;
      const p = g.producerOf(t);
      t = p?.opType === 'Identity' ? p.input[0] : undefined;
    }
    return undefined;
  };
  const dimsOfInit = (t: string | undefined) => { const n = initName(t); return n !== undefined ? initByName.get(n)!.dims.map(num) : undefined; };
  /** The one consumer of `t` among `on`, if there is exactly one. */
  const nextOn = (t: string, on: Set<number>): OnnxNode | undefined => {
    // A Shape read of the tensor (GPT-NeoX views its fused QKV as qkv.size()[:-1] + (H, 3·d_head)) is not a step.
    const c = (g.consumers.get(t) ?? []).filter((i) => on.has(i) && g.node(i).opType !== 'Shape');
    return c.length === 1 ? g.node(c[0]!) : undefined;
  };
  /** The last two entries of a Reshape's target shape, when they are constants. */
  const shapeTail = (shape: string): [number, number] | undefined => {
    const direct = constInts(g, shape);
    if (direct) return direct.length >= 2 ? [direct[direct.length - 2]!, direct[direct.length - 1]!] : undefined;
    const c = g.producerOf(shape);
    if (c?.opType !== 'Concat' || c.input.length < 2) return undefined;
    const a = constInts(g, c.input[c.input.length - 2]!);
    const b = constInts(g, c.input[c.input.length - 1]!);
    return a?.length === 1 && b?.length === 1 ? [a[0]!, b[0]!] : undefined;
  };

  /**
   * `target` (a head-split query, key or value tensor) computed from per-head residual inputs `x` [B, T, H, D]
   * with each head multiplied by its own columns of the projection weight only: 1× the projection's cost, not
   * H×. Recognised when the path from `from` is [norm] → MatMul(weight [D, N]) → [Add bias] → [Split on the last
   * axis] → Reshape to [..., H, d_head] → anything; otherwise undefined (the caller folds the heads instead).
   */
  const slicedProjection = (from: string, target: string, x: string, tag: string): string | undefined => {
    const nodes = g.between(from, target);
    if (!nodes) return undefined;
    const on = new Set(nodes);
    const mms = nodes.map((i) => g.node(i)).filter((n) => n.opType === 'MatMul' && dimsOfInit(n.input[1])?.length === 2);
    if (mms.length !== 1) return undefined;
    const mm = mms[0]!;
    const [D, N] = dimsOfInit(mm.input[1]) as [number, number];
    let cur = mm.output[0]!;
    let n = nextOn(cur, on);
    let bias: string | undefined;
    if (n?.opType === 'Add') {
      const other = n.input.find((t) => t !== cur);
      const b = dimsOfInit(other);
      if (!b || b.length !== 1 || b[0] !== N) return undefined;
      bias = initName(other);
      cur = n.output[0]!;
      n = nextOn(cur, on);
    }
    // A constant scale (OPT scales the query by 1/√d_head right after its projection) commutes with the slicing.
    const scales: OnnxNode[] = [];
    while ((n?.opType === 'Mul' || n?.opType === 'Div') && n.input[0] === cur && isConstScalar(g, n.input[1]!)) {
      scales.push(n);
      cur = n.output[0]!;
      n = nextOn(cur, on);
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
      offset = sizes.slice(0, k).reduce((a, b) => a + b, 0);
      width = sizes[k]!;
      cur = n.output[k]!;
      n = nextOn(cur, on);
    }
    if (n?.opType !== 'Reshape' || n.input[0] !== cur) return undefined;
    const tail = shapeTail(n.input[1]!);
    // H heads of their own, or G key/value heads shared by groups of H/G query heads (query head h reads group
    // ⌊h / (H/G)⌋, the usual repeat of grouped-query attention).
    if (!tail || tail[1] <= 0 || tail[0] * tail[1] !== width || tail[0] > heads || heads % tail[0] !== 0) return undefined;
    const [G, dh] = tail;
    const group = Array.from({ length: heads }, (_, h) => Math.floor(h / (heads / G)));
    const folded = foldHeads(x, from); // [H·B, T, D], heads outermost
    const y = mm.input[0] === from ? folded : clonePath(from, mm.input[0]!, folded, heads, `${tag}n`);
    const perGroup = (t: string, axis: number, shape: number[]) => op('Reshape', [op('Slice', [initName(t)!, ints([offset]), ints([offset + width]), ints([axis])]), ints(shape)]);
    let w = op('Transpose', [perGroup(mm.input[1]!, 1, [D, G, dh])], [intsAttr('perm', [1, 0, 2])]); // [G, D, d_head]
    let b = bias ? perGroup(bias, 0, [G, 1, dh]) : undefined;
    if (G !== heads) {
      w = op('Gather', [w, ints(group)], [intAttr('axis', 0)]);
      if (b) b = op('Gather', [b, ints(group)], [intAttr('axis', 0)]);
    }
    let p = op('MatMul', [op('Reshape', [y, ints([heads, -1, D])]), w]); // [H, B·T, d_head]: head h from its own copy
    if (b) p = op('Add', [p, b]);
    for (const sc of scales) p = op(sc.opType, [p, sc.input[1]!]);
    if (G === heads) {
      // Back to the layout of `cur` ([B, T, H·d_head]), then the rest of the path as it is.
      const back = op('Reshape', [op('Transpose', [p], [intsAttr('perm', [1, 0, 2])]), op('Shape', [cur])]);
      return clonePath(cur, target, back, 1, tag);
    }
    // Grouped: query head h's copy holds its values in its group's slot ([H·B, T, G·d_head], zeros elsewhere).
    // The path is cloned on the folded batch as when folding (so shapes computed from the normalised input see
    // the folded batch), with the projection's output given instead of cloned; head h keeps its own slot.
    const onehot = new Float32Array(heads * G);
    group.forEach((k, h) => { onehot[h * G + k] = 1; });
    const slots = op('Mul', [unsq(p, 2), floats([heads, 1, G, 1], onehot)]); // [H, B·T, G, d_head]
    const shape = op('Concat', [ints([-1]), op('Slice', [op('Shape', [cur]), ints([1]), ints([BIG])])], [intAttr('axis', 0)]);
    return diagonal(clonePath(from, target, folded, heads, tag, new Map([[cur, op('Reshape', [slots, shape])]])));
  };

  /**
   * Per-head outputs z_h · W_O[h] ([B, T, H, D], no bias) into `out`, when the z → attn_out path is
   * Transpose([0, 2, 1, 3]) → Reshape → MatMul(weight [H·d_head, D]) → [Add bias]. False otherwise.
   */
  const slicedHeadOutputs = (z: string, attnOut: string, out: string, l: number): boolean => {
    const nodes = g.between(z, attnOut);
    if (!nodes) return false;
    const on = new Set(nodes);
    const t = nextOn(z, on);
    const perm = t?.attribute.find((a) => a.name === 'perm')?.ints?.map(num);
    if (t?.opType !== 'Transpose' || perm?.join() !== '0,2,1,3') return false;
    const r = nextOn(t.output[0]!, on);
    if (r?.opType !== 'Reshape' || r.input[0] !== t.output[0]) return false;
    const mm = nextOn(r.output[0]!, on);
    const w = dimsOfInit(mm?.input[1]);
    if (mm?.opType !== 'MatMul' || mm.input[0] !== r.output[0] || w?.length !== 2 || w[0]! % heads !== 0) return false;
    let count = 3;
    if (mm.output[0] !== attnOut) {
      const add = nextOn(mm.output[0]!, on);
      const b = dimsOfInit(add?.input.find((x) => x !== mm.output[0]));
      if (add?.opType !== 'Add' || add.output[0] !== attnOut || b?.length !== 1 || b[0] !== w[1]) return false;
      count = 4;
    }
    if (nodes.length !== count) return false;
    const perHeadW = op('Reshape', [initName(mm.input[1])!, ints([heads, w[0]! / heads, w[1]!])]); // [H, d_head, D]
    added.push(makeNode('Transpose', [op('MatMul', [z, perHeadW])], [out], `circuitlens/edges/head_out_${l}`, [intsAttr('perm', [0, 2, 1, 3])]));
    return true;
  };

  const rewire = (consumers: OnnxNode[], from: string, to: string) => {
    for (const c of consumers) c.input = c.input.map((t) => (t === from ? to : t));
  };
  const unsq = (x: string, axis: number) => op('Unsqueeze', [x, ints([axis])]);
  /**
   * Σ_n mask[b, i, n] · stack[b, n, :, :] → [B, k, T, D]: one batched MatMul over the stack flattened to
   * [B, n, T·D], so the gradient with respect to the mask is one batched MatMul as well (no reduction over T).
   */
  const delta = (mask: string, stack: string): string => {
    const sShape = op('Shape', [stack]);
    const flat = op('Reshape', [stack, op('Concat', [op('Slice', [sShape, ints([0]), ints([2])]), ints([-1])], [intAttr('axis', 0)])]);
    const prod = op('MatMul', [mask, flat]); // [B, k, T·D]
    const shape = op('Concat', [op('Slice', [op('Shape', [prod]), ints([0]), ints([2])]), op('Slice', [sShape, ints([2]), ints([4])])], [intAttr('axis', 0)]);
    return op('Reshape', [prod, shape]);
  };

  const addInput = (name: string, rank: number) => graph.input.push(floatValueInfo(name, rank));
  const addMask = (name: string) => { if (!atZero) addInput(name, 3); };
  addInput(EDGE.corrInput, 3);
  // The (ablated − actual) outputs of every upstream node so far, [B, n, T, D] each: stacked into one tensor
  // (`stack`) for the masked graph; at zero only listed (`pieces`).
  const first = unsq(op('Sub', [EDGE.corrInput, s.layers[0]!.residPre]), 1);
  let stack = first;
  zero.pieces.push({ t: first, rows: 1 });
  const outputs: string[] = [];
  /** A destination's own copy of `resid` (at zero): the tensor whose gradient is the destination's. */
  const leaf = (resid: string): string => {
    const t = fresh('leaf');
    added.push(makeNode('Identity', [resid], [t], `circuitlens/edges/${t}`));
    return t;
  };

  s.layers.forEach((L, l) => {
    addMask(EDGE.maskQkv(l));
    addMask(EDGE.maskMlp(l));
    addInput(EDGE.corrHeads(l), 4);
    addInput(EDGE.corrMlp(l), 3);
    // The attention product's operands: Q·Kᵀ (both computed from the stream) and pattern·V.
    const attnNodes = g.descendants(L.residPre);
    const patternAnc = g.ancestors(L.pattern, L.residPre).nodes;
    const qk = [...patternAnc].map((i) => g.node(i)).filter((n) => n.opType === 'MatMul' && n.input.every((t) => attnNodes.has(g.producer.get(t) ?? -1)));
    if (qk.length !== 1) fail(`expected one query·key MatMul in layer ${l}, found ${qk.length}`);
    // The pattern·V product, or (heads folded into the batch axis, OPT's bmm) the MatMul its view reads.
    let pvOut = L.zBhtd;
    while (['Reshape', 'Identity'].includes(g.producerOf(pvOut)?.opType ?? '')) pvOut = g.producerOf(pvOut)!.input[0]!;
    const pv = g.producerOf(pvOut);
    if (!pv || pv.opType !== 'MatMul') fail(`the pattern·V MatMul of layer ${l}`);
    const qkNode = qk[0]!;
    const pvNode = pv!;
    const [qT, kT] = [qkNode.input[0]!, qkNode.input[1]!];
    const vT = pvNode.input[1]!;

    const residU = unsq(L.residPre, 1);
    let perHead: (i: number) => string; // [B, H, T, D]
    if (atZero) {
      const leaves = [0, 1, 2].map(() => op('Expand', [residU, ints([1, heads, 1, 1])], [], 'leaf'));
      zero.layers.push({ qkv: leaves, mlp: '' });
      perHead = (i) => leaves[i]!;
    } else {
      const dQkv = delta(EDGE.maskQkv(l), stack); // [B, 3H, T, D]
      perHead = (i) => op('Add', [residU, op('Slice', [dQkv, ints([i * heads]), ints([(i + 1) * heads]), ints([1])])]);
    }
    const headInput = (i: number, target: string, tag: string) =>
      (slice ? slicedProjection(L.residPre, target, perHead(i), tag) : undefined) ?? diagonal(clonePath(L.residPre, target, foldHeads(perHead(i), L.residPre), heads, tag));
    const q = headInput(0, qT, `edges${l}q`);
    const k = headInput(1, kT, `edges${l}k`);
    const v = headInput(2, vT, `edges${l}v`);
    qkNode.input = [q, k];
    pvNode.input = [pvNode.input[0]!, v];

    // Per-head outputs [B, T, H, D]: z_h · W_O[h] when the z → attn_out path is the plain projection, else the
    // path on H + 1 copies of z (copy h keeps head h; the last keeps none: the bias), differenced.
    const z = PATCHED.z(l);
    if (!slice || !slicedHeadOutputs(z, L.attnOut, EDGE.outHeads(l), l)) {
      const keep = new Float32Array((heads + 1) * heads);
      for (let h = 0; h < heads; h++) keep[h * heads + h] = 1;
      const zCopies = op('Mul', [unsq(z, 0), floats([heads + 1, 1, heads, 1, 1], keep)]);
      const zShape = op('Concat', [ints([-1]), op('Slice', [op('Shape', [z]), ints([1]), ints([BIG])])], [intAttr('axis', 0)]);
      const outCopies = clonePath(z, L.attnOut, op('Reshape', [zCopies, zShape]), heads + 1, `edges${l}o`); // [(H+1)·B, T, D]
      const oShape = op('Concat', [ints([heads + 1, -1]), op('Slice', [op('Shape', [outCopies]), ints([1]), ints([BIG])])], [intAttr('axis', 0)]);
      const o = op('Reshape', [outCopies, oShape]); // [H+1, B, T, D]
      const perHeadOut = op('Sub', [op('Slice', [o, ints([0]), ints([heads]), ints([0])]), op('Slice', [o, ints([heads]), ints([heads + 1]), ints([0])])]);
      added.push(makeNode('Transpose', [perHeadOut], [EDGE.outHeads(l)], `circuitlens/edges/head_out_${l}`, [intsAttr('perm', [1, 2, 0, 3])]));
    }
    outputs.push(EDGE.outHeads(l));
    const headsEntry = op('Transpose', [op('Sub', [EDGE.corrHeads(l), EDGE.outHeads(l)])], [intsAttr('perm', [0, 2, 1, 3])]); // [B, H, T, D]

    const mlpOut = PATCHED.mlp(l);
    const mlpEntry = unsq(op('Sub', [EDGE.corrMlp(l), mlpOut]), 1);
    const n = 1 + l * (heads + 1);
    // The stream the MLP reads: resid_pre in parallel blocks, resid_mid (the Add after the attention) otherwise.
    const mlpIn = L.mlpIn ?? (() => {
      const post = g.producerOf(L.residPost);
      if (!post || post.opType !== 'Add' || !post.input.includes(mlpOut)) fail(`the residual Add after the MLP of layer ${l}`);
      return post!.input[0] === mlpOut ? post!.input[1]! : post!.input[0]!;
    })();
    // Its copy of the stream: the leaf (at zero), or the stream plus what the masked edges change.
    let copy: string;
    if (atZero) {
      copy = leaf(mlpIn);
      zero.layers[l]!.mlp = copy;
      zero.pieces.push({ t: headsEntry, rows: heads }, { t: mlpEntry, rows: 1 });
    } else if (parallel) {
      copy = op('Add', [mlpIn, op('Squeeze', [delta(EDGE.maskMlp(l), stack), ints([1])])]);
    } else {
      // The MLP's upstream nodes are the stack so far and this layer's heads: two products, one concatenation per layer.
      const fromStack = delta(op('Slice', [EDGE.maskMlp(l), ints([0]), ints([n]), ints([2])]), stack);
      const fromHeads = delta(op('Slice', [EDGE.maskMlp(l), ints([n]), ints([BIG]), ints([2])]), headsEntry);
      copy = op('Add', [mlpIn, op('Squeeze', [op('Add', [fromStack, fromHeads]), ints([1])])]);
    }
    // The MLP's nodes that read the stream read the copy instead. Where one of them also feeds something outside
    // the MLP (a norm Phi's attention shares; OPT's flattening view, which its residual Add reads too), the MLP's
    // path is cloned onto the copy and the MLP's consumers read the clone.
    const mlpNodes = g.ancestors(mlpOut, mlpIn).nodes;
    const fromStream = new Set([...g.descendants(mlpIn)].filter((i) => mlpNodes.has(i)));
    const shared = [...fromStream].some((i) => g.node(i).output.some((o) => o && o !== mlpOut && (g.consumers.get(o) ?? []).some((c) => !mlpNodes.has(c))));
    if (shared) {
      const cloned = clonePath(mlpIn, mlpOut, copy, 1, `edges${l}m`);
      rewire(g.consumersOf(mlpOut), mlpOut, cloned);
    } else {
      const entry = (g.consumers.get(mlpIn) ?? []).filter((i) => mlpNodes.has(i)).map((i) => g.node(i));
      if (entry.length === 0) fail(`the MLP of layer ${l} does not read the residual stream`);
      rewire(entry, mlpIn, copy);
    }
    if (!atZero) stack = op('Concat', [stack, headsEntry, mlpEntry], [intAttr('axis', 1)]);
  });

  // The logits read the last residual stream (through the final norm, and the last-position copy of it).
  addMask(EDGE.maskLogits);
  const last = s.layers[s.layers.length - 1]!.residPost;
  const finalConsumers = g.consumersOf(last);
  if (atZero) {
    zero.logits = leaf(last);
    rewire(finalConsumers, last, zero.logits);
  } else {
    const dFinal = op('Squeeze', [delta(EDGE.maskLogits, stack), ints([1])]);
    rewire(finalConsumers, last, op('Add', [last, dFinal]));
  }

  graph.initializer.push(...inits);
  graph.node = topoSort([...graph.node, ...added], graph);
  for (const o of outputs) graph.output.push(floatValueInfo(o, 4));
  return atZero ? { outputs, zero } : { outputs };
}

/** The output carrying a mask's gradient in a graph from addEdgeGradientsAtZero. */
export const zeroMaskGradient = (mask: string) => `${mask}.grad_at_zero`;

/**
 * The EAP graph: `model` (instrumented) with the edge inputs at zero (addEdgeInputs `atZero`), the gradients of
 * L = Σ seed ⊙ `y` with respect to every destination's copy of the stream, and each mask's gradient as an output
 * zeroMaskGradient(mask) [B, rows, cols] (`layout`'s mask order): the copies' gradients contracted with the
 * upstream pieces over positions and features.
 *
 * The contraction is batched MatMuls of a layer's copies' gradients ([B, 3H + 1, T·D]: q, k, v rows, the MLP's)
 * by blocks of pieces (a few layers' worth each, concatenated once): a block per product keeps the products
 * large (one per piece re-reads the gradients for every piece, a few columns at a time), and a block is used
 * only by layers it (partly) precedes, so at most a block's width of unneeded columns is computed per layer.
 */
export function addEdgeGradientsAtZero(model: OnnxModel, s: ModelStructure, heads: number, what: string, y: string, layout: EdgeLayout,
  opts: { sliceHeads?: boolean; positive?: string[]; blockLayers?: number }): { outputs: string[]; grads: string[] } {
  const { outputs, zero } = addEdgeInputs(model, s, heads, what, { sliceHeads: opts.sliceHeads, atZero: true });
  const parallel = s.features.block === 'parallel';
  const z = zero!;
  const wrt = [...z.layers.flatMap((x) => [...x.qkv, x.mlp]), z.logits];
  const { grads } = addGradients(model, y, wrt, { positive: opts.positive });
  const graph = model.graph!;
  let uid = 0;
  const nodes: OnnxNode[] = [];
  const inits: TensorProto[] = [];
  const op = (type: string, inputs: string[], attrs: ReturnType<typeof intAttr>[] = [], out = `circuitlens.edges.z${uid++}.${type.toLowerCase()}`): string => {
    nodes.push(makeNode(type, inputs, [out], `circuitlens/edges/${out}`, attrs));
    return out;
  };
  const ints = (values: number[]): string => {
    const name = `circuitlens.edges.z${uid++}.const`;
    inits.push(int64Tensor(name, values));
    return name;
  };
  const flat = (t: string, rows: number) => op('Reshape', [t, ints([0, rows, -1])]); // [B, rows, T·D]
  // Blocks of pieces: the input, then `per` layers' heads and MLPs each (about four blocks in all by default).
  const L = z.layers.length;
  const per = opts.blockLayers ?? Math.ceil(L / 4);
  if (!Number.isInteger(per) || per < 1) throw new Error(`addEdgeGradientsAtZero: blockLayers must be a positive whole number (got ${per})`);
  const blocks: { t: string; start: number; end: number }[] = [];
  let col = 0;
  let p = 0;
  for (let j = 0; j < L; j += per) {
    const take = (j === 0 ? 1 : 0) + 2 * Math.min(per, L - j);
    const ps = z.pieces.slice(p, p + take);
    const rows = ps.reduce((a, x) => a + x.rows, 0);
    const cat = ps.length === 1 ? ps[0]!.t : op('Concat', ps.map((x) => x.t), [intAttr('axis', 1)]);
    blocks.push({ t: op('Transpose', [flat(cat, rows)], [intsAttr('perm', [0, 2, 1])]), start: col, end: col + rows }); // [B, T·D, rows]
    p += take;
    col += rows;
  }
  // The pieces are the input, then each layer's heads and MLP: all of them in blocks, one column per upstream node.
  const N = 1 + L * (heads + 1);
  if (p !== z.pieces.length || col !== N) throw new Error(`addEdgeGradientsAtZero: ${z.pieces.length} upstream pieces with ${col} columns in blocks, expected ${1 + 2 * L} with ${N}`);
  /** [B, rows, cols] = gradient rows · pieces [0, cols), from the blocks that start before cols. */
  const contract = (g: string, cols: number): string => {
    const parts = blocks.filter((b) => b.start < cols).map((b) => op('MatMul', [g, b.t]));
    const all = parts.length === 1 ? parts[0]! : op('Concat', parts, [intAttr('axis', 2)]);
    return op('Slice', [all, ints([0]), ints([cols]), ints([2])]);
  };
  const out = new Map<string, string>();
  const emit = (mask: string, t: string) => {
    nodes.push(makeNode('Identity', [t], [zeroMaskGradient(mask)], `circuitlens/edges/${zeroMaskGradient(mask)}`));
    out.set(mask, zeroMaskGradient(mask));
  };
  z.layers.forEach((x, l) => {
    const n = 1 + l * (heads + 1);
    const g = op('Concat', [...x.qkv.map((t) => flat(grads[t]!, heads)), flat(grads[x.mlp]!, 1)], [intAttr('axis', 1)]); // [B, 3H + 1, T·D]
    const r = contract(g, n + heads);
    emit(EDGE.maskQkv(l), op('Slice', [r, ints([0, 0]), ints([3 * heads, n]), ints([1, 2])]));
    emit(EDGE.maskMlp(l), op('Slice', [r, ints([3 * heads, 0]), ints([3 * heads + 1, parallel ? n : n + heads]), ints([1, 2])]));
  });
  emit(EDGE.maskLogits, contract(flat(grads[z.logits]!, 1), N));
  graph.node.push(...nodes);
  graph.initializer.push(...inits);
  const names = layout.masks.map((m) => {
    const name = out.get(m.name);
    if (name === undefined) throw new Error(`addEdgeGradientsAtZero: no gradient for mask ${m.name} (the layout and the model's structure disagree)`);
    return name;
  });
  for (const o of names) graph.output.push(floatValueInfo(o, 3));
  return { outputs, grads: names };
}

/** Orders nodes so every input is produced before use (Kahn's algorithm, stable for already-ordered nodes). */
function topoSort(nodes: OnnxNode[], graph: OnnxModel['graph'] & object): OnnxNode[] {
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => n.output.forEach((o) => o && producer.set(o, i)));
  const indeg = new Array<number>(nodes.length).fill(0);
  const users: number[][] = nodes.map(() => []);
  nodes.forEach((n, i) => {
    for (const t of new Set(n.input)) {
      const p = t ? producer.get(t) : undefined;
      if (p !== undefined && p !== i) { indeg[i]!++; users[p]!.push(i); }
    }
  });
  // A min-heap on the original index would keep the order closest to the original; a sorted ready list is enough.
  const ready: number[] = [];
  indeg.forEach((d, i) => { if (d === 0) ready.push(i); });
  const out: OnnxNode[] = [];
  while (ready.length) {
    ready.sort((a, b) => b - a);
    const i = ready.pop()!;
    out.push(nodes[i]!);
    for (const u of users[i]!) if (--indeg[u]! === 0) ready.push(u);
  }
  if (out.length !== nodes.length) throw new Error(`edge instrumentation made a cycle in ${graph.name || 'the graph'}`);
  return out;
}
