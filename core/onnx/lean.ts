// Rewrites for lean sessions: an instrumented graph cut down to the outputs a session fetches (onnxruntime computes
// every graph output on every run), with the last layer's MLP on the last position only, or with row statistics.
import { Builder } from './builder';
import type { ModelStructure } from './detect';
import { GraphIndex, perPosition, PER_POSITION_OPS } from './graph';
import { IN, LAST_LOGITS, PATCHED } from './instrument';
import { DataType, floatValueInfo, int64Tensor, intAttr, type OnnxModel } from './model';

/** Elementwise activations an MLP may use, on top of PER_POSITION_OPS. */
const MLP_OPS = new Set([...PER_POSITION_OPS, 'Erf', 'Sigmoid', 'Relu', 'Gelu', 'FastGelu', 'Exp', 'Softplus', 'Max', 'Min', 'Clip']);

/**
 * For the lean metrics graphs (last-position logits only): the last layer's MLP and residual add run on the last
 * position only, from its resid_mid (the MLP is per position, so the other positions' MLP outputs reach nothing
 * those graphs return). `model` is such a graph (withOutputsOnly); returns a pruned copy and the resid_mid tensor
 * the last layer now ends at (for layer skipping), or undefined when the MLP branch is not a per-position path.
 */
export function withLastMlpOnLastPosition(model: OnnxModel, s: ModelStructure): { model: OnnxModel; lastStart: string } | undefined {
  const graph = model.graph!;
  const g = new GraphIndex(graph);
  const l = s.layers.length - 1;
  const L = s.layers[l];
  const gatherLast = graph.node.find((n) => n.name === 'circuitlens/gather_last');
  if (!L || !gatherLast || gatherLast.input[0] !== L.residPost) return undefined;
  const post = g.producerOf(L.residPost);
  const mlpOut = PATCHED.mlp(l);
  if (!post || post.opType !== 'Add' || !post.input.includes(mlpOut)) return undefined;
  const mid = post.input[0] === mlpOut ? post.input[1]! : post.input[0]!;
  const branch = g.between(mid, mlpOut)?.map((i) => g.node(i));
  if (!branch) return undefined;
  const desc = g.descendants(mid);
  for (const n of branch) {
    if (!perPosition(n, g, MLP_OPS)) return undefined;
    // A product of two activations could mix positions; a weight (not computed from the stream) cannot.
    if (n.opType === 'MatMul' && n.input.every((t) => desc.has(g.producer.get(t) ?? -1) || t === mid)) return undefined;
  }
  const p = 'circuitlens.lastmlp';
  const b = new Builder();
  const lastMid = b.node('Gather', [mid, 'circuitlens.last_index'], [`${p}.mid`], `${p}/gather_mid`, [intAttr('axis', 1)]);
  // The ablation's additive term may hold a value per position ([B, T, D]) or broadcast ([1, 1, 1]): its last one.
  const lastAdd = b.node('Gather', [IN.mlpAdd(l), 'circuitlens.last_index'], [`${p}.add`], `${p}/gather_add`, [intAttr('axis', 1)]);
  const rename = b.copy(branch, 'lastmlp', new Map([[mid, lastMid], [IN.mlpAdd(l), lastAdd]]));
  b.node('Add', post.input.map((t) => rename.get(t)!), ['circuitlens.last_resid'], `${p}/residual`);
  const node = graph.node.filter((n) => n !== gatherLast);
  const at = node.findIndex((n) => n.input.includes('circuitlens.last_resid'));
  node.splice(at < 0 ? node.length : at, 0, ...b.nodes);
  const out = withOutputsOnly({ ...model, graph: { ...graph, node } }, graph.output.map((o) => o.name));
  return { model: out, lastStart: mid };
}

/**
 * A copy of `model` whose graph outputs are `outputs` only, without the nodes none of them needs: onnxruntime
 * computes every graph output on every run, fetched or not. Shares tensors with `model` (no weight copies).
 */
export function withOutputsOnly(model: OnnxModel, outputs: string[]): OnnxModel {
  const graph = model.graph!;
  const keep = new Set(outputs);
  const output = graph.output.filter((o) => keep.has(o.name));
  const missing = outputs.filter((o) => !output.some((x) => x.name === o));
  if (missing.length) throw new Error(`withOutputsOnly: not graph outputs: ${missing.join(', ')}`);
  const g = new GraphIndex(graph);
  const needed = new Set<number>();
  for (const o of output) for (const i of g.ancestors(o.name).nodes) needed.add(i);
  const node = graph.node.filter((_, i) => needed.has(i));
  const used = new Set(node.flatMap((n) => n.input));
  return { ...model, graph: { ...graph, node, output, initializer: graph.initializer.filter((t) => used.has(t.name)) } };
}

/** Graph output with statistics of each row of LAST_LOGITS, [batch, 1, 4]: see withLastRowStats. */
export const LAST_STATS = 'circuitlens.logits_last_stats';

/**
 * A copy of `model` (which outputs LAST_LOGITS, [B, 1, V]) with one more output, LAST_STATS [B, 1, 4]: per row
 * the maximum logit m, Σ exp(logit − m) as the float32 pair hi + lo of its float64 sum, and the index of the
 * first maximum (a float, exact below 2^24); core/analysis/metrics.ts `rowStats` reads a row. With them a
 * row's log-normaliser is m + log(hi + lo) without JavaScript's Math.exp over the vocabulary (~10 ns per entry: 0.5 ms of a 50k-vocabulary row, most of a
 * sweep's scoring). The exponentials are float32, 1-2 ulp each: the log-normaliser is good to ~1e-7 (a weighted
 * mean of their relative errors; ~1e-9 on a flat 50k row), where float64 exponentials in onnxruntime cost as much
 * as JavaScript's. The sum is float64 (a float32 sum is off by ~4e-6 on 50k entries). Needs double-precision
 * Cast and ReduceSum: onnxruntime's CPU kernels (native and WASM), not WebGPU's. ReduceSum takes its axes as an
 * input: opset 13 on. onnxruntime computes every output on every run, so every run of a session with these
 * nodes pays for them (~0.1 ms per 50k row, and ~3 row-sized buffers, one float64, at the arena's peak).
 */
export function withLastRowStats(model: OnnxModel): OnnxModel {
  const graph = model.graph!;
  if (!graph.output.some((o) => o.name === LAST_LOGITS)) throw new Error(`withLastRowStats: ${LAST_LOGITS} is not a graph output`);
  const t = (n: string) => `circuitlens.stats.${n}`;
  const b = new Builder();
  b.node('ArgMax', [LAST_LOGITS], [t('argmax')], 'circuitlens/stats_argmax', [intAttr('axis', -1), intAttr('keepdims', 1)]);
  b.node('GatherElements', [LAST_LOGITS, t('argmax')], [t('max')], 'circuitlens/stats_max', [intAttr('axis', -1)]);
  b.node('Sub', [LAST_LOGITS, t('max')], [t('shifted')], 'circuitlens/stats_shift');
  b.node('Exp', [t('shifted')], [t('exp')], 'circuitlens/stats_exp');
  b.node('Cast', [t('exp')], [t('exp64')], 'circuitlens/stats_exp64', [intAttr('to', DataType.DOUBLE)]);
  b.node('ReduceSum', [t('exp64'), t('axes')], [t('sum64')], 'circuitlens/stats_sum', [intAttr('keepdims', 1)]);
  b.node('Cast', [t('sum64')], [t('hi')], 'circuitlens/stats_hi', [intAttr('to', DataType.FLOAT)]);
  b.node('Cast', [t('hi')], [t('hi64')], 'circuitlens/stats_hi64', [intAttr('to', DataType.DOUBLE)]);
  b.node('Sub', [t('sum64'), t('hi64')], [t('lo64')], 'circuitlens/stats_lo64');
  b.node('Cast', [t('lo64')], [t('lo')], 'circuitlens/stats_lo', [intAttr('to', DataType.FLOAT)]);
  b.node('Cast', [t('argmax')], [t('argmaxf')], 'circuitlens/stats_argmaxf', [intAttr('to', DataType.FLOAT)]);
  b.node('Concat', [t('max'), t('hi'), t('lo'), t('argmaxf')], [LAST_STATS], 'circuitlens/stats', [intAttr('axis', -1)]);
  b.init(int64Tensor(t('axes'), [-1]));
  return {
    ...model,
    graph: { ...graph, node: [...graph.node, ...b.nodes], initializer: [...graph.initializer, ...b.inits], output: [...graph.output, floatValueInfo(LAST_STATS, 3)] },
  };
}
