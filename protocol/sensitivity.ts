// The state of the quantization-sensitivity view (a table and bar charts of the suite's metric, accuracy, KL and a
// circuit's faithfulness per weight scope), shared by its panel (extension/panels/sensitivity) and the view
// (webview/sensitivity). The host computes the rows (core/analysis/sensitivity); the view only draws them.
// Its messages are every result view's (./ipc.ts ViewToHost, StateToView).

export interface SensitivityViewMeasure {
  metric: number;
  accuracy: number;
  kl: number;
  faithfulness?: number;
}

export interface SensitivityViewRow extends SensitivityViewMeasure {
  scope: string;
  tensors: number;
  entries: number;
  relativeError: number;
  metricDrop: number;
}

export interface SensitivityState {
  version: 1;
  title: string;
  suiteName: string;
  modelName: string;
  /** The suite's metric (logit_diff, prob, accuracy or kl). */
  metric: string;
  /** `int4`, `int4, groups of 32`, `fp16`. */
  quantization: string;
  prompts: number;
  circuitName?: string;
  baseline: SensitivityViewMeasure;
  rows: SensitivityViewRow[];
  notes: string[];
}
