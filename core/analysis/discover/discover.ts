// One discovery pipeline for every caller (CLI `discover`, the extension's Discover Circuit): scores, selection,
// verification, and the circuit file's content. Callers add where the files are.
import { edgeTarget, formatEdgeId, parseEdgeId, type NodeId } from '../../ids';
import { patchingAttribution } from '../attribute/nodes';
import { acdcNodes, greedyNodes } from './nodes';
import { acdcEdges, greedyEdges } from './edges';
import { edgeCircuitNodes, verifyEdgeCircuit } from '../verify/edges';
import { edgeGradientScores, edgePatchingScores } from '../attribute/edges';
import { prepareEdges } from '../edge-context';
import type { EvalContext } from '../evaluate';
import { gradientAttribution } from '../attribute/gradient';
import type { MetricName } from '../../vocabulary';
import type { ResolvedPrompt } from '../prompts';
import { round6, verificationRecord } from '../records';
import { verifyCircuit, type Verification } from '../verify/nodes';

export interface DiscoverOptions {
  level: 'node' | 'edge';
  method: 'greedy' | 'acdc';
  /** What greedy selection ranks by (and the scores stored in the file). */
  scoring: 'patching' | 'gradient';
  /** EAP-IG steps for gradient scores (1 = EAP). */
  steps: number;
  /** Greedy: the faithfulness to reach. */
  target: number;
  /** ACDC: the largest faithfulness drop a removal may cause. */
  threshold: number;
}

export interface Discovered {
  nodes: NodeId[];
  edges: { source: string; target: string; score: number }[];
  /** Node scores (node level). */
  scores: Record<string, number>;
  verification: Verification;
  /** The metrics block of the circuit file. */
  metrics: Record<string, unknown>;
  notes: string;
  /** Edges in the model (edge level). */
  edgesInModel?: number;
}

/**
 * Finds and verifies a circuit on the task prompts. `all`: every suite prompt (means are taken over them, DESIGN
 * §4); `control`: the control prompts' context, for specificity.
 */
export async function discoverCircuit(task: EvalContext, control: EvalContext | undefined, all: ResolvedPrompt[], metric: MetricName, o: DiscoverOptions): Promise<Discovered> {
  const how = o.method === 'acdc'
    ? `ACDC-style pruning${o.level === 'edge' ? ' over edges' : ''} (threshold ${o.threshold})`
    : `greedy selection by ${o.scoring === 'gradient' ? `gradient (${o.steps > 1 ? `EAP-IG, ${o.steps} steps` : 'EAP'})` : o.level === 'edge' ? 'exact path-patching' : 'exact patching'} scores until faithfulness ≥ ${o.target}`;
  const notes = `${o.level === 'edge' ? 'Edge circuit found' : 'Found'} by ${how} on ${task.prompts.length} task prompts with ${task.ablation} ablation${o.level === 'edge' ? ' of every edge outside it' : ''}. A heuristic: small and faithful, not proven minimal.`;
  const extra = {
    method: o.method, target: o.method === 'greedy' ? o.target : undefined, threshold: o.method === 'acdc' ? o.threshold : undefined,
    scores: o.scoring, steps: o.scoring === 'gradient' ? o.steps : undefined,
  };
  if (o.level === 'edge') {
    const ec = await prepareEdges(task, all);
    const cc = control ? await prepareEdges(control, all) : undefined;
    const scores = o.scoring === 'gradient' ? await edgeGradientScores(ec, metric, o.steps) : (await edgePatchingScores(ec, metric)).edges;
    const found = o.method === 'acdc' ? await acdcEdges(ec, metric, o.threshold) : await greedyEdges(ec, metric, scores, o.target);
    const v = await verifyEdgeCircuit(ec, found.edges, metric, scores, cc);
    const scoreOf = new Map<string, number>(scores.map((e) => [formatEdgeId(e), e.score]));
    return {
      nodes: edgeCircuitNodes(found.edges) as NodeId[],
      edges: found.edges.map((id) => { const e = parseEdgeId(id); return { source: e.source, target: edgeTarget(e), score: round6(scoreOf.get(id) ?? 0) }; }),
      scores: {}, verification: v, metrics: verificationRecord(v, { ...extra, edgesInModel: ec.ids.length }), notes, edgesInModel: ec.ids.length,
    };
  }
  const attr = o.scoring === 'gradient' ? await gradientAttribution(task, metric, { steps: o.steps }) : await patchingAttribution(task, metric);
  const found = o.method === 'acdc' ? await acdcNodes(task, metric, o.threshold) : await greedyNodes(task, metric, attr.nodes, o.target);
  const v = await verifyCircuit(task, found.nodes, metric, control);
  return {
    nodes: found.nodes, edges: [], scores: Object.fromEntries(attr.nodes.map((n) => [n.id, round6(n.score)])), verification: v,
    metrics: verificationRecord(v, extra), notes,
  };
}
