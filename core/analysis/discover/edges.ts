// Edge circuit discovery: greedy selection by edge scores and ACDC-style pruning, with every edge outside the
// circuit ablated. Heuristics: small and faithful circuits, not the smallest.
import { Cancelled } from '../../errors';
import { formatEdgeId, targetNode } from '../../ids';
import type { MetricName } from '../../vocabulary';
import type { EdgeScore } from '../attribute/nodes';
import { checkEdgeWork, edgeWeights, evaluateEdgeSets, type EdgeContext } from '../edge-context';
import { faithfulness, type CurvePoint, type SuiteMetrics } from '../metrics';

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
