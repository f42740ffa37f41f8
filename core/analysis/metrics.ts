import type { MetricName } from '../vocabulary';

export interface PromptScore {
  /** answer − foil logit (NaN when the prompt has no foil). */
  logitDiff: number;
  /** Probability of the answer. */
  prob: number;
  correct: boolean;
  /** KL(clean ‖ this run) of the next-token distribution; 0 for the clean run itself. */
  kl: number;
  top1: number;
}

// Plain indexed loops: these run once per prompt row over the whole vocabulary (50k for GPT-2), where
// iterator and callback forms cost ~10× more (measured in bench/).
export function logSoftmax(logits: Float32Array): Float64Array {
  const n = logits.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i]! > max) max = logits[i]!;
  let z = 0;
  for (let i = 0; i < n; i++) z += Math.exp(logits[i]! - max);
  const lz = max + Math.log(z);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = logits[i]! - lz;
  return out;
}

export function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

/** What KL to a clean row needs of it, computed once per clean row (cached by the log-probability array). */
interface CleanRow { p: Float64Array; plogp: number; sumP: number }
const cleanRows = new WeakMap<Float64Array, CleanRow>();

function cleanRow(logP: Float64Array): CleanRow {
  let row = cleanRows.get(logP);
  if (!row) {
    const p = new Float64Array(logP.length);
    let plogp = 0;
    let sumP = 0;
    for (let i = 0; i < logP.length; i++) {
      const pi = Math.exp(logP[i]!);
      p[i] = pi;
      if (pi > 0) { plogp += pi * logP[i]!; sumP += pi; }
    }
    row = { p, plogp, sumP };
    cleanRows.set(logP, row);
  }
  return row;
}

/** A row's statistics from the engine (core/onnx/lean.ts LAST_STATS): max logit, Σ exp(logit − max), argmax. */
export interface RowStats { max: number; sumExp: number; top1: number }

/** Row r of a LAST_STATS tensor ([B, 1, 4]: max, Σ exp as a float32 pair hi + lo, argmax). */
export function rowStats(stats: Float32Array, r: number): RowStats {
  return { max: stats[4 * r]!, sumExp: stats[4 * r + 1]! + stats[4 * r + 2]!, top1: stats[4 * r + 3]! };
}

/**
 * Scores of one row of last-position logits. One pass for the maximum and top-1, one for the normaliser, one
 * for Σ p·logit (KL only); KL(clean ‖ row) = Σ p log p − Σ p·logit + log Z · Σ p, with the clean side computed
 * once per clean row. Equal to Σ p (log p − log q) to float64 rounding (test/unit/metrics.test.ts), at a third of
 * the cost on a 50k vocabulary. With the engine's `stats` of the row only the Σ p·logit pass is left (a quarter
 * of the time on a 50k vocabulary, graph part included: Math.exp is most of it); its exponentials are float32, so
 * the log-normaliser is good to ~1e-7 rather than float64 rounding, and KL, which takes any error in it at first
 * order, has a noise floor of ~1e-7 instead of ~1e-15 (a KL that small says "no effect" either way).
 */
export function scorePrompt(logits: Float32Array, answer: number, foil: number | undefined, cleanLogProbs?: Float64Array, stats?: RowStats): PromptScore {
  const n = logits.length;
  const clean = cleanLogProbs ? cleanRow(cleanLogProbs) : undefined;
  const p = clean?.p;
  let max = -Infinity;
  let top1 = 0;
  let z = 0;
  let pl = 0;
  if (stats) {
    // From the engine's graph: no pass over the row for the maximum, none of Math.exp.
    ({ max, top1, sumExp: z } = stats);
    if (p) for (let i = 0; i < n; i++) if (p[i]! > 0) pl += p[i]! * logits[i]!;
  } else {
    for (let i = 0; i < n; i++) if (logits[i]! > max) { max = logits[i]!; top1 = i; }
    if (p) {
      for (let i = 0; i < n; i++) {
        const l = logits[i]!;
        z += Math.exp(l - max);
        if (p[i]! > 0) pl += p[i]! * l;
      }
    } else {
      for (let i = 0; i < n; i++) z += Math.exp(logits[i]! - max);
    }
  }
  const lz = max + Math.log(z);
  const kl = clean ? Math.max(0, clean.plogp - pl + lz * clean.sumP) : 0;
  return {
    logitDiff: foil === undefined ? NaN : logits[answer]! - logits[foil]!,
    prob: Math.exp(logits[answer]! - lz),
    correct: top1 === answer,
    kl,
    top1,
  };
}

export function metricOf(s: PromptScore, m: MetricName): number {
  switch (m) {
    case 'logit_diff': return s.logitDiff;
    case 'prob': return s.prob;
    case 'accuracy': return s.correct ? 1 : 0;
    case 'kl': return s.kl;
  }
}

export type SuiteMetrics = Record<MetricName, number>;

export function meanMetrics(scores: PromptScore[]): SuiteMetrics {
  const mean = (f: (s: PromptScore) => number) => scores.reduce((a, s) => a + f(s), 0) / scores.length;
  return { logit_diff: mean((s) => s.logitDiff), prob: mean((s) => s.prob), accuracy: mean((s) => (s.correct ? 1 : 0)), kl: mean((s) => s.kl) };
}

/**
 * Faithfulness f = (m(C) − m(∅)) / (m(full) − m(∅)) (DESIGN §4). KL is a distance (lower is better), so it
 * enters as −KL: f = 1 − KL(C)/KL(∅). NaN when the full and empty models do not differ.
 */
export function faithfulness(m: MetricName, circuit: SuiteMetrics, empty: SuiteMetrics, full: SuiteMetrics): number {
  const v = (x: SuiteMetrics) => (m === 'kl' ? -x.kl : x[m]);
  const denom = v(full) - v(empty);
  if (Math.abs(denom) < 1e-12) return NaN;
  return (v(circuit) - v(empty)) / denom;
}

/** Necessity = 1 − (m(full − C) − m(∅)) / (m(full) − m(∅)). */
export function necessity(m: MetricName, complement: SuiteMetrics, empty: SuiteMetrics, full: SuiteMetrics): number {
  return 1 - faithfulness(m, complement, empty, full);
}

export interface CurvePoint { size: number; fraction: number; faithfulness: number }

/**
 * CPR and CMD as in the MIB benchmark, over a faithfulness curve f(x) with x the fraction of the model kept:
 * CPR = ∫ f dx (higher is better), CMD = ∫ |1 − f| dx (lower is better), by the trapezoid rule.
 */
export function cprCmd(curve: CurvePoint[]): { cpr: number; cmd: number } {
  const pts = [...curve].sort((a, b) => a.fraction - b.fraction);
  let cpr = 0;
  let cmd = 0;
  for (let i = 1; i < pts.length; i++) {
    const dx = pts[i]!.fraction - pts[i - 1]!.fraction;
    cpr += (dx * (pts[i]!.faithfulness + pts[i - 1]!.faithfulness)) / 2;
    cmd += (dx * (Math.abs(1 - pts[i]!.faithfulness) + Math.abs(1 - pts[i - 1]!.faithfulness))) / 2;
  }
  return { cpr, cmd };
}
