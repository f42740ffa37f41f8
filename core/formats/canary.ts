import canarySchema from '../../schemas/canary.schema.json';
import type { AblationKind, MetricName } from '../vocabulary';
import type { Diagnostic } from './diagnostics';
import { compileSchema, SourceFile } from './source';

export type Quantity = MetricName | 'faithfulness' | 'necessity' | 'interaction' | 'jaccard';
export const QUANTITIES: Quantity[] = ['accuracy', 'logit_diff', 'prob', 'kl', 'faithfulness', 'necessity', 'interaction', 'jaccard'];

export interface Bound { op: '>=' | '<=' | '>' | '<' | '=='; value: number; text: string }

export type Assertion = { quantity: Quantity; bound: Bound } | { quantity: 'top1'; expected: string };

export interface CanaryCheck {
  name: string;
  index: number;
  line: number;
  col: number;
  assertion: Assertion;
  circuit?: string;
  ablate?: string[];
  prompt?: string;
  tags?: string[];
  ablation?: AblationKind;
  metric?: MetricName;
  /** Two nodes whose pair interaction is asserted (`interaction`). */
  backup?: string[];
  /** Another circuit file, whose overlap with `circuit` is asserted (`jaccard`). */
  relate?: string;
}

export interface Canary {
  file: string;
  name?: string;
  model: string;
  suite: string;
  checks: CanaryCheck[];
  source: SourceFile;
}

export function parseBound(text: string): Bound {
  const m = /^\s*(>=|<=|>|<|==)\s*(-?[0-9.]+(?:e-?[0-9]+)?)\s*$/.exec(text);
  if (!m || Number.isNaN(Number(m[2]))) throw new Error(`bad bound ${text}`);
  return { op: m[1] as Bound['op'], value: Number(m[2]), text: `${m[1]} ${m[2]}` };
}

export function holds(b: Bound, x: number): boolean {
  switch (b.op) {
    case '>=': return x >= b.value;
    case '<=': return x <= b.value;
    case '>': return x > b.value;
    case '<': return x < b.value;
    case '==': return Math.abs(x - b.value) <= 1e-9 * Math.max(1, Math.abs(b.value));
  }
}

export function parseCanary(file: string, text: string): { canary?: Canary; diagnostics: Diagnostic[] } {
  const src = new SourceFile(file, text);
  if (!src.ok || !src.validate(compileSchema(canarySchema))) return { diagnostics: src.diagnostics };
  const v = src.value as { name?: string; model: string; suite: string; checks: Record<string, unknown>[] };
  const checks: CanaryCheck[] = [];
  const names = new Set<string>();
  v.checks.forEach((c, i) => {
    const at = src.locate(['checks', i]);
    const keys = Object.keys(c);
    const asserted = keys.filter((k) => (QUANTITIES as string[]).includes(k) || k === 'top1');
    const name = String(c['name']);
    if (names.has(name)) src.report(['checks', i, 'name'], `two checks are named "${name}"; names identify tests, make them unique`);
    names.add(name);
    if (asserted.length !== 1) {
      src.report(['checks', i], asserted.length === 0
        ? `check "${name}" has no assertion (add one of: ${[...QUANTITIES, 'top1'].join(', ')})`
        : `check "${name}" has ${asserted.length} assertions (${asserted.join(', ')}); write one check per assertion`);
      return;
    }
    const q = asserted[0]!;
    if ((q === 'faithfulness' || q === 'necessity') && !c['circuit']) src.report(['checks', i, q], `${q} is measured for a circuit: add circuit: path/to/file.circuit.json`, 'error', true);
    if (q === 'top1' && !c['prompt']) src.report(['checks', i, 'top1'], 'top1 checks a single prompt: add prompt: "..."', 'error', true);
    if (c['prompt'] && q !== 'top1') src.report(['checks', i, 'prompt'], 'a prompt check asserts top1: "<token>"', 'error', true);
    if (c['circuit'] && c['ablate']) src.report(['checks', i, 'ablate'], 'use either circuit or ablate in one check, not both', 'error', true);
    if (c['circuit'] && q !== 'faithfulness' && q !== 'necessity' && q !== 'jaccard') src.report(['checks', i, q], `with a circuit, assert faithfulness, necessity or jaccard (not ${q})`, 'error', true);
    if (q === 'interaction' && !c['backup']) src.report(['checks', i, q], 'interaction is measured for a pair of nodes: add backup: [a1.h0, a1.h1]', 'error', true);
    if (c['backup'] && q !== 'interaction') src.report(['checks', i, 'backup'], `a backup check asserts interaction: ">= 0.2" (the pair's joint effect minus each alone), not ${q}`, 'error', true);
    if (q === 'jaccard' && (!c['relate'] || !c['circuit'])) src.report(['checks', i, q], 'jaccard compares two circuits: add circuit: a.circuit.json and relate: b.circuit.json', 'error', true);
    if (c['relate'] && q !== 'jaccard') src.report(['checks', i, 'relate'], `a relate check asserts jaccard: ">= 0.5", not ${q}`, 'error', true);
    const assertion: Assertion = q === 'top1' ? { quantity: 'top1', expected: String(c['top1']) } : { quantity: q as Quantity, bound: parseBound(String(c[q])) };
    checks.push({
      name, index: i, line: at.line, col: at.col, assertion,
      circuit: c['circuit'] as string | undefined, ablate: c['ablate'] as string[] | undefined, prompt: c['prompt'] as string | undefined,
      tags: c['tags'] as string[] | undefined, ablation: c['ablation'] as AblationKind | undefined, metric: c['metric'] as MetricName | undefined,
      backup: c['backup'] as string[] | undefined, relate: c['relate'] as string | undefined,
    });
  });
  if (!src.ok) return { diagnostics: src.diagnostics };
  return { canary: { file, name: v.name, model: v.model, suite: v.suite, checks, source: src }, diagnostics: src.diagnostics };
}
