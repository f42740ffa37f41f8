// The words every layer shares (formats, analysis, engine, CLI, views): kept apart from the code that acts on them,
// so a file that only names an ablation or a metric imports nothing else.

/** How an ablated node's output is replaced (DESIGN §4): by 0, by its mean, or by its value on a corrupted prompt. */
export const ABLATION_KINDS = ['zero', 'mean', 'resample'] as const;
export type AblationKind = (typeof ABLATION_KINDS)[number];

/** Metrics of DESIGN §4, read at the last position of each prompt. */
export type MetricName = 'logit_diff' | 'prob' | 'accuracy' | 'kl';
export const METRICS: MetricName[] = ['logit_diff', 'prob', 'accuracy', 'kl'];
