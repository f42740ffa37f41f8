// Edge-level analysis: attribution (exact path patching and EAP / EAP-IG on edge weights), discovery (greedy
// by scores, ACDC-style pruning) and verification of edge circuits, on the engine's per-destination inputs
// (core/onnx/edges.ts). Edge ablation replaces what flows along an edge by the source's ablated output: 0
// (zero), its mean over the suite's prompts and positions (mean), or its output on the corrupted prompt
// (resample).
import { groupByLength } from '../engine/feeds';
import type { F32 } from '../engine/runtime';
import type { EdgeRunner, EdgeValues } from '../engine/types';
import { isUserError, UserError } from '../errors';
import { METRICS, type MetricName } from '../vocabulary';
import { formatEdgeId, parseEdgeId, targetNode } from '../ids';
import { signedMetric, type EdgeScore } from './attribution';
import { cprCmd, type CurvePoint } from './discovery';
import { Cancelled, concatRows, sliceRow, type EvalContext } from './evaluate';
import { gradientSeed, surrogateFor } from './gradient';
import { faithfulness, meanMetrics, scorePrompt, type SuiteMetrics } from './metrics';
import type { ResolvedPrompt } from './prompts';
import type { Verification } from './verify';

/** What edge analysis reads of an evaluation context: the engine only through its edge runs (EdgeRunner). */
export type EdgeEvalContext = Pick<EvalContext, 'prompts' | 'ablation' | 'cleanLogProbs' | 'maxRows' | 'signal'> & { engine: EdgeRunner };

/** An evaluation context with the edge ids and ablated values; `C`: the context it was prepared from. */
export interface EdgeContext<C extends EdgeEvalContext = EdgeEvalContext> {
  ctx: C;
  /** Edge ids `SRC->DST` in the engine's order. */
  ids: string[];
  /** Shared ablated values (zero: undefined; mean: means), or per prompt (resample). */
  shared?: EdgeValues;
  perPrompt?: EdgeValues[];
}

/** Ablated values for the context's ablation kind; `meanOver`: the prompts means are taken over (DESIGN §4). */
export async function prepareEdges<C extends EdgeEvalContext>(ctx: C, meanOver?: ResolvedPrompt[]): Promise<EdgeContext<C>> {
  const { engine } = ctx;
  const ids = engine.edges.edges.map(formatEdgeId);
  if (ctx.ablation === 'zero') return { ctx, ids };
  if (ctx.ablation === 'mean') {
    const prompts = (meanOver ?? ctx.prompts).map((p) => p.ids);
    let sum: EdgeValues | undefined;
    let count = 0;
    for (const group of groupByLength(prompts)) {
      for (const chunk of chunks(group, edgeRowsPerCall({ ctx, ids }, group[0]!.ids.length, 'forward'))) {
        const r = await engine.runEdges({ ids: chunk.map((g) => g.ids), outputs: true });
        const o = r.outputs!;
        sum = sum ? addValues(sum, sumRows(o)) : sumRows(o);
        count += chunk.length * chunk[0]!.ids.length;
      }
    }
    const scale = (t: F32): F32 => ({ dims: t.dims, data: t.data.map((x) => x / count) });
    return { ctx, ids, shared: { input: scale(sum!.input), heads: sum!.heads.map(scale), mlp: sum!.mlp.map(scale) } };
  }
  const perPrompt: EdgeValues[] = new Array(ctx.prompts.length);
  for (const group of groupByLength(ctx.prompts.map((p) => p.corruptedIds!))) {
    for (const chunk of chunks(group, edgeRowsPerCall({ ctx, ids }, group[0]!.ids.length, 'forward'))) {
      const r = await engine.runEdges({ ids: chunk.map((g) => g.ids), outputs: true });
      chunk.forEach((g, row) => { perPrompt[g.index] = mapValues(r.outputs!, (t) => sliceRow(t, row)); });
    }
  }
  return { ctx, ids, perPrompt };
}

/**
 * Rows per engine call for edge work: the edge graphs hold, per row, every upstream output for every later
 * layer's destinations (and the backward graph more), so a large model gets far fewer rows than maxRows.
 * Measured on GPT-2-small at 16 tokens, per row: ~500 MiB for gradients away from zero (with head-sliced
 * projections; ~1 GiB with the heads folded) and ~160 MiB for forward runs, about 5.4× and 1.7× the per-row size
 * T·L·N·D·4 bytes (N upstream nodes). EAP (the graph at zero, Engine.edgeGradients) holds the N upstream outputs
 * (twice: as computed and in blocks) and the 3H per-head copies of the stream per layer with what their backward
 * pass keeps: T·D·4·(2N + 6·3HL) bytes, 143 MiB on GPT-2-small, where 45–100 MiB were measured with sliced
 * projections and ~1.6× that folded. The budget keeps a call near 3 GiB.
 */
export function edgeRowsPerCall(ec: EdgeContext, T: number, kind: 'forward' | 'gradient' | 'eap'): number {
  const { layers, dModel, heads } = ec.ctx.engine.info;
  const upstream = 1 + layers * (heads + 1);
  const perRow = kind === 'eap'
    ? T * dModel * 4 * (2 * upstream + 6 * 3 * heads * layers)
    : T * layers * upstream * dModel * 4 * (kind === 'gradient' ? 6 : 2.5);
  return Math.max(1, Math.min(ec.ctx.maxRows, Math.floor(EDGE_CALL_BYTES / perRow)));
}

const EDGE_CALL_BYTES = 3 * 1024 ** 3;

/** Last-position logits for every (edge weight vector, prompt); a set is a weight per edge (1 = ablated). */
export async function runEdgeSets(ec: EdgeContext, sets: Float32Array[]): Promise<Float32Array[][]> {
  const { engine, prompts } = ec.ctx;
  const V = engine.info.vocab;
  const out: Float32Array[][] = sets.map(() => new Array(prompts.length));
  for (const group of groupByLength(prompts.map((p) => p.ids))) {
    const rows: { set: number; prompt: number }[] = [];
    sets.forEach((_, s) => group.forEach((g) => rows.push({ set: s, prompt: g.index })));
    const per = edgeRowsPerCall(ec, group[0]!.ids.length, 'forward');
    for (let start = 0; start < rows.length; start += per) {
      if (ec.ctx.signal?.aborted) throw new Cancelled();
      const chunk = rows.slice(start, start + per);
      const res = await engine.runEdges({
        ids: chunk.map((r) => prompts[r.prompt]!.ids),
        weights: chunk.map((r) => sets[r.set]),
        ablated: ablatedFor(ec, chunk.map((r) => r.prompt)),
      });
      chunk.forEach((r, i) => { out[r.set]![r.prompt] = res.logits.data.slice(i * V, (i + 1) * V); });
    }
  }
  return out;
}

export async function evaluateEdgeSets(ec: EdgeContext, sets: Float32Array[]): Promise<SuiteMetrics[]> {
  const logits = await runEdgeSets(ec, sets);
  return sets.map((_, s) => meanMetrics(ec.ctx.prompts.map((p, i) => scorePrompt(logits[s]![i]!, p.answer, p.foil, ec.ctx.cleanLogProbs[i]))));
}

/** A weight vector with 1 on the given edges (or on all edges but them, with `invert`). */
export function edgeWeights(ec: EdgeContext, edges: Iterable<string>, invert = false): Float32Array {
  const inSet = new Set(edges);
  return Float32Array.from(ec.ids, (id) => (inSet.has(id) !== invert ? 1 : 0));
}

/** Forward rows beyond which one-edge-at-a-time work (exact edge scores, ACDC over edges) is refused with advice. */
export const MAX_EDGE_ROWS = 1_000_000;

/** Refuses one-run-per-edge work that would take hours, saying what to use instead. */
export function checkEdgeWork(ec: EdgeContext, what: string, instead: string): void {
  const rows = ec.ids.length * ec.ctx.prompts.length;
  if (rows > MAX_EDGE_ROWS) {
    throw new UserError(`${what} runs every one of the model's ${ec.ids.length} edges on ${ec.ctx.prompts.length} prompts (${rows.toLocaleString('en')} forward rows); that is more than ${MAX_EDGE_ROWS.toLocaleString('en')}. ${instead}`);
  }
}

/** Exact edge attribution: the metric drop when one edge alone is ablated (clean − ablated), every edge. */
export async function edgePatchingScores(ec: EdgeContext, metric: MetricName): Promise<{ edges: EdgeScore[]; clean: SuiteMetrics }> {
  checkEdgeWork(ec, 'exact edge attribution', 'Use gradient scores (--method gradient, EAP or EAP-IG with --steps), or fewer prompts.');
  const E = ec.ids.length;
  const sets = [new Float32Array(E), ...ec.ids.map((_, e) => { const w = new Float32Array(E); w[e] = 1; return w; })];
  const [clean, ...single] = await evaluateEdgeSets(ec, sets);
  const base = signedMetric(clean!, metric);
  return { clean: clean!, edges: ec.ctx.engine.edges.edges.map((e, i) => ({ source: e.source, target: e.target, score: base - signedMetric(single[i]!, metric) })) };
}

/**
 * Edge attribution by gradients: EAP (steps = 1), the first-order estimate −∂m/∂w_e at w = 0 of each edge's
 * patching score, where w_e moves what flows along the edge from the source's actual to its ablated output;
 * EAP-IG (steps k > 1) averages the gradient over w = α for every edge at once, α = (j − ½)/k. One backward
 * run per step over the prompts gives every edge's score.
 */
export async function edgeGradientScores(ec: EdgeContext, metric: MetricName, steps = 1): Promise<EdgeScore[]> {
  if (!Number.isInteger(steps) || steps < 1 || steps > 1024) throw new UserError(`--steps must be a whole number from 1 to 1024 (got ${steps})`);
  const { engine, prompts } = ec.ctx;
  const V = engine.info.vocab;
  const E = ec.ids.length;
  const alphas = steps === 1 ? [0] : Array.from({ length: steps }, (_, j) => (j + 0.5) / steps);
  const total = new Float64Array(E);
  for (const group of groupByLength(prompts.map((p) => p.ids))) {
    const rows: { prompt: number; alpha: number }[] = [];
    group.forEach((g) => alphas.forEach((alpha) => rows.push({ prompt: g.index, alpha })));
    const per = edgeRowsPerCall(ec, group[0]!.ids.length, steps === 1 ? 'eap' : 'gradient');
    for (let start = 0; start < rows.length; start += per) {
      if (ec.ctx.signal?.aborted) throw new Cancelled();
      const chunk = rows.slice(start, start + per);
      const ps = chunk.map((r) => prompts[r.prompt]!);
      const weights = chunk.map((r) => (r.alpha === 0 ? undefined : new Float32Array(E).fill(r.alpha)));
      const ablated = ablatedFor(ec, chunk.map((r) => r.prompt));
      const kinds = ps.map((p) => surrogateFor(metric, p));
      const logits = kinds.every((k) => k === 'logit_diff') ? undefined : (await engine.runEdges({ ids: ps.map((p) => p.ids), weights, ablated })).logits.data;
      const seed = gradientSeed(ps, kinds, V, logits);
      const { grads } = await engine.edgeGradients({ ids: ps.map((p) => p.ids), weights, ablated, seed });
      for (let i = 0; i < chunk.length; i++) for (let e = 0; e < E; e++) total[e] += grads[i * E + e]!;
    }
  }
  return engine.edges.edges.map((e, i) => ({ source: e.source, target: e.target, score: -total[i]! / (steps * prompts.length) }));
}

export interface EdgeDiscovery {
  method: 'greedy' | 'acdc';
  edges: string[];
  faithfulness: number;
  curve: CurvePoint[];
  full: SuiteMetrics;
  empty: SuiteMetrics;
}

/**
 * Greedy edge selection: edges in order of score, the smallest prefix whose faithfulness reaches the target,
 * found by evaluating prefixes of doubling size and then bisecting (faithfulness is not monotone in general:
 * the result is the first prefix found at or above the target along that search, a heuristic).
 */
export async function greedyEdges(ec: EdgeContext, metric: MetricName, scores: EdgeScore[], target: number): Promise<EdgeDiscovery> {
  const E = ec.ids.length;
  const order = [...scores].sort((a, b) => b.score - a.score).map(formatEdgeId);
  const [full, empty] = await evaluateEdgeSets(ec, [new Float32Array(E), new Float32Array(E).fill(1)]);
  const f = (m: SuiteMetrics) => faithfulness(metric, m, empty!, full!);
  const seen = new Map<number, number>();
  const fAt = async (k: number) => {
    if (!seen.has(k)) { const [m] = await evaluateEdgeSets(ec, [edgeWeights(ec, order.slice(0, k), true)]); seen.set(k, f(m!)); }
    return seen.get(k)!;
  };
  let hi = 1;
  while (hi < E && (await fAt(hi)) < target) hi = Math.min(E, hi * 2);
  let lo = Math.floor(hi / 2);
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if ((await fAt(mid)) >= target) hi = mid; else lo = mid;
  }
  const k = hi;
  // The curve over sizes: the points evaluated, plus a grid for CPR / CMD.
  for (const frac of [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]) await fAt(Math.max(1, Math.round(frac * E)));
  const curve: CurvePoint[] = [{ size: 0, fraction: 0, faithfulness: 0 }, ...[...seen].sort((a, b) => a[0] - b[0]).map(([size, fx]) => ({ size, fraction: size / E, faithfulness: fx }))];
  return { method: 'greedy', edges: order.slice(0, k), faithfulness: seen.get(k)!, curve, full: full!, empty: empty! };
}

/**
 * ACDC-style pruning over edges: destinations from the logits back to the first layer, each one's incoming
 * edges in turn; an edge is removed (ablated, with everything already removed) when faithfulness drops by less
 * than `threshold`. Edges out of a node that no longer reaches the logits are removed without a test.
 */
export async function acdcEdges(ec: EdgeContext, metric: MetricName, threshold: number): Promise<EdgeDiscovery> {
  checkEdgeWork(ec, 'ACDC over edges', 'Use greedy selection by gradient scores (--method greedy --scores gradient), node-level discovery, or fewer prompts.');
  const E = ec.ids.length;
  const slots = ec.ctx.engine.edges.edges;
  const [full, empty] = await evaluateEdgeSets(ec, [new Float32Array(E), new Float32Array(E).fill(1)]);
  const f = (m: SuiteMetrics) => faithfulness(metric, m, empty!, full!);
  const removed = new Float32Array(E);
  let current = 1;
  const curve: CurvePoint[] = [{ size: E, fraction: 1, faithfulness: 1 }];
  // Destinations in reverse order of the layout (logits, last MLP, last layer's heads, ...): every target of a
  // node's outgoing edges comes before the node itself.
  const byDst = new Map<string, number[]>();
  slots.forEach((s, e) => { const d = targetNode(s.target); byDst.set(d, [...(byDst.get(d) ?? []), e]); });
  const alive = new Set<string>(['logits']);
  for (const dst of [...byDst.keys()].reverse()) {
    if (ec.ctx.signal?.aborted) throw new Cancelled();
    const incoming = byDst.get(dst)!;
    if (dst !== 'logits') {
      const reaches = slots.some((s, e) => removed[e] === 0 && s.source === dst && alive.has(targetNode(s.target)));
      if (!reaches) { for (const e of incoming) removed[e] = 1; continue; }
      alive.add(dst);
    }
    for (const e of incoming) {
      removed[e] = 1;
      const [m] = await evaluateEdgeSets(ec, [removed]);
      const fi = f(m!);
      if (current - fi < threshold) {
        current = fi;
        const size = E - removed.reduce((a, x) => a + x, 0);
        curve.push({ size, fraction: size / E, faithfulness: fi });
      } else {
        removed[e] = 0;
      }
    }
  }
  const edges = ec.ids.filter((_, e) => removed[e] === 0);
  curve.push({ size: 0, fraction: 0, faithfulness: 0 });
  return { method: 'acdc', edges, faithfulness: current, curve: curve.sort((a, b) => a.size - b.size), full: full!, empty: empty! };
}

/** Faithfulness and necessity of an edge circuit under every metric (everything outside it, or it, ablated). */
export async function evaluateEdgeCircuit(ec: EdgeContext, edges: string[]): Promise<{ faithfulness: Record<MetricName, number>; necessity: Record<MetricName, number> }> {
  const E = ec.ids.length;
  const [full, empty, circuit, without] = await evaluateEdgeSets(ec, [new Float32Array(E), new Float32Array(E).fill(1), edgeWeights(ec, edges, true), edgeWeights(ec, edges)]);
  const f = {} as Record<MetricName, number>;
  const n = {} as Record<MetricName, number>;
  for (const q of METRICS) { f[q] = faithfulness(q, circuit!, empty!, full!); n[q] = 1 - faithfulness(q, without!, empty!, full!); }
  return { faithfulness: f, necessity: n };
}

/**
 * Verification of an edge circuit (everything outside it ablated): faithfulness under every metric, necessity
 * (the circuit's edges ablated), minimality per edge, the curve over sizes (circuit edges by minimality, then
 * the rest by `scores`) with CPR / CMD, and specificity on control prompts.
 */
export async function verifyEdgeCircuit(ec: EdgeContext, edges: string[], metric: MetricName, scores: EdgeScore[], control?: EdgeContext): Promise<Verification> {
  const E = ec.ids.length;
  const known = new Set(ec.ids);
  const bad = edges.filter((e) => !known.has(e));
  if (bad.length) throw new UserError(`edges not in this model: ${bad.slice(0, 5).join(', ')}${bad.length > 5 ? ` and ${bad.length - 5} more` : ''}`);
  const C = ec.ids.filter((id) => edges.includes(id));
  const [full, empty, circuit, without, ...minus] = await evaluateEdgeSets(ec, [
    new Float32Array(E), new Float32Array(E).fill(1), edgeWeights(ec, C, true), edgeWeights(ec, C),
    ...C.map((x) => edgeWeights(ec, C.filter((y) => y !== x), true)),
  ]);
  const fOf = (m: SuiteMetrics, q: MetricName = metric) => faithfulness(q, m, empty!, full!);
  const byMetric = {} as Record<MetricName, number>;
  const necByMetric = {} as Record<MetricName, number>;
  for (const q of METRICS) { byMetric[q] = fOf(circuit!, q); necByMetric[q] = 1 - fOf(without!, q); }
  const fC = byMetric[metric];
  const minimality: Record<string, number> = {};
  C.forEach((x, i) => { minimality[x] = fC - fOf(minus[i]!); });
  const inC = new Set(C);
  const rest = [...scores].sort((a, b) => b.score - a.score).map(formatEdgeId).filter((id) => !inC.has(id));
  const order = [...[...C].sort((a, b) => minimality[b]! - minimality[a]!), ...rest];
  const sizes = [...new Set([...C.map((_, i) => i + 1), ...[0.05, 0.1, 0.2, 0.5, 1].map((x) => Math.max(1, Math.round(x * E)))])].sort((a, b) => a - b);
  const runs = await evaluateEdgeSets(ec, sizes.map((k) => edgeWeights(ec, order.slice(0, k), true)));
  const curve: CurvePoint[] = [{ size: 0, fraction: 0, faithfulness: 0 }, ...sizes.map((k, i) => ({ size: k, fraction: k / E, faithfulness: fOf(runs[i]!) }))];
  let specificity: Verification['specificity'];
  if (control && control.ctx.prompts.length) {
    const [cClean, cAbl] = await evaluateEdgeSets(control, [new Float32Array(E), edgeWeights(control, C)]);
    specificity = { prompts: control.ctx.prompts.length, klWhenAblated: cAbl!.kl, accuracyClean: cClean!.accuracy, accuracyWhenAblated: cAbl!.accuracy, taskKlWhenAblated: without!.kl };
  }
  return {
    metric, faithfulness: fC, faithfulnessByMetric: byMetric, necessity: necByMetric[metric], necessityByMetric: necByMetric, minimality, specificity,
    curve, ...cprCmd(curve), prompts: ec.ctx.prompts.length, ablation: ec.ctx.ablation, full: full!, empty: empty!, circuit: circuit!,
  };
}

/** Nodes an edge circuit touches (heads without their <q>/<k>/<v>), excluding input and logits. */
export function edgeCircuitNodes(edges: string[]): string[] {
  const nodes = new Set<string>();
  for (const e of edges) {
    const { source, target } = parseEdgeId(e);
    for (const id of [source, target]) if (id !== 'input' && id !== 'logits') nodes.add(id);
  }
  return [...nodes];
}

function ablatedFor(ec: EdgeContext, prompts: number[]): EdgeValues | undefined {
  if (ec.shared) return ec.shared;
  if (!ec.perPrompt) return undefined;
  const rows = prompts.map((p) => ec.perPrompt![p]!);
  const cat = (pick: (v: EdgeValues) => F32): F32 => concatRows(rows.map(pick));
  const L = rows[0]!.heads.length;
  return { input: cat((v) => v.input), heads: Array.from({ length: L }, (_, l) => cat((v) => v.heads[l]!)), mlp: Array.from({ length: L }, (_, l) => cat((v) => v.mlp[l]!)) };
}

function chunks<T>(xs: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

function mapValues(v: EdgeValues, fn: (t: F32) => F32): EdgeValues {
  return { input: fn(v.input), heads: v.heads.map(fn), mlp: v.mlp.map(fn) };
}

/** Sum over batch rows and positions, keeping [1, 1, ...]. */
function sumRows(v: EdgeValues): EdgeValues {
  return mapValues(v, (t) => {
    const [B, T] = t.dims as [number, number];
    const w = t.data.length / (B * T);
    const s = new Float32Array(w);
    for (let i = 0; i < B * T; i++) for (let j = 0; j < w; j++) s[j]! += t.data[i * w + j]!;
    return { dims: [1, 1, ...t.dims.slice(2)], data: s };
  });
}

function addValues(a: EdgeValues, b: EdgeValues): EdgeValues {
  const add = (x: F32, y: F32): F32 => ({ dims: x.dims, data: x.data.map((v, i) => v + y.data[i]!) });
  return { input: add(a.input, b.input), heads: a.heads.map((t, l) => add(t, b.heads[l]!)), mlp: a.mlp.map((t, l) => add(t, b.mlp[l]!)) };
}

/** Edges up to which attribution without a chosen method runs exact path patching (a few hundred forward runs). */
export const EXACT_EDGE_LIMIT = 600;

export interface EdgeAttribution {
  edges: EdgeScore[];
  method: 'path patching' | 'EAP';
  /** Set when gradients were wanted but the model's graph has no gradient for them: why, and what ran instead. */
  fallback?: string;
}

/**
 * Edge scores for a view that picks the method itself: exact path patching up to EXACT_EDGE_LIMIT edges, EAP
 * beyond. When the gradient graph cannot be built for this export (an operator without a gradient rule, a fused
 * op), it falls back to exact path patching, refused with advice where that would run for hours. `exactLimit` 0:
 * gradients wherever they can be had.
 */
export async function attributeEdges(ec: EdgeContext, metric: MetricName, exactLimit = EXACT_EDGE_LIMIT): Promise<EdgeAttribution> {
  if (ec.ids.length <= exactLimit) return { edges: (await edgePatchingScores(ec, metric)).edges, method: 'path patching' };
  try {
    return { edges: await edgeGradientScores(ec, metric), method: 'EAP' };
  } catch (e) {
    if (!isUserError(e)) throw e;
    const fallback = `gradients are not available for this model (${(e as Error).message}); edges scored by exact path patching instead`;
    return { edges: (await edgePatchingScores(ec, metric)).edges, method: 'path patching', fallback };
  }
}
