import { allComponentNodes, type NodeId } from '../../ids';
import { evaluateSets, type EvalContext } from '../evaluate';
import { faithfulness, type CurvePoint, type SuiteMetrics } from '../metrics';
import type { MetricName } from '../../vocabulary';
import type { NodeScore } from '../attribute/nodes';

export interface Discovery {
  method: 'acdc' | 'greedy';
  nodes: NodeId[];
  faithfulness: number;
  metric: MetricName;
  /** Faithfulness of the top-k nodes by score, k = 0..N (greedy), or of each pruning step (ACDC). */
  curve: CurvePoint[];
  steps: { node: NodeId; kept: boolean; faithfulness: number }[];
  full: SuiteMetrics;
  empty: SuiteMetrics;
}

/** Heads and MLPs outside `keep`: what is ablated to run the circuit `keep` alone. */
function complement(info: { layers: number; heads: number }, keep: Set<string>): NodeId[] {
  return allComponentNodes(info).filter((n) => !keep.has(n));
}

/**
 * ACDC-style pruning at node level: visit nodes from the last layer to the first and remove each one whose
 * removal (with everything already removed) lowers faithfulness by less than `threshold`. A heuristic:
 * it finds a small faithful circuit, not the smallest (that search is combinatorial).
 */
export async function acdcNodes(ctx: EvalContext, metric: MetricName, threshold: number): Promise<Discovery> {
  const info = ctx.engine.info;
  const all = allComponentNodes(info);
  const [full, empty] = await evaluateSets(ctx, [[], all]);
  const f = (m: SuiteMetrics) => faithfulness(metric, m, empty!.metrics, full!.metrics);
  const keep = new Set<string>(all);
  let current = 1;
  const steps: Discovery['steps'] = [];
  const curve: CurvePoint[] = [{ size: all.length, fraction: 1, faithfulness: 1 }];
  for (const node of [...all].reverse()) {
    keep.delete(node);
    const [r] = await evaluateSets(ctx, [complement(info, keep)]);
    const fi = f(r!.metrics);
    if (current - fi < threshold) {
      current = fi;
      steps.push({ node, kept: false, faithfulness: fi });
      curve.push({ size: keep.size, fraction: keep.size / all.length, faithfulness: fi });
    } else {
      keep.add(node);
      steps.push({ node, kept: true, faithfulness: fi });
    }
  }
  return { method: 'acdc', nodes: all.filter((n) => keep.has(n)), faithfulness: current, metric, curve: curve.reverse(), steps, full: full!.metrics, empty: empty!.metrics };
}

/**
 * Greedy selection by attribution score: add nodes in order of score until faithfulness reaches the target.
 * Every prefix is evaluated in one batched pass, which also gives the faithfulness curve over circuit sizes.
 */
export async function greedyNodes(ctx: EvalContext, metric: MetricName, scores: NodeScore[], target: number): Promise<Discovery> {
  const info = ctx.engine.info;
  const all = allComponentNodes(info);
  const order = [...scores].sort((a, b) => b.score - a.score).map((s) => s.id);
  const prefixes = order.map((_, k) => new Set<string>(order.slice(0, k + 1)));
  const [full, empty, ...rest] = await evaluateSets(ctx, [[], all, ...prefixes.map((p) => complement(info, p))]);
  const f = (m: SuiteMetrics) => faithfulness(metric, m, empty!.metrics, full!.metrics);
  const curve: CurvePoint[] = [{ size: 0, fraction: 0, faithfulness: 0 }, ...rest.map((r, k) => ({ size: k + 1, fraction: (k + 1) / all.length, faithfulness: f(r.metrics) }))];
  const k = curve.findIndex((p) => p.size > 0 && p.faithfulness >= target);
  const size = k === -1 ? all.length : curve[k]!.size;
  return {
    method: 'greedy', nodes: all.filter((n) => order.slice(0, size).includes(n)), faithfulness: curve[size]!.faithfulness, metric, curve,
    steps: order.map((node, i) => ({ node, kept: i < size, faithfulness: curve[i + 1]!.faithfulness })), full: full!.metrics, empty: empty!.metrics,
  };
}
