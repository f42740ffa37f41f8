// The attribution-graph view's messages, shared by the panel (extension/panels/graph) and the view (webview/graph).
// The view sends `ready` and gets the whole state; a save may start in the view or in the palette, so its outcome
// is a notification (`saved`), not a response.
import type { ResolvedPrompt } from '../core/analysis/prompts';
import type { AblationKind, MetricName } from '../core/vocabulary';
import type { NodeId } from '../core/ids';
import type { ComputeSetup } from './compute';

export interface GraphNode { id: NodeId | 'input' | 'logits'; score: number }
export interface GraphEdge { source: string; target: string; score: number }

/** The whole state of a graph view: sent on `ready` and persisted for restore after a reload. */
export interface GraphState {
  version: 1;
  title: string;
  modelPath: string;
  suitePath: string;
  metric: MetricName;
  ablation: AblationKind;
  method: string;
  layers: number;
  heads: number;
  nodes: GraphNode[];
  edges: GraphEdge[];
  /** Task prompts the view re-runs when ablating, and the prompts means are taken over. */
  prompts: ResolvedPrompt[];
  meanOver: ResolvedPrompt[];
  marked: NodeId[];
  compute: ComputeSetup;
}

export type GraphToView =
  | { t: 'state'; state: GraphState }
  | { t: 'saved'; path: string };

export type GraphToHost =
  | { t: 'ready' }
  | { t: 'marked'; nodes: NodeId[] }
  | { t: 'saveCircuit'; nodes: NodeId[]; metrics: Record<string, unknown> }
  | { t: 'status'; backend: string; message: string }
  | { t: 'error'; message: string };
