// What every canary check kind returns, and how check messages print numbers: one shape for the runner
// (verify/canary.ts) and the check kinds that live beside their use cases (compare, redundancy, relate).

/** A check's outcome: `actual` as reported (a number, or the top-1 token's text); `value` a number bisect can follow. */
export interface CheckMeasure { pass: boolean; actual: number | string; value: number; message: string }

/** A number in a check's message: 4 significant decimals, small values in exponent form. */
export function formatCheckValue(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x !== 0 && Math.abs(x) < 1e-3) return x.toExponential(2);
  return Math.abs(x) >= 100 ? x.toFixed(1) : x.toFixed(4).replace(/0+$/, '').replace(/\.$/, '');
}
