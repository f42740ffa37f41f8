// The attribution-graph view's messages, shared by the panel (extension/panels/graph) and the view (webview/graph).
// The view sends `ready` and gets the whole state; a save may start in the view or in the palette, so its outcome
// is a notification (`saved`), not a response.
import type { ResolvedPrompt } from '../core/analysis/prompts';
import type { AblationKind, MetricName } from '../core/vocabulary';
import type { NodeId } from '../core/ids';
import type { ComputeSetup, ComputeStatus } from './compute';
import type { StateToView, ViewToHost } from './ipc';

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
  /** The most edges drawn, as the view last had it (0: all); absent, the view keeps its own (300 at first). */
  edgeCap?: number;
  /** The "Hide |score| below" slider, in percent of the largest |score| (0–100), as the view last had it; absent,
   *  the view keeps its own (0 at first). */
  threshold?: number;
  compute: ComputeSetup;
  /** Set in a diff view: this graph is checkpoint B, compared with the baseline A described here. */
  diff?: GraphDiff;
}

/** A diff view's baseline (checkpoint A) and what is compared side by side with B (this graph). */
export interface GraphDiff {
  baselinePath: string;
  /** A's scores of the same nodes and edges. */
  nodes: GraphNode[];
  edges: GraphEdge[];
  /** Metrics side by side (task and control prompts, circuit faithfulness). */
  metrics: { name: string; a: number | null; b: number | null }[];
  /** The circuit as saved (outlined on A) and as re-discovered on B, when a circuit was given. */
  circuit?: { name: string; a: NodeId[]; b: NodeId[] };
}

export type GraphToView =
  | StateToView<GraphState>
  | { t: 'saved'; path: string };

export type GraphToHost =
  | ViewToHost
  | ComputeStatus
  | { t: 'marked'; nodes: NodeId[] }
  | { t: 'saveCircuit'; nodes: NodeId[]; metrics: Record<string, unknown> };
