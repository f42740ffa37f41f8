// The state of the pruning view (metric and accuracy against sparsity, one line per strategy, and a table), shared
// by its panel (extension/panels/prune) and the view (webview/prune). The host computes the curves
// (core/analysis/prune); the view only draws them. Its messages are every result view's (./ipc.ts ViewToHost,
// StateToView).

export interface PruneViewPoint {
  sparsity: number;
  reached: number;
  capped: boolean;
  metric: number;
  accuracy: number;
  kl: number;
  faithfulness?: number;
}

export interface PruneState {
  version: 1;
  title: string;
  suiteName: string;
  modelName: string;
  /** The suite's metric (logit_diff, prob, accuracy or kl). */
  metric: string;
  prompts: number;
  prunableEntries: number;
  circuit?: { name: string; nodes: number; ownedEntries: number; maxSparsity: number };
  baseline: { metric: number; accuracy: number; kl: number; faithfulness?: number };
  curves: { strategy: string; points: PruneViewPoint[] }[];
  notes: string[];
}
