// The state of the relations view (extension/panels/redundancy ↔ webview/redundancy): a heatmap of pair
// interactions (Redundancy (Backup Heads)) or of circuit overlaps (Relate Circuits). Its messages are every result
// view's (./ipc.ts ViewToHost, StateToView): the view sends `ready` and gets the whole state; it computes nothing
// (the host ran core/analysis/redundancy or relate).

/** One metric's pair effects, symmetric matrices over `nodes` (the diagonal holds each node alone). */
export interface PairMatrix {
  /** Effect of each node alone (drop of the metric; KL: its rise). */
  single: number[];
  /** Effect of both ablated; [i][i] = single[i]. */
  pair: number[][];
  /** pair − single[i] − single[j]; [i][i] = null (no pair). */
  interaction: (number | null)[][];
  /** All nodes ablated together (the scale the backups threshold reads). */
  full: number;
  /** Pairs with interaction ≥ 10 % of `full` (a heuristic), largest first. */
  backups: [string, string, number][];
}

export interface RedundancyState {
  version: 1;
  kind: 'redundancy';
  title: string;
  /** The metric shown first (the suite's). */
  metric: string;
  ablation: string;
  prompts: number;
  selection: string;
  nodes: string[];
  byMetric: Record<string, PairMatrix>;
}

export interface RelateState {
  version: 1;
  kind: 'relate';
  title: string;
  circuits: { file: string; name: string; nodes: string[]; suite: string; model: string; faithfulness: Record<string, number> }[];
  /** Symmetric, 1 on the diagonal. */
  jaccard: number[][];
  pairs: { a: number; b: number; shared: string[]; union: { onA: Record<string, number> | null; onB: Record<string, number> | null }; intersection: { onA: Record<string, number> | null; onB: Record<string, number> | null } }[];
  hubs: { id: string; circuits: number; drops: { suite: string; model: string; drop: number }[] }[];
}

export type RelationsState = RedundancyState | RelateState;
