import type { Verification } from '../core/analysis/verify/nodes';

/** Three decimals; NaN and infinities as words. */
export const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : String(x));

/** A prompt (or any user text) cut to `max` characters with `…`, for text output; JSON output is never shortened. */
export function shorten(text: string, max = 60): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join('')}…`;
}

/** Faithfulness, necessity, minimality and specificity as discover and verify print them. */
export function printVerification(v: Verification, out: (s: string) => void): void {
  const m = v.faithfulnessByMetric;
  out(`  faithfulness ${f3(v.faithfulness)} (${v.metric})  —  by metric: logit_diff ${f3(m.logit_diff)}, accuracy ${f3(m.accuracy)}, kl ${f3(m.kl)}`);
  out(`  necessity ${f3(v.necessity)}   CPR ${f3(v.cpr)}   CMD ${f3(v.cmd)}   (MIB: area under the faithfulness curve over sizes / area between it and 1)`);
  const entries = Object.entries(v.minimality);
  // Edge circuits have many members: the largest drops, and how many more (all of them are in --json).
  const shown = entries.length > 20 ? [...entries].sort((a, b) => b[1] - a[1]).slice(0, 12) : entries;
  const more = entries.length - shown.length;
  out(`  minimality (faithfulness drop when one member alone is removed): ${shown.map(([k, d]) => `${k} ${f3(d)}`).join(', ')}${more ? `, … ${more} more (--json lists all)` : ''}`);
  const removable = entries.filter(([, d]) => d <= 0).map(([k]) => k);
  if (removable.length) out(`  not minimal: removing ${removable.length > 12 ? `${removable.slice(0, 12).join(', ')} and ${removable.length - 12} more` : removable.join(', ')} alone does not lower faithfulness`);
  if (v.specificity) {
    const s = v.specificity;
    out(`  specificity on ${s.prompts} control prompts: KL ${f3(s.klWhenAblated)} when the circuit is ablated (task: ${f3(s.taskKlWhenAblated)}), accuracy ${f3(s.accuracyClean)} → ${f3(s.accuracyWhenAblated)}`);
  }
}
