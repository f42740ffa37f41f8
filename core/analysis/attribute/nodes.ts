import { allComponentNodes, type NodeId } from '../../ids';
import { evaluateSets, type EvalContext, type SetResult } from '../evaluate';
import type { MetricName } from '../../vocabulary';
import type { SuiteMetrics } from '../metrics';

export interface NodeScore { id: NodeId; score: number }
export interface EdgeScore { source: string; target: string; score: number }
export interface Attribution { metric: MetricName; method: 'patching' | 'gradient'; nodes: NodeScore[]; edges: EdgeScore[]; clean: SuiteMetrics }

/** The metric as a quantity where larger is better (KL enters negated). */
export function signedMetric(m: SuiteMetrics, metric: MetricName): number {
  return metric === 'kl' ? -m.kl : m[metric];
}

/**
 * Exact node attribution by patching: for each head and MLP, the drop of the suite metric when it alone is
 * ablated (clean − ablated; positive = the node supports the behaviour). All nodes run in batched calls.
 */
export async function patchingAttribution(ctx: EvalContext, metric: MetricName): Promise<Attribution> {
  return patchingResult(await evaluateSets(ctx, patchingSets(ctx)), metric);
}

/** The ablation sets of node patching: none, then each head and MLP alone. */
export function patchingSets(ctx: EvalContext): NodeId[][] {
  return [[], ...allComponentNodes(ctx.engine.info).map((n) => [n])];
}

/** Node scores from the results of patchingSets. */
export function patchingResult(results: SetResult[], metric: MetricName): Attribution {
  const [clean, ...single] = results;
  const base = signedMetric(clean!.metrics, metric);
  return {
    metric, method: 'patching', clean: clean!.metrics,
    nodes: single.map((r, i) => ({ id: r.ablated[0]!, score: base - signedMetric(single[i]!.metrics, metric) })),
    edges: [],
  };
}
