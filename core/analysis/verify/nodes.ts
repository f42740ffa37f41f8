import { allComponentNodes, type NodeId } from '../../ids';
import { patchingAttribution } from '../attribute/nodes';
import { cprCmd, type CurvePoint } from '../metrics';
import { evaluateSets, type EvalContext } from '../evaluate';
import { faithfulness, type SuiteMetrics } from '../metrics';
import { METRICS, type MetricName } from '../../vocabulary';

export interface Verification {
  metric: MetricName;
  /** Faithfulness under the suite's metric. */
  faithfulness: number;
  faithfulnessByMetric: Record<MetricName, number>;
  necessity: number;
  necessityByMetric: Record<MetricName, number>;
  /** Per node: the drop in faithfulness when it alone is removed from the circuit (≤ 0: it can go). */
  minimality: Record<string, number>;
  specificity?: { prompts: number; klWhenAblated: number; accuracyClean: number; accuracyWhenAblated: number; taskKlWhenAblated: number };
  curve: CurvePoint[];
  cpr: number;
  cmd: number;
  prompts: number;
  ablation: string;
  full: SuiteMetrics;
  empty: SuiteMetrics;
  circuit: SuiteMetrics;
}

/**
 * Everything a circuit claim needs, on the suite's task prompts: faithfulness (several metrics), necessity,
 * minimality per node, the faithfulness curve over sizes with MIB's CPR/CMD, and specificity on controls.
 */
export async function verifyCircuit(ctx: EvalContext, nodes: NodeId[], metric: MetricName, control?: EvalContext): Promise<Verification> {
  const info = ctx.engine.info;
  const all = allComponentNodes(info);
  const inC = new Set<string>(nodes);
  const C = all.filter((n) => inC.has(n));
  const outside = (keep: Set<string>) => all.filter((n) => !keep.has(n));
  const sets: NodeId[][] = [[], all, outside(inC), C, ...C.map((n) => outside(new Set(C.filter((x) => x !== n))))];
  const [full, empty, circuit, without, ...minus] = await evaluateSets(ctx, sets);
  const fOf = (m: SuiteMetrics, q: MetricName = metric) => faithfulness(q, m, empty!.metrics, full!.metrics);
  const byMetric = {} as Record<MetricName, number>;
  const necByMetric = {} as Record<MetricName, number>;
  for (const q of METRICS) {
    byMetric[q] = fOf(circuit!.metrics, q);
    necByMetric[q] = 1 - fOf(without!.metrics, q);
  }
  const fC = byMetric[metric];
  const minimality: Record<string, number> = {};
  C.forEach((n, i) => { minimality[n] = fC - fOf(minus[i]!.metrics); });

  // Curve: circuit nodes first (most needed first), then the rest by single-node patching score.
  const attr = await patchingAttribution(ctx, metric);
  const rest = attr.nodes.filter((s) => !inC.has(s.id)).sort((a, b) => b.score - a.score).map((s) => s.id);
  const order = [...[...C].sort((a, b) => minimality[b]! - minimality[a]!), ...rest];
  const prefixes = order.map((_, k) => outside(new Set(order.slice(0, k + 1))));
  const curveRuns = await evaluateSets(ctx, prefixes);
  const curve: CurvePoint[] = [{ size: 0, fraction: 0, faithfulness: 0 }, ...curveRuns.map((r, k) => ({ size: k + 1, fraction: (k + 1) / all.length, faithfulness: fOf(r.metrics) }))];

  let specificity: Verification['specificity'];
  if (control && control.prompts.length) {
    const [cClean, cAbl] = await evaluateSets(control, [[], C]);
    specificity = {
      prompts: control.prompts.length, klWhenAblated: cAbl!.metrics.kl, accuracyClean: cClean!.metrics.accuracy,
      accuracyWhenAblated: cAbl!.metrics.accuracy, taskKlWhenAblated: without!.metrics.kl,
    };
  }
  return {
    metric, faithfulness: fC, faithfulnessByMetric: byMetric, necessity: necByMetric[metric], necessityByMetric: necByMetric, minimality,
    specificity, curve, ...cprCmd(curve), prompts: ctx.prompts.length, ablation: ctx.ablation, full: full!.metrics, empty: empty!.metrics,
    circuit: circuit!.metrics,
  };
}
