import canarySchema from '../../schemas/canary.schema.json';
import type { AblationKind, MetricName } from '../vocabulary';
import type { Diagnostic } from './diagnostics';
import { compileSchema, SourceFile } from './source';

export type Quantity = MetricName | 'faithfulness' | 'necessity' | 'interaction' | CrossCheckpointQuantity;
/**
 * Checks across checkpoints: `faithfulness_drop` = the circuit's faithfulness on `baseline` minus on this canary's
 * model; `jaccard` = of the circuit with the one re-discovered on this canary's model, or with `relate:` (another
 * circuit file) when given.
 */
export type CrossCheckpointQuantity = 'faithfulness_drop' | 'jaccard';
export const CROSS_CHECKPOINT: CrossCheckpointQuantity[] = ['faithfulness_drop', 'jaccard'];
export const QUANTITIES: Quantity[] = ['accuracy', 'logit_diff', 'prob', 'kl', 'faithfulness', 'necessity', 'interaction', ...CROSS_CHECKPOINT];

export interface Bound { op: '>=' | '<=' | '>' | '<' | '=='; value: number; text: string }

export type Assertion = { quantity: Quantity; bound: Bound } | { quantity: 'top1'; expected: string }
  /** n*, where accuracy crosses `at` as the swept `variable` grows (core/analysis/sweep), within a bound. */
  | { quantity: 'threshold'; variable: string; at: number; bound: Bound };

const BOUND_OPS = ['>=', '<=', '>', '<', '=='] as const;

export interface CanaryCheck {
  name: string;
  index: number;
  line: number;
  col: number;
  assertion: Assertion;
  circuit?: string;
  /** The model a `faithfulness_drop` is measured from (path relative to the canary). */
  baseline?: string;
  ablate?: string[];
  prompt?: string;
  /** With `temperature`: the head whose attention scores are divided by it before the softmax. */
  head?: string;
  temperature?: number;
  tags?: string[];
  ablation?: AblationKind;
  metric?: MetricName;
  /** Two nodes whose pair interaction is asserted (`interaction`). */
  backup?: string[];
  /** Another circuit file, whose overlap with `circuit` is asserted (`jaccard`). */
  relate?: string;
  /** The model pruned before a suite metric is measured (core/analysis/prune). */
  prune?: { strategy: 'magnitude' | 'outside-circuit' | 'layer-waves'; sparsity: number; circuit?: string };
  /** The check runs on the model with these weights fake-quantized (core/analysis/sensitivity); kl is to the original. */
  quantize?: QuantizeSpec;
}

/** `quantize: {bits: int4, scope: attn, group_size: 32}` (scope circuit/outside: the check's circuit). */
export interface QuantizeSpec { bits: 'int8' | 'int4' | 'fp16'; scope: 'all' | 'attn' | 'mlp' | 'embed' | 'circuit' | 'outside'; groupSize?: number }

const QUANTIZE_QUANTITIES = ['accuracy', 'logit_diff', 'prob', 'kl', 'faithfulness', 'necessity'];

export interface Canary {
  file: string;
  name?: string;
  model: string;
  suite: string;
  checks: CanaryCheck[];
  source: SourceFile;
}

/** The files a canary reads, as written in it (relative to the canary file): its model and suite, and every check's
 * circuit, baseline model, related circuit and the circuit a pruning spares. A change to any of them is a reason to
 * run it again. */
export function canaryFileRefs(c: Canary): { ref: string; kind: 'model' | 'suite' | 'circuit' }[] {
  const out = new Map<string, 'model' | 'suite' | 'circuit'>([[c.model, 'model'], [c.suite, 'suite']]);
  for (const k of c.checks) {
    if (k.baseline) out.set(k.baseline, 'model');
    for (const f of [k.circuit, k.relate, k.prune?.circuit]) if (f) out.set(f, 'circuit');
  }
  return [...out].map(([ref, kind]) => ({ ref, kind }));
}

export function isCrossCheckpoint(q: string): q is CrossCheckpointQuantity {
  return (CROSS_CHECKPOINT as string[]).includes(q);
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

/** `{variable: n, at: 0.5, ">=": 12}` (the schema has checked its shape: one comparison, a number). */
function thresholdAssertion(t: Record<string, unknown>): Assertion {
  const op = BOUND_OPS.find((o) => o in t)!;
  const bound = parseBound(`${op} ${Number(t[op])}`);
  return { quantity: 'threshold', variable: String(t['variable']), at: t['at'] === undefined ? 0.5 : Number(t['at']), bound };
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
    const asserted = keys.filter((k) => (QUANTITIES as string[]).includes(k) || k === 'top1' || k === 'threshold');
    const name = String(c['name']);
    if (names.has(name)) src.report(['checks', i, 'name'], `two checks are named "${name}"; names identify tests, make them unique`);
    names.add(name);
    if (asserted.length !== 1) {
      src.report(['checks', i], asserted.length === 0
        ? `check "${name}" has no assertion (add one of: ${[...QUANTITIES, 'top1', 'threshold'].join(', ')})`
        : `check "${name}" has ${asserted.length} assertions (${asserted.join(', ')}); write one check per assertion`);
      return;
    }
    const q = asserted[0]!;
    if ((q === 'faithfulness' || q === 'necessity') && !c['circuit']) src.report(['checks', i, q], `${q} is measured for a circuit: add circuit: path/to/file.circuit.json`, 'error', true);
    if (q === 'top1' && !c['prompt']) src.report(['checks', i, 'top1'], 'top1 checks a single prompt: add prompt: "..."', 'error', true);
    if (c['prompt'] && q !== 'top1') src.report(['checks', i, 'prompt'], 'a prompt check asserts top1: "<token>"', 'error', true);
    if (c['circuit'] && c['ablate']) src.report(['checks', i, 'ablate'], 'use either circuit or ablate in one check, not both', 'error', true);
    if (c['circuit'] && q !== 'faithfulness' && q !== 'necessity' && !isCrossCheckpoint(q) && !c['quantize']) src.report(['checks', i, q], `with a circuit, assert faithfulness, necessity, faithfulness_drop or jaccard (not ${q})`, 'error', true);
    if (isCrossCheckpoint(q) && !c['circuit']) src.report(['checks', i, q], `${q} is measured for a circuit: add circuit: path/to/file.circuit.json`, 'error', true);
    if (q === 'faithfulness_drop' && !c['baseline']) src.report(['checks', i, q], 'faithfulness_drop is measured from a baseline model: add baseline: path/to/earlier.onnx', 'error', true);
    if (c['baseline'] && q !== 'faithfulness_drop') src.report(['checks', i, 'baseline'], `baseline is the model a faithfulness_drop is measured from; ${q} does not use it`, 'error', true);
    if ((c['head'] === undefined) !== (c['temperature'] === undefined)) src.report(['checks', i, c['head'] === undefined ? 'temperature' : 'head'], 'a softmax-temperature check names both head: a<L>.h<H> and temperature: T', 'error', true);
    if (c['head'] !== undefined && (c['circuit'] || c['ablate'] || c['prompt'])) src.report(['checks', i, 'head'], `a softmax-temperature check asserts a suite metric (not with ${c['circuit'] ? 'circuit' : c['ablate'] ? 'ablate' : 'prompt'})`, 'error', true);
    if (q === 'interaction' && !c['backup']) src.report(['checks', i, q], 'interaction is measured for a pair of nodes: add backup: [a1.h0, a1.h1]', 'error', true);
    if (c['backup'] && q !== 'interaction') src.report(['checks', i, 'backup'], `a backup check asserts interaction: ">= 0.2" (the pair's joint effect minus each alone), not ${q}`, 'error', true);
    if (c['relate'] && q !== 'jaccard') src.report(['checks', i, 'relate'], `a relate check asserts jaccard: ">= 0.5", not ${q}`, 'error', true);
    const pr = c['prune'] as CanaryCheck['prune'] | undefined;
    if (pr && !['accuracy', 'logit_diff', 'prob', 'kl'].includes(q)) src.report(['checks', i, q], `a prune check asserts a suite metric of the pruned model (accuracy, logit_diff, prob or kl to the unpruned model), not ${q}`, 'error', true);
    if (pr && pr.strategy === 'outside-circuit' && !pr.circuit) src.report(['checks', i, 'prune'], 'outside-circuit prunes everything but a circuit: add circuit: path/to/file.circuit.json inside prune:', 'error', true);
    if (pr && (c['circuit'] || c['ablate'] || c['prompt'] || c['head'] !== undefined)) src.report(['checks', i, 'prune'], `a prune check measures the pruned model as it is (not with ${c['circuit'] ? 'circuit (put it inside prune:)' : c['ablate'] ? 'ablate' : c['prompt'] ? 'prompt' : 'head'})`, 'error', true);
    const qz = c['quantize'] as { bits: QuantizeSpec['bits']; scope?: QuantizeSpec['scope']; group_size?: number } | undefined;
    if (qz && !QUANTIZE_QUANTITIES.includes(q)) src.report(['checks', i, 'quantize'], `a quantize check asserts ${QUANTIZE_QUANTITIES.join(', ')} on the quantized model, not ${q}`, 'error', true);
    if (qz && (c['head'] !== undefined || c['prompt'])) src.report(['checks', i, 'quantize'], `a quantize check asserts a suite metric (not with ${c['head'] !== undefined ? 'head/temperature' : 'prompt'})`, 'error', true);
    if (qz && (qz.scope === 'circuit' || qz.scope === 'outside') && !c['circuit']) src.report(['checks', i, 'quantize', 'scope'], `scope ${qz.scope} quantizes a circuit's weights: add circuit: path/to/file.circuit.json`, 'error', true);
    if (qz && qz.group_size !== undefined && qz.bits === 'fp16') src.report(['checks', i, 'quantize', 'group_size'], 'group_size applies to int8 and int4 (fp16 rounds each entry on its own)', 'error', true);
    if (pr && qz) src.report(['checks', i, 'quantize'], 'a check either prunes or quantizes the model, not both: make two checks', 'error', true);
    const assertion: Assertion = q === 'top1' ? { quantity: 'top1', expected: String(c['top1']) }
      : q === 'threshold' ? thresholdAssertion(c['threshold'] as Record<string, unknown>)
      : { quantity: q as Quantity, bound: parseBound(String(c[q])) };
    checks.push({
      name, index: i, line: at.line, col: at.col, assertion,
      circuit: c['circuit'] as string | undefined, baseline: c['baseline'] as string | undefined, ablate: c['ablate'] as string[] | undefined, prompt: c['prompt'] as string | undefined,
      head: c['head'] as string | undefined, temperature: c['temperature'] as number | undefined,
      tags: c['tags'] as string[] | undefined, ablation: c['ablation'] as AblationKind | undefined, metric: c['metric'] as MetricName | undefined,
      backup: c['backup'] as string[] | undefined, relate: c['relate'] as string | undefined, ...(pr ? { prune: pr } : {}),
      ...(qz ? { quantize: { bits: qz.bits, scope: qz.scope ?? 'all', ...(qz.group_size !== undefined ? { groupSize: qz.group_size } : {}) } } : {}),
    });
  });
  if (!src.ok) return { diagnostics: src.diagnostics };
  return { canary: { file, name: v.name, model: v.model, suite: v.suite, checks, source: src }, diagnostics: src.diagnostics };
}
