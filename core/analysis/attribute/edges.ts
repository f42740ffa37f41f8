// Edge attribution: exact path patching (one edge ablated at a time) and gradients on the edge weights (EAP, and
// EAP-IG averaged over steps between no ablation and full ablation), and the choice between them for callers that
// leave it to the analysis.
import { groupByLength } from '../../engine/feeds';
import { Cancelled, isUserError, UserError } from '../../errors';
import type { MetricName } from '../../vocabulary';
import { ablatedFor, checkEdgeWork, edgeRowsPerCall, edgeSetMetrics, evaluateEdgeSets, planEdgeCalls, type EdgeContext } from '../edge-context';
import { SCORE_WIDTH, unpackScores } from '../distributed/plan';
import { meter } from '../progress';
import type { SuiteMetrics } from '../metrics';
import { gradientSeed, surrogateFor } from './gradient';
import { signedMetric, type EdgeScore } from './nodes';

/** Exact edge attribution: the metric drop when one edge alone is ablated (clean − ablated), every edge. */
export async function edgePatchingScores(ec: EdgeContext, metric: MetricName): Promise<{ edges: EdgeScore[]; clean: SuiteMetrics }> {
  checkEdgeWork(ec, 'exact edge attribution', 'Use gradient scores (--method gradient, EAP or EAP-IG with --steps), fewer prompts, or workers (--broker).', !!ec.ctx.remote);
  const remote = ec.ctx.remote;
  if (!remote) return edgePatchingResult(ec, await evaluateEdgeSets(ec, edgePatchingSets(ec)), metric);
  // On workers: each plans these calls again (edgePatchingSets are E weight vectors of E: too many to send).
  const sets = ec.ids.length + 1;
  const calls = planEdgeCalls(ec, sets);
  const values = await remote.run(ec.ctx, { kind: 'edge-patching' }, calls.map((c) => c.length), SCORE_WIDTH, 'edge sets');
  const scores = unpackScores(values, calls, sets);
  return edgePatchingResult(ec, edgeSetMetrics(ec, sets, (s, i) => scores[s]![i]!), metric);
}

/** The weight sets of exact edge attribution: none ablated, then each edge alone. */
export function edgePatchingSets(ec: EdgeContext): Float32Array[] {
  return Array.from({ length: ec.ids.length + 1 }, (_, s) => edgePatchingSet(ec, s));
}

/** Set `s` of edgePatchingSets alone (0: none ablated; s: edge s − 1), for work that needs only a few of them. */
export function edgePatchingSet(ec: EdgeContext, s: number): Float32Array {
  const w = new Float32Array(ec.ids.length);
  if (s > 0) w[s - 1] = 1;
  return w;
}

/** Edge scores from the metrics of edgePatchingSets. */
export function edgePatchingResult(ec: EdgeContext, metrics: SuiteMetrics[], metric: MetricName): { edges: EdgeScore[]; clean: SuiteMetrics } {
  const [clean, ...single] = metrics;
  const base = signedMetric(clean!, metric);
  return { clean: clean!, edges: ec.ctx.engine.edges.edges.map((e, i) => ({ source: e.source, target: e.target, score: base - signedMetric(single[i]!, metric) })) };
}

/** One row of edge gradient work: a prompt at a point α between no ablation (0) and full ablation (1). */
export interface GradientRow { prompt: number; alpha: number }

/** The engine calls of edgeGradientScores, in order (a distributed run plans the same ones). */
export function planGradientCalls(ec: EdgeContext, steps: number): GradientRow[][] {
  if (!Number.isInteger(steps) || steps < 1 || steps > 1024) throw new UserError(`--steps must be a whole number from 1 to 1024 (got ${steps})`);
  const alphas = steps === 1 ? [0] : Array.from({ length: steps }, (_, j) => (j + 0.5) / steps);
  const calls: GradientRow[][] = [];
  for (const group of groupByLength(ec.ctx.prompts.map((p) => p.ids))) {
    const rows: GradientRow[] = [];
    group.forEach((g) => alphas.forEach((alpha) => rows.push({ prompt: g.index, alpha })));
    const per = edgeRowsPerCall(ec, group[0]!.ids.length, steps === 1 ? 'eap' : 'gradient');
    for (let start = 0; start < rows.length; start += per) calls.push(rows.slice(start, start + per));
  }
  return calls;
}

/** One planned call: the gradient of each row's surrogate metric by every edge weight, [rows × E]. */
export async function runGradientCall(ec: EdgeContext, metric: MetricName, chunk: GradientRow[]): Promise<Float32Array> {
  const { engine, prompts } = ec.ctx;
  const E = ec.ids.length;
  const ps = chunk.map((r) => prompts[r.prompt]!);
  const weights = chunk.map((r) => (r.alpha === 0 ? undefined : new Float32Array(E).fill(r.alpha)));
  const ablated = ablatedFor(ec, chunk.map((r) => r.prompt));
  const kinds = ps.map((p) => surrogateFor(metric, p));
  const logits = kinds.every((k) => k === 'logit_diff') ? undefined : (await engine.runEdges({ ids: ps.map((p) => p.ids), weights, ablated })).logits.data;
  const seed = gradientSeed(ps, kinds, engine.info.vocab, logits);
  return (await engine.edgeGradients({ ids: ps.map((p) => p.ids), weights, ablated, seed })).grads;
}

/** Adds a call's gradients into the running total, row by row (the order every run sums in). */
export function addGradients(total: Float64Array, grads: ArrayLike<number>, rows: number): void {
  const E = total.length;
  for (let i = 0; i < rows; i++) for (let e = 0; e < E; e++) total[e] += grads[i * E + e]!;
}

/** Edge scores from the summed gradients: −Σ / (steps × prompts). */
export function gradientEdgeScores(ec: EdgeContext, total: Float64Array, steps: number): EdgeScore[] {
  return ec.ctx.engine.edges.edges.map((e, i) => ({ source: e.source, target: e.target, score: -total[i]! / (steps * ec.ctx.prompts.length) }));
}

/**
 * Edge attribution by gradients: EAP (steps = 1), the first-order estimate −∂m/∂w_e at w = 0 of each edge's
 * patching score, where w_e moves what flows along the edge from the source's actual to its ablated output;
 * EAP-IG (steps k > 1) averages the gradient over w = α for every edge at once, α = (j − ½)/k. One backward
 * run per step over the prompts gives every edge's score.
 */
export async function edgeGradientScores(ec: EdgeContext, metric: MetricName, steps = 1): Promise<EdgeScore[]> {
  const calls = planGradientCalls(ec, steps);
  const total = new Float64Array(ec.ids.length);
  if (ec.ctx.remote) {
    // On workers: each row's gradient by every edge comes back (float32, as computed), summed here in call order.
    const rows = calls.map((c) => c.length);
    const values = await ec.ctx.remote.run(ec.ctx, { kind: 'edge-gradient', steps, metric }, rows, ec.ids.length, steps === 1 ? 'edge gradients (EAP)' : `edge gradients (EAP-IG, ${steps} steps)`);
    let at = 0;
    for (const n of rows) { addGradients(total, values.subarray(at, at + n * ec.ids.length), n); at += n * ec.ids.length; }
    return gradientEdgeScores(ec, total, steps);
  }
  const m = meter(ec.ctx, steps === 1 ? 'edge gradients (EAP)' : `edge gradients (EAP-IG, ${steps} steps)`, ec.ctx.prompts.length * steps);
  for (const chunk of calls) {
    if (ec.ctx.signal?.aborted) throw new Cancelled();
    addGradients(total, await runGradientCall(ec, metric, chunk), chunk.length);
    m?.tick(chunk.length);
  }
  return gradientEdgeScores(ec, total, steps);
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
