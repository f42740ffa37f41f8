// What a batched analysis will cost, said before it starts: rows of forward and backward work, and the time they
// should take at the speed this engine has shown on its metrics forwards (the clean run every analysis begins
// with). An estimate from one machine's measured speed, not a promise: sessions built on first use, layer
// skipping and a loaded machine move it either way.
import type { EvalContext } from './evaluate';

export interface WorkEstimate {
  what: string;
  /** Whole-model forward rows (one prompt with one ablation each). */
  forwardRows: number;
  /** Rows of a forward plus backward run (gradients). */
  gradientRows: number;
  /** Mean prompt length in tokens. */
  tokens: number;
  /** Seconds at the engine's measured speed; undefined before it has run a metrics forward. */
  seconds?: number;
}

/** A backward run costs about two forwards on top of its own forward. */
const GRADIENT_ROW_COST = 3;

export function estimateWork(ctx: EvalContext, what: string, rows: { forward?: number; gradient?: number }): WorkEstimate {
  const forwardRows = rows.forward ?? 0;
  const gradientRows = rows.gradient ?? 0;
  const tokens = ctx.prompts.reduce((a, p) => a + p.ids.length, 0) / Math.max(1, ctx.prompts.length);
  const ms = ctx.engine.msPerToken;
  const seconds = ms === undefined ? undefined : ((forwardRows + GRADIENT_ROW_COST * gradientRows) * tokens * ms) / 1000;
  return { what, forwardRows, gradientRows, tokens, seconds };
}

/** One line: "node attribution: 1,200 forward rows of ~16 tokens, about 40 s (at 2.1 ms per token here)". */
export function describeWork(e: WorkEstimate, msPerToken?: number): string {
  const n = (x: number) => x.toLocaleString('en');
  const rows = [e.forwardRows ? `${n(e.forwardRows)} forward rows` : '', e.gradientRows ? `${n(e.gradientRows)} gradient rows` : ''].filter(Boolean).join(' and ') || 'no rows';
  const time = e.seconds === undefined ? '' : `, about ${formatSeconds(e.seconds)}${msPerToken !== undefined ? ` (at ${msPerToken.toPrecision(2)} ms per token here)` : ''}`;
  return `${e.what}: ${rows} of ~${Math.round(e.tokens)} tokens${time}`;
}

export function formatSeconds(s: number): string {
  if (s < 90) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
