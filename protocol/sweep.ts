// The state of the sweep view (a line plot of a suite's metric and accuracy against a swept variable), shared by
// its panel (extension/panels/sweep) and the view (webview/sweep). The host computes the sweep (core/analysis/sweep);
// the view only draws it, so it needs no compute worker. Its messages are every result view's (./ipc.ts
// ViewToHost, StateToView).

export interface SweepViewPoint {
  value: number;
  prompts: number;
  metric: number;
  accuracy: number;
  ci: { metric: [number, number]; accuracy: [number, number] } | null;
}

export interface SweepState {
  version: 1;
  title: string;
  suiteName: string;
  modelName: string;
  variable: string;
  /** The suite's metric (logit_diff, prob, accuracy or kl). */
  metric: string;
  level: number;
  points: SweepViewPoint[];
  critical: { value: number; direction: 'falls' | 'rises'; between: [number, number]; ci: [number, number] | null; resolved: number } | null;
  bootstrap: { resamples: number; confidence: number; seed: number };
}
