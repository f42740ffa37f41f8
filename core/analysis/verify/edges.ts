// Verification of edge circuits: faithfulness and necessity under every metric with every edge outside (or inside)
// the circuit ablated, minimality per edge, the faithfulness curve over sizes with CPR/CMD, specificity on controls.
import { UserError } from '../../errors';
import { formatEdgeId, parseEdgeId } from '../../ids';
import { METRICS, type MetricName } from '../../vocabulary';
import type { EdgeScore } from '../attribute/nodes';
import { edgeWeights, evaluateEdgeSets, type EdgeContext } from '../edge-context';
import { cprCmd, faithfulness, type CurvePoint, type SuiteMetrics } from '../metrics';
import type { Verification } from './nodes';

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
