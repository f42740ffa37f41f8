// Placeholders of suite templates (DESIGN §5, README "Sweeps"): `{VAR}` is replaced by the variable's value, and
// `{repeat(VAR, "TEXT")}` by TEXT written VAR times (VAR a whole number, e.g. a sweep variable: padding or
// distractors whose amount is swept). TEXT is quoted with " or ', and \" \' \\ escape inside it.

/** One placeholder found in a template string. */
export type Placeholder = { kind: 'var'; name: string } | { kind: 'repeat'; name: string; text: string };

const VAR = /\{(\w+)\}/g;
const CALL = /\{(\w+)\(([^{}]*)\)\}/g;
const CALL_START = /\{(\w+)\(/g;
const REPEAT_ARGS = /^\s*(\w+)\s*,\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\s*$/;
export const REPEAT_USAGE = '{repeat(VAR, "TEXT")}';
/** The most characters one repeat may write (a typo of 100000 for 10 should be an error, not a hang). */
export const MAX_REPEAT_CHARS = 100_000;

const unescape = (s: string) => s.replace(/\\(.)/g, '$1');

/** The placeholders of a string, or the first problem with one (a message for the user). */
export function placeholders(s: string): { found: Placeholder[]; error?: string } {
  const found: Placeholder[] = [];
  for (const m of s.matchAll(VAR)) found.push({ kind: 'var', name: m[1]! });
  let calls = 0;
  for (const m of s.matchAll(CALL)) {
    calls++;
    if (m[1] !== 'repeat') return { found, error: `unknown function ${m[1]}() in ${m[0]} (templates know ${REPEAT_USAGE})` };
    const a = REPEAT_ARGS.exec(m[2]!);
    if (!a) return { found, error: `${m[0]} is malformed: write ${REPEAT_USAGE}, TEXT in quotes` };
    found.push({ kind: 'repeat', name: a[1]!, text: unescape(a[2] ?? a[3] ?? '') });
  }
  const starts = [...s.matchAll(CALL_START)];
  if (starts.length !== calls) {
    const bad = starts.find((m) => !s.slice(m.index).match(/^\{\w+\([^{}]*\)\}/))!;
    return { found, error: `${s.slice(bad.index, bad.index + 24)}… is not closed: write ${REPEAT_USAGE}` };
  }
  return { found };
}

/** A whole number of repeats, or why the value cannot be one. */
export function repeatCount(value: string | number): { count?: number; error?: string } {
  const n = typeof value === 'number' ? value : Number(value);
  if (typeof value === 'string' && !/^\s*\d+\s*$/.test(value)) return { error: `repeat needs a whole number of times, got "${value}"` };
  if (!Number.isInteger(n) || n < 0) return { error: `repeat needs a whole number of times (0 or more), got ${value}` };
  return { count: n };
}

/**
 * The string with its placeholders filled from `binding`. Placeholders of names not bound are left as written
 * (callers check names first, with placeholders()). Throws on a repeat count that is not a whole number.
 */
export function fill(s: string, binding: Record<string, string | number>): string {
  const has = (k: string) => Object.hasOwn(binding, k);
  return s
    .replace(CALL, (all, fn: string, args: string) => {
      const a = REPEAT_ARGS.exec(args);
      if (fn !== 'repeat' || !a || !has(a[1]!)) return all;
      const { count, error } = repeatCount(binding[a[1]!]!);
      if (error !== undefined) throw new Error(error);
      const text = unescape(a[2] ?? a[3] ?? '');
      if (text.length * count! > MAX_REPEAT_CHARS) throw new Error(`${all} with ${a[1]} = ${count} writes ${text.length * count!} characters; the limit is ${MAX_REPEAT_CHARS}`);
      return text.repeat(count!);
    })
    .replace(VAR, (all, k: string) => (has(k) ? String(binding[k]) : all));
}
