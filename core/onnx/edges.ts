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
import { Builder, freshNames } from './builder';
import type { LayerTensors, ModelStructure } from './detect';
import {
  BIG, clonePath, diagonal, edgeFail, foldedHeadOutputs, foldHeads, slicedHeadOutputs, slicedProjection, unsq, type EdgeRewrite,
} from './edge-heads';
import { EDGE } from './edge-layout';
import { GraphIndex, topoSort } from './graph';
import { PATCHED } from './instrument';
import { floatValueInfo, intAttr, intsAttr, type OnnxModel, type OnnxNode } from './model';

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
  const graph = model.graph!;
  const g = new GraphIndex(graph);
  const batchInputs = s.extraInputs.map((v) => v.name);
  const atZero = opts.atZero ?? false;
  const cx: Rewrite = {
    graph, g, s, heads, what, b: new Builder(freshNames('circuitlens.edges.t', 'circuitlens/edges')),
    batchInputs, fromBatchInput: readersOf(g, batchInputs), initByName: new Map(graph.initializer.map((t) => [t.name, t])),
    slice: opts.sliceHeads ?? true, atZero, parallel: s.features.block === 'parallel', zero: { layers: [], logits: '', pieces: [] },
  };
  const { b, zero } = cx;
  const addInput = (name: string, rank: number) => graph.input.push(floatValueInfo(name, rank));
  const addMask = (name: string) => { if (!atZero) addInput(name, 3); };
  addInput(EDGE.corrInput, 3);
  // The (ablated − actual) outputs of every upstream node so far, [B, n, T, D] each: stacked into one tensor
  // (`stack`) for the masked graph; at zero only listed (`pieces`).
  const first = unsq(b, b.op('Sub', [EDGE.corrInput, s.layers[0]!.residPre]), 1);
  let stack = first;
  zero.pieces.push({ t: first, rows: 1 });
  const outputs: string[] = [];

  s.layers.forEach((L, l) => {
    addMask(EDGE.maskQkv(l));
    addMask(EDGE.maskMlp(l));
    addInput(EDGE.corrHeads(l), 4);
    addInput(EDGE.corrMlp(l), 3);
    const { qk, pv } = attentionProducts(cx, L, l);
    const perHead = headStreams(cx, L, l, stack);
    const q = headInput(cx, L, perHead, 0, qk.input[0]!, `edges${l}q`);
    const k = headInput(cx, L, perHead, 1, qk.input[1]!, `edges${l}k`);
    const v = headInput(cx, L, perHead, 2, pv.input[1]!, `edges${l}v`);
    qk.input = [q, k];
    pv.input = [pv.input[0]!, v];
    const headsEntry = headOutputs(cx, L, l);
    outputs.push(EDGE.outHeads(l));
    const mlpOut = PATCHED.mlp(l);
    const mlpEntry = unsq(b, b.op('Sub', [EDGE.corrMlp(l), mlpOut]), 1);
    const mlpIn = mlpStream(cx, L, l);
    const copy = mlpCopy(cx, l, mlpIn, stack, headsEntry, mlpEntry);
    readCopyInMlp(cx, l, mlpIn, mlpOut, copy);
    if (!atZero) stack = b.op('Concat', [stack, headsEntry, mlpEntry], [intAttr('axis', 1)]);
  });

  // The logits read the last residual stream (through the final norm, and the last-position copy of it).
  addMask(EDGE.maskLogits);
  const last = s.layers[s.layers.length - 1]!.residPost;
  const finalConsumers = g.consumersOf(last);
  if (atZero) {
    zero.logits = leaf(b, last);
    rewire(finalConsumers, last, zero.logits);
  } else {
    const dFinal = b.op('Squeeze', [delta(b, EDGE.maskLogits, stack), b.i64([1])]);
    rewire(finalConsumers, last, b.op('Add', [last, dFinal]));
  }

  graph.initializer.push(...b.inits);
  graph.node = topoSort([...graph.node, ...b.nodes], graph);
  for (const o of outputs) graph.output.push(floatValueInfo(o, 4));
  return atZero ? { outputs, zero } : { outputs };
}

/** The edge rewrite's own options and the tensors its EAP graph (`atZero`) reports. */
interface Rewrite extends EdgeRewrite {
  slice: boolean;
  atZero: boolean;
  parallel: boolean;
  zero: ZeroEdgeTensors;
}

/** Nodes whose values (not just shapes: a length read with Shape is fine) come from `inputs`. */
function readersOf(g: GraphIndex, inputs: string[]): Set<number> {
  const readers = new Set<number>();
  const pending = [...inputs];
  while (pending.length) {
    const t = pending.pop()!;
    for (const i of g.consumers.get(t) ?? []) {
      const n = g.node(i);
      if (readers.has(i) || n.opType === 'Shape' || n.opType === 'Size') continue;
      readers.add(i);
      pending.push(...n.output.filter(Boolean));
    }
  }
  return readers;
}

/** The attention products' nodes: Q·Kᵀ (both operands computed from the stream) and pattern·V. */
function attentionProducts(cx: Rewrite, L: LayerTensors, l: number): { qk: OnnxNode; pv: OnnxNode } {
  const { g } = cx;
  const attnNodes = g.descendants(L.residPre);
  const patternAnc = g.ancestors(L.pattern, L.residPre).nodes;
  const qk = [...patternAnc].map((i) => g.node(i)).filter((n) => n.opType === 'MatMul' && n.input.every((t) => attnNodes.has(g.producer.get(t) ?? -1)));
  if (qk.length !== 1) edgeFail(cx, `expected one query·key MatMul in layer ${l}, found ${qk.length}`);
  // The pattern·V product, or (heads folded into the batch axis, OPT's bmm) the MatMul its view reads.
  let pvOut = L.zBhtd;
  while (['Reshape', 'Identity'].includes(g.producerOf(pvOut)?.opType ?? '')) pvOut = g.producerOf(pvOut)!.input[0]!;
  const pv = g.producerOf(pvOut);
  if (!pv || pv.opType !== 'MatMul') edgeFail(cx, `the pattern·V MatMul of layer ${l}`);
  return { qk: qk[0]!, pv: pv! };
}

/**
 * The heads' copies of the stream for their queries (i = 0), keys (1) and values (2), [B, H, T, D]: leaves (at
 * zero), or the stream plus what the masked edges from `stack` change.
 */
function headStreams(cx: Rewrite, L: LayerTensors, l: number, stack: string): (i: number) => string {
  const { b, heads } = cx;
  const residU = unsq(b, L.residPre, 1);
  if (cx.atZero) {
    const leaves = [0, 1, 2].map(() => b.op('Expand', [residU, b.i64([1, heads, 1, 1])], [], 'leaf'));
    cx.zero.layers.push({ qkv: leaves, mlp: '' });
    return (i) => leaves[i]!;
  }
  const dQkv = delta(b, EDGE.maskQkv(l), stack); // [B, 3H, T, D]
  return (i) => b.op('Add', [residU, b.op('Slice', [dQkv, b.i64([i * heads]), b.i64([(i + 1) * heads]), b.i64([1])])]);
}

/** `target` (the query, key or value tensor) computed per head from the heads' copies `perHead(i)`. */
function headInput(cx: Rewrite, L: LayerTensors, perHead: (i: number) => string, i: number, target: string, tag: string): string {
  return (cx.slice ? slicedProjection(cx, L.residPre, target, perHead(i), tag) : undefined)
    ?? diagonal(cx, clonePath(cx, L.residPre, target, foldHeads(cx, perHead(i), L.residPre), cx.heads, tag));
}

/** Per-head outputs EDGE.outHeads(l) [B, T, H, D]; returns the heads' (ablated − actual) outputs [B, H, T, D]. */
function headOutputs(cx: Rewrite, L: LayerTensors, l: number): string {
  const z = PATCHED.z(l);
  if (!cx.slice || !slicedHeadOutputs(cx, z, L.attnOut, EDGE.outHeads(l), l)) foldedHeadOutputs(cx, z, L.attnOut, EDGE.outHeads(l), l);
  return cx.b.op('Transpose', [cx.b.op('Sub', [EDGE.corrHeads(l), EDGE.outHeads(l)])], [intsAttr('perm', [0, 2, 1, 3])]);
}

/** The stream the MLP reads: resid_pre in parallel blocks, resid_mid (the Add after the attention) otherwise. */
function mlpStream(cx: Rewrite, L: LayerTensors, l: number): string {
  if (L.mlpIn) return L.mlpIn;
  const mlpOut = PATCHED.mlp(l);
  const post = cx.g.producerOf(L.residPost);
  if (!post || post.opType !== 'Add' || !post.input.includes(mlpOut)) edgeFail(cx, `the residual Add after the MLP of layer ${l}`);
  return post!.input[0] === mlpOut ? post!.input[1]! : post!.input[0]!;
}

/** The MLP's copy of the stream: the leaf (at zero), or the stream plus what the masked edges change. */
function mlpCopy(cx: Rewrite, l: number, mlpIn: string, stack: string, headsEntry: string, mlpEntry: string): string {
  const { b, heads } = cx;
  if (cx.atZero) {
    const copy = leaf(b, mlpIn);
    cx.zero.layers[l]!.mlp = copy;
    cx.zero.pieces.push({ t: headsEntry, rows: heads }, { t: mlpEntry, rows: 1 });
    return copy;
  }
  if (cx.parallel) return b.op('Add', [mlpIn, b.op('Squeeze', [delta(b, EDGE.maskMlp(l), stack), b.i64([1])])]);
  // The MLP's upstream nodes are the stack so far and this layer's heads: two products, one concatenation per layer.
  const n = 1 + l * (heads + 1);
  const fromStack = delta(b, b.op('Slice', [EDGE.maskMlp(l), b.i64([0]), b.i64([n]), b.i64([2])]), stack);
  const fromHeads = delta(b, b.op('Slice', [EDGE.maskMlp(l), b.i64([n]), b.i64([BIG]), b.i64([2])]), headsEntry);
  return b.op('Add', [mlpIn, b.op('Squeeze', [b.op('Add', [fromStack, fromHeads]), b.i64([1])])]);
}

/**
 * The MLP's nodes that read the stream read the copy instead. Where one of them also feeds something outside
 * the MLP (a norm Phi's attention shares; OPT's flattening view, which its residual Add reads too), the MLP's
 * path is cloned onto the copy and the MLP's consumers read the clone.
 */
function readCopyInMlp(cx: Rewrite, l: number, mlpIn: string, mlpOut: string, copy: string): void {
  const { g } = cx;
  const mlpNodes = g.ancestors(mlpOut, mlpIn).nodes;
  const fromStream = new Set([...g.descendants(mlpIn)].filter((i) => mlpNodes.has(i)));
  const shared = [...fromStream].some((i) => g.node(i).output.some((o) => o && o !== mlpOut && (g.consumers.get(o) ?? []).some((c) => !mlpNodes.has(c))));
  if (shared) {
    const cloned = clonePath(cx, mlpIn, mlpOut, copy, 1, `edges${l}m`);
    rewire(g.consumersOf(mlpOut), mlpOut, cloned);
  } else {
    const entry = (g.consumers.get(mlpIn) ?? []).filter((i) => mlpNodes.has(i)).map((i) => g.node(i));
    if (entry.length === 0) edgeFail(cx, `the MLP of layer ${l} does not read the residual stream`);
    rewire(entry, mlpIn, copy);
  }
}

function rewire(consumers: OnnxNode[], from: string, to: string): void {
  for (const c of consumers) c.input = c.input.map((t) => (t === from ? to : t));
}

/** A destination's own copy of `resid` (at zero): the tensor whose gradient is the destination's. */
function leaf(b: Builder, resid: string): string {
  return b.op('Identity', [resid], [], 'leaf');
}

/**
 * Σ_n mask[b, i, n] · stack[b, n, :, :] → [B, k, T, D]: one batched MatMul over the stack flattened to
 * [B, n, T·D], so the gradient with respect to the mask is one batched MatMul as well (no reduction over T).
 */
function delta(b: Builder, mask: string, stack: string): string {
  const sShape = b.op('Shape', [stack]);
  const flat = b.op('Reshape', [stack, b.op('Concat', [b.op('Slice', [sShape, b.i64([0]), b.i64([2])]), b.i64([-1])], [intAttr('axis', 0)])]);
  const prod = b.op('MatMul', [mask, flat]); // [B, k, T·D]
  const shape = b.op('Concat', [b.op('Slice', [b.op('Shape', [prod]), b.i64([0]), b.i64([2])]), b.op('Slice', [sShape, b.i64([2]), b.i64([4])])], [intAttr('axis', 0)]);
  return b.op('Reshape', [prod, shape]);
}
