// Attribution as one use case for every front end: which method runs at which level is decided here, not in a
// command. Node level: exact patching, or gradients (EAP / EAP-IG). Edge level: exact path patching, gradients on
// edge weights, or `auto` — patching while that is a few hundred runs, EAP beyond, patching again where the export
// has no gradient. The graph panel asks for both levels at once.
import { isUserError } from '../../errors';
import { allComponentNodes } from '../../ids';
import { patchingAttribution, type EdgeScore, type NodeScore } from './nodes';
import { estimateWork, type WorkEstimate } from '../cost';
import { attributeEdges, edgeGradientScores, edgePatchingScores } from './edges';
import { prepareEdges } from '../edge-context';
import type { EvalContext } from '../evaluate';
import { gradientAttribution } from './gradient';
import type { SuiteMetrics } from '../metrics';
import type { MetricName } from '../../vocabulary';
import type { ResolvedPrompt } from '../prompts';

export type AttributionLevel = 'node' | 'edge' | 'graph';
export type AttributionMethod = 'patching' | 'gradient' | 'auto';

export interface AttributeOptions {
  level: AttributionLevel;
  /** Node level: `auto` is patching. Edge level: `auto` picks by the number of edges. */
  method: AttributionMethod;
  /** EAP-IG steps with gradients (1 = plain EAP). */
  steps?: number;
  /** Progress for long work, in words. */
  report?: (message: string) => void;
}

export interface AttributeResult {
  metric: MetricName;
  nodes: NodeScore[];
  edges: EdgeScore[];
  /** How the nodes and the edges were scored, in words (for titles and logs). */
  nodeMethod?: string;
  edgeMethod?: string;
  /** Edge scores wanted but not had (graph level: the export has no edge graph), or a method fallen back from. */
  edgeNote?: string;
  /** The unablated metrics (patching runs them anyway). */
  clean?: SuiteMetrics;
}

const gradientName = (steps: number) => (steps > 1 ? `EAP-IG, ${steps} steps` : 'EAP');

/** What an attribution will cost, for the caller to say before it starts. */
export function estimateAttribution(task: EvalContext, o: AttributeOptions): WorkEstimate {
  const P = task.prompts.length;
  const steps = o.steps ?? 1;
  const gradient = o.method === 'gradient';
  const units = o.level === 'node' ? allComponentNodes(task.engine.info).length : task.engine.edges.edges.length;
  const what = `${o.level === 'graph' ? 'node and edge' : o.level} attribution by ${gradient ? gradientName(steps) : o.method === 'auto' && o.level !== 'node' ? 'patching or EAP' : 'exact patching'}`;
  return estimateWork(task, what, gradient ? { gradient: P * steps, forward: steps > 1 ? P : 0 } : { forward: (units + 1) * P });
}

/** Scores on the task prompts. `all`: every suite prompt (edge means are taken over them, DESIGN §4). */
export async function attribute(task: EvalContext, all: ResolvedPrompt[], metric: MetricName, o: AttributeOptions): Promise<AttributeResult> {
  const steps = o.steps ?? 1;
  const result: AttributeResult = { metric, nodes: [], edges: [] };
  if (o.level !== 'edge') {
    o.report?.(`${allComponentNodes(task.engine.info).length + 1} ablation sets × ${task.prompts.length} prompts`);
    const gradient = o.method === 'gradient' && o.level === 'node';
    const attr = gradient ? await gradientAttribution(task, metric, { steps }) : await patchingAttribution(task, metric);
    result.nodes = attr.nodes;
    result.clean = gradient ? undefined : attr.clean;
    result.nodeMethod = gradient ? `gradients (${gradientName(steps)})` : `exact patching (${task.ablation} ablation)`;
  }
  if (o.level === 'node') return result;
  try {
    const ec = await prepareEdges(task, all);
    o.report?.(`${ec.ids.length} edges`);
    if (o.method === 'auto' || o.level === 'graph') {
      const ea = await attributeEdges(ec, metric);
      result.edges = ea.edges;
      result.edgeMethod = ea.method;
      result.edgeNote = ea.fallback;
    } else if (o.method === 'gradient') {
      result.edges = await edgeGradientScores(ec, metric, steps);
      result.edgeMethod = `gradients on edge weights (${gradientName(steps)})`;
    } else {
      result.edges = (await edgePatchingScores(ec, metric)).edges;
      result.edgeMethod = 'exact path patching (one edge at a time)';
    }
  } catch (e) {
    // The graph view still shows nodes when this export has no edge graph; an edge attribution asked for fails.
    if (o.level !== 'graph' || !isUserError(e)) throw e;
    result.edgeNote = `no edge attribution for this model: ${(e as Error).message}`;
  }
  return result;
}
