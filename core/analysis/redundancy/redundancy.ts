// Backups and redundancy, one use case for `circuitlens redundancy`, the extension's heatmap and the canaries'
// backup checks: the most important nodes (by node attribution) ablated alone and in every pair, in one batched
// evaluation, and the interaction of each pair, effect(A∪B) − effect(A) − effect(B), under every metric.
// A large positive interaction says the joint effect far exceeds the sum: each node covers for the other (a
// backup). Under a saturating metric (the logit difference) backups can look sub-additive while accuracy only
// falls when both go, so every metric is reported and the caller picks the one pairs are ranked by.
import { attribute, type AttributionMethod } from '../attribute/attribute';
import { signedMetric } from '../attribute/nodes';
import { estimateWork, type WorkEstimate } from '../cost';
import { evaluateSets, type EvalContext } from '../evaluate';
import type { SuiteMetrics } from '../metrics';
import type { ResolvedPrompt } from '../prompts';
import { allComponentNodes, type NodeId } from '../../ids';
import { round6 } from '../records';
import { UserError } from '../../errors';
import { METRICS, type MetricName } from '../../vocabulary';

/** One pair's effects under one metric: drops of the metric (larger = more harm; KL enters negated, as a rise). */
export interface PairEffects { effectA: number; effectB: number; effectAB: number; interaction: number }

export interface PairResult extends PairEffects {
  a: NodeId;
  b: NodeId;
  /** The same quantities under every metric. */
  byMetric: Record<MetricName, PairEffects>;
}

export interface RedundancyResult {
  /** The metric pairs are ranked by (and `effect*`/`interaction` of each pair are in). */
  metric: MetricName;
  ablation: string;
  prompts: number;
  /** The nodes compared, most important first, with their attribution score (the ranking metric's drop alone). */
  nodes: { id: NodeId; score: number }[];
  /** How the nodes were chosen, in words. */
  selection: string;
  clean: SuiteMetrics;
  /** All of `nodes` ablated at once: the scale interactions are read against, per metric. */
  fullEffect: Record<MetricName, number>;
  /** Every pair of `nodes`, the largest interaction (under `metric`) first. */
  pairs: PairResult[];
  /** Engine rows run for the pairs (sets × prompts), and the sets. */
  sets: number;
}

export interface RedundancyOptions {
  /** How many of the most important nodes to pair (default 10). */
  top?: number;
  /** Explicit nodes to pair instead of the top K. */
  nodes?: NodeId[];
  /** How the nodes are ranked: exact patching (default) or gradients (EAP), for large models. */
  method?: AttributionMethod;
  report?: (message: string) => void;
}

/** The drop of each metric from `clean` to `ablated` (KL: its rise). */
function drops(clean: SuiteMetrics, ablated: SuiteMetrics): Record<MetricName, number> {
  const d = {} as Record<MetricName, number>;
  for (const m of METRICS) d[m] = signedMetric(clean, m) - signedMetric(ablated, m);
  return d;
}

function effects(a: number, b: number, ab: number): PairEffects {
  return { effectA: a, effectB: b, effectAB: ab, interaction: ab - a - b };
}

/** Every unordered pair of `nodes`, in order (i < j). */
export function allPairs(nodes: NodeId[]): [NodeId, NodeId][] {
  const out: [NodeId, NodeId][] = [];
  for (let i = 0; i < nodes.length; i++) for (let j = i + 1; j < nodes.length; j++) out.push([nodes[i]!, nodes[j]!]);
  return out;
}

/** What pairing K nodes costs: K singles, K(K−1)/2 pairs and the whole set, on every prompt (after the ranking). */
export function estimatePairs(ctx: EvalContext, k: number): WorkEstimate {
  return estimateWork(ctx, `${k} nodes alone and in ${(k * (k - 1)) / 2} pairs`, { forward: (k + k * (k - 1) / 2 + 1) * ctx.prompts.length });
}

/**
 * Pair effects of the given pairs: every node of them alone, every pair, and all of `nodes` at once, as ablation
 * sets of one evaluateSets call (evaluate.ts batches them into rows within memory). The clean run is prepare's.
 */
export async function pairEffects(ctx: EvalContext, pairs: [NodeId, NodeId][], metric: MetricName, nodes?: NodeId[]): Promise<{ pairs: PairResult[]; clean: SuiteMetrics; fullEffect: Record<MetricName, number>; sets: number }> {
  const singles = [...new Set(pairs.flat())];
  const all = nodes ?? singles;
  const sets: NodeId[][] = [[], ...singles.map((n) => [n]), ...pairs.map(([a, b]) => [a, b]), all];
  const runs = await evaluateSets(ctx, sets);
  const clean = runs[0]!.metrics;
  const single = new Map(singles.map((n, i) => [n, drops(clean, runs[1 + i]!.metrics)]));
  const results = pairs.map(([a, b], p) => {
    const ab = drops(clean, runs[1 + singles.length + p]!.metrics);
    const byMetric = {} as Record<MetricName, PairEffects>;
    for (const m of METRICS) byMetric[m] = effects(single.get(a)![m], single.get(b)![m], ab[m]);
    return { a, b, ...byMetric[metric], byMetric };
  });
  return { pairs: results, clean, fullEffect: drops(clean, runs[runs.length - 1]!.metrics), sets: sets.length - 1 };
}

/**
 * The K most important nodes of the suite (by node attribution under `metric`, largest |score| first: a node that
 * hurts the behaviour matters too) or the nodes given, then every pair of them; pairs sorted by interaction.
 */
export async function redundancy(task: EvalContext, all: ResolvedPrompt[], metric: MetricName, o: RedundancyOptions = {}): Promise<RedundancyResult> {
  let nodes: { id: NodeId; score: number }[];
  let selection: string;
  if (o.nodes) {
    // The nodes given: no ranking to run; their scores are their effects alone (from the pair evaluation below).
    const ids = task.engine.checkNodes(o.nodes);
    if (new Set(ids).size !== ids.length) throw new UserError(`--nodes names a node twice (${ids.join(', ')})`);
    if (ids.length < 2) throw new UserError(`pairs need at least two nodes (got ${ids.length})`);
    nodes = ids.map((id) => ({ id, score: NaN }));
    selection = `the ${ids.length} nodes given`;
  } else {
    const k = o.top ?? 10;
    const n = allComponentNodes(task.engine.info).length;
    if (!Number.isInteger(k) || k < 2) throw new UserError(`--top must be a whole number of at least 2 (got ${k})`);
    const attr = await attribute(task, all, metric, { level: 'node', method: o.method ?? 'patching', report: o.report });
    nodes = [...attr.nodes].sort((a, b) => Math.abs(b.score) - Math.abs(a.score)).slice(0, Math.min(k, n));
    selection = `the ${nodes.length} of ${n} nodes with the largest |${metric} drop| alone (${attr.nodeMethod})`;
  }
  const ids = nodes.map((n) => n.id);
  const pairs = allPairs(ids);
  o.report?.(`${ids.length} nodes alone and ${pairs.length} pairs × ${task.prompts.length} prompts`);
  const r = await pairEffects(task, pairs, metric, ids);
  for (const n of nodes) {
    if (!Number.isNaN(n.score)) continue;
    const p = r.pairs.find((q) => q.a === n.id || q.b === n.id)!;
    n.score = p.a === n.id ? p.effectA : p.effectB;
  }
  r.pairs.sort((x, y) => y.interaction - x.interaction);
  return {
    metric, ablation: task.ablation, prompts: task.prompts.length, nodes, selection, clean: r.clean, fullEffect: r.fullEffect,
    pairs: r.pairs, sets: r.sets,
  };
}

/**
 * Pairs whose interaction is at least `share` of the whole set's effect under `metric`: candidate backups, by a
 * threshold (a heuristic, said so wherever it is shown), not a test of significance.
 */
export function backupCandidates(r: RedundancyResult, metric: MetricName = r.metric, share = 0.1): PairResult[] {
  const scale = Math.abs(r.fullEffect[metric]);
  if (!(scale > 0)) return [];
  return r.pairs.filter((p) => p.byMetric[metric].interaction >= share * scale).sort((x, y) => y.byMetric[metric].interaction - x.byMetric[metric].interaction);
}

const r6 = (e: PairEffects): PairEffects => ({ effectA: round6(e.effectA), effectB: round6(e.effectB), effectAB: round6(e.effectAB), interaction: round6(e.interaction) });

/** The JSON record of a redundancy result (the CLI's --json and --out; the extension's heatmap shows the same). */
export function redundancyRecord(r: RedundancyResult): Record<string, unknown> {
  const backups = {} as Record<MetricName, [NodeId, NodeId][]>;
  for (const m of METRICS) backups[m] = backupCandidates(r, m).map((p) => [p.a, p.b]);
  return {
    metric: r.metric, ablation: r.ablation, prompts: r.prompts, selection: r.selection,
    nodes: r.nodes.map((n) => ({ id: n.id, score: round6(n.score) })), clean: r.clean, fullEffect: r.fullEffect,
    pairs: r.pairs.map((p) => {
      const byMetric = {} as Record<MetricName, PairEffects>;
      for (const m of METRICS) byMetric[m] = r6(p.byMetric[m]);
      return { a: p.a, b: p.b, ...r6(p), byMetric };
    }),
    backups,
  };
}

