import type { Engine } from '../../engine/engine';
import { Cancelled, UserError } from '../../errors';
import type { NodeId } from '../../ids';
import { holds, isCrossCheckpoint, parseCanary, type Canary, type CanaryCheck } from '../../formats/canary';
import { hasErrors, type Diagnostic } from '../../formats/diagnostics';
import { parseSuite, type Suite } from '../../formats/suite';
import type { Workspace } from '../../workspace';
import { evaluateTemperatures } from '../attention/temperature';
import { evaluateSets, prepare, type EvalContext } from '../evaluate';
import { argmax } from '../metrics';
import type { MetricName } from '../../vocabulary';
import { resolvePrompts, type ResolvedPrompt } from '../prompts';
import { formatCheckValue, type CheckMeasure } from './check';
import { checkCircuitOnModel, evaluateSavedCircuit, readCheckCircuit } from './verify';
import { summarizeSweep, sweepVariable, thresholdVerdict } from '../sweep/sweep';
import { crossCheckpointCheck } from '../compare/canary-checks';
import { backupCheck, relateCheck } from './canary-relations';
import { pruneCheck } from '../prune/canary-check';
import { quantizeCheck } from '../sensitivity/canary-check';

export type CheckStatus = 'passed' | 'failed' | 'errored' | 'skipped';

export interface CheckResult {
  name: string;
  index: number;
  line: number;
  col: number;
  status: CheckStatus;
  /** The measured value (a number, or the top-1 token's text). */
  actual?: number | string;
  expected: string;
  message: string;
  durationMs: number;
}

export interface CanaryResult {
  file: string;
  model?: string;
  suite?: string;
  checks: CheckResult[];
  /** Problems in the canary, its suite or its circuits (errors stop the checks they affect). */
  diagnostics: Diagnostic[];
  durationMs: number;
}

export interface CanaryOptions {
  signal?: AbortSignal;
  /** Called as each check finishes (the Test Explorer shows results live). */
  onCheck?: (r: CheckResult) => void;
}

/** Runs one canary file: every check, each reported at its own line. */
export async function runCanary(ws: Workspace, file: string, opts: CanaryOptions = {}): Promise<CanaryResult> {
  const t0 = Date.now();
  const result: CanaryResult = { file, checks: [], diagnostics: [], durationMs: 0 };
  const finish = () => { result.durationMs = Date.now() - t0; return result; };
  const parsed = parseCanary(file, await ws.readText(file));
  result.diagnostics.push(...parsed.diagnostics);
  const canary = parsed.canary;
  if (!canary) return finish();
  const erroredAll = (message: string) => {
    for (const c of canary.checks) result.checks.push(done(c, 'errored', message, undefined, 0));
  };

  const modelPath = ws.resolve(file, canary.model);
  const suitePath = ws.resolve(file, canary.suite);
  result.model = modelPath;
  result.suite = suitePath;
  if (!(await ws.exists(modelPath))) {
    canary.source.report(['model'], `model file not found: ${ws.display(modelPath)}`);
    result.diagnostics.push(...canary.source.diagnostics.slice(-1));
    erroredAll(`model file not found: ${ws.display(modelPath)}`);
    return finish();
  }
  if (!(await ws.exists(suitePath))) {
    canary.source.report(['suite'], `suite file not found: ${ws.display(suitePath)}`);
    result.diagnostics.push(...canary.source.diagnostics.slice(-1));
    erroredAll(`suite file not found: ${ws.display(suitePath)}`);
    return finish();
  }
  const sp = parseSuite(suitePath, await ws.readText(suitePath));
  result.diagnostics.push(...sp.diagnostics);
  if (!sp.suite) { erroredAll(`the suite ${ws.display(suitePath)} has errors`); return finish(); }
  let engine: Engine;
  try {
    engine = await ws.loadEngine(modelPath);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    canary.source.report(['model'], e.message);
    result.diagnostics.push(...canary.source.diagnostics.slice(-1));
    erroredAll(e.message);
    return finish();
  }
  const resolved = resolvePrompts(sp.suite, engine);
  result.diagnostics.push(...resolved.diagnostics);
  if (hasErrors(resolved.diagnostics)) { erroredAll(`the suite ${ws.display(suitePath)} has errors for this model`); return finish(); }

  const contextFor = contextsOn(engine, resolved.prompts, opts.signal);

  for (const c of canary.checks) {
    if (opts.signal?.aborted) {
      result.checks.push(done(c, 'skipped', 'cancelled', undefined, 0));
      continue;
    }
    const tc = Date.now();
    try {
      const r = await runCheck(ws, file, modelPath, c, sp.suite, engine, contextFor, result.diagnostics, resolved.prompts);
      result.checks.push(done(c, r.pass ? 'passed' : 'failed', r.message, r.actual, Date.now() - tc));
    } catch (e) {
      if (e instanceof Cancelled) { result.checks.push(done(c, 'skipped', 'cancelled', undefined, Date.now() - tc)); continue; }
      if (!(e instanceof UserError)) throw e;
      result.checks.push(done(c, 'errored', e.message, undefined, Date.now() - tc));
    }
    opts.onCheck?.(result.checks[result.checks.length - 1]!);
  }
  // Failures are diagnostics at the check's own line, saying which checkpoint they ran on (canaries follow a model
  // from checkpoint to checkpoint).
  const on = ` [on ${modelPath.split(/[\\/]/).pop()}]`;
  for (const r of result.checks) {
    if (r.status === 'failed' || r.status === 'errored') {
      result.diagnostics.push({ file, line: r.line, col: r.col, severity: 'error', message: `check "${r.name}" ${r.status === 'failed' ? 'failed' : 'could not run'}: ${r.message}${on}` });
    }
  }
  return finish();
}

type ContextFor = (c: CanaryCheck, suite: Suite) => Promise<EvalContext>;

/** The prepared prompts of each check on one engine, shared by the checks with the same ablation and tags. */
function contextsOn(engine: Engine, prompts: ResolvedPrompt[], signal?: AbortSignal): ContextFor {
  const contexts = new Map<string, Promise<EvalContext>>();
  return (c, suite) => {
    const kind = c.ablation ?? suite.ablation;
    const selected = selectPrompts(prompts, c.tags);
    const key = `${kind}|${(c.tags ?? []).join(',')}`;
    let p = contexts.get(key);
    if (!p) { p = prepare(engine, selected, kind, { signal, meanOver: prompts }); contexts.set(key, p); }
    return p;
  };
}

function selectPrompts(prompts: ResolvedPrompt[], tags?: string[]): ResolvedPrompt[] {
  if (!tags || tags.length === 0) return prompts;
  const sel = prompts.filter((p) => p.tags.some((t) => tags.includes(t)));
  if (sel.length === 0) throw new UserError(`no prompt of the suite has any of the tags ${tags.join(', ')}`);
  return sel;
}

function done(c: CanaryCheck, status: CheckStatus, message: string, actual: number | string | undefined, durationMs: number): CheckResult {
  const a = c.assertion;
  const expected = a.quantity === 'top1' ? `top1 = ${JSON.stringify(a.expected)}`
    : a.quantity === 'threshold' ? `${a.variable}* (accuracy crosses ${a.at}) ${a.bound.text}` : `${a.quantity} ${a.bound.text}`;
  return { name: c.name, index: c.index, line: c.line, col: c.col, status, actual, expected, message, durationMs };
}

/** `modelPath`: the file the engine was loaded from (a circuit's recorded hash is compared with it); none for a model built in memory. */
async function runCheck(
  ws: Workspace, file: string, modelPath: string | undefined, c: CanaryCheck, suite: Suite, engine: Engine,
  contextFor: ContextFor, diagnostics: Diagnostic[], allPrompts: ResolvedPrompt[],
): Promise<CheckMeasure> {
  const a = c.assertion;
  if (a.quantity === 'top1') {
    if (!engine.tokenizer) throw new UserError('top1 checks need the model\'s tokenizer.json');
    const ids = engine.tokenizer.encode(c.prompt!);
    engine.checkIds(ids);
    const want = engine.tokenizer.singleToken(a.expected, 'top1');
    const res = await engine.run({ ids: [ids], lastOnly: true });
    const got = argmax(res.logits.data);
    const text = engine.tokenizer.tokenText(got);
    let rival = -Infinity;
    res.logits.data.forEach((x, i) => { if (i !== want && x > rival) rival = x; });
    return { pass: got === want, actual: text, value: res.logits.data[want]! - rival, message: got === want ? `top-1 is ${JSON.stringify(text)}` : `top-1 is ${JSON.stringify(text)}, expected ${JSON.stringify(a.expected)}` };
  }
  const ctx = await contextFor(c, suite);
  const scope = `${ctx.prompts.length} prompts${c.tags ? ` tagged ${c.tags.join('/')}` : ''}, ${ctx.ablation} ablation`;
  if (c.quantize) {
    const circuit = c.circuit ? (await readCheckCircuit(ws, file, c.circuit, diagnostics)).circuit : undefined;
    return quantizeCheck({ check: c, ctx, all: allPrompts, modelPath, ws, circuit, metric: suite.metric, scope });
  }
  if (a.quantity === 'interaction') return backupCheck(c, ctx, engine, suite.metric, scope);
  if (c.prune) return pruneCheck({ ws, file, modelPath, check: c, ctx, diagnostics });
  // jaccard with `relate`: two circuits' overlap; without it, the circuit against the one re-discovered on this model.
  if (a.quantity === 'jaccard' && c.relate) return relateCheck(c, ws, file, diagnostics);
  if (isCrossCheckpoint(a.quantity)) {
    // A model built in memory (bisect's candidates) is named by the canary's own model in messages.
    return crossCheckpointCheck({ ws, file, modelPath: modelPath ?? file, engine, check: c, suite, ctx, all: allPrompts, diagnostics, scope });
  }
  if (a.quantity === 'faithfulness' || a.quantity === 'necessity') {
    const { circuit, source } = await readCheckCircuit(ws, file, c.circuit!, diagnostics);
    const checked = checkCircuitOnModel(circuit, source, engine, circuit.model?.sha256 && modelPath ? await ws.sha256(modelPath) : undefined);
    diagnostics.push(...checked.diagnostics);
    if (checked.error) throw checked.error;
    const metric: MetricName = c.metric ?? suite.metric;
    const ev = await evaluateSavedCircuit(circuit, ctx, allPrompts);
    const level = ev.edges !== undefined ? `, ${ev.edges} edges` : '';
    const value = a.quantity === 'faithfulness' ? ev.faithfulness[metric] : ev.necessity[metric];
    const pass = holds(a.bound, value);
    const others = a.quantity === 'faithfulness'
      ? ` (faithfulness by metric: ${(['logit_diff', 'accuracy', 'kl'] as MetricName[]).map((m) => `${m} ${formatCheckValue(ev.faithfulness[m])}`).join(', ')})`
      : '';
    return { pass, actual: value, value, message: `${a.quantity} (${metric}) ${formatCheckValue(value)} ${pass ? 'satisfies' : 'is not'} ${a.bound.text}${others}; ${scope}${level}` };
  }
  if (c.head !== undefined && c.temperature !== undefined && a.quantity !== 'threshold') {
    const [head] = engine.checkNodes([c.head]);
    const [res] = await evaluateTemperatures(ctx, [[{ head: head!, temperature: c.temperature }]]);
    const value = res!.metrics[a.quantity];
    const pass = holds(a.bound, value);
    return { pass, actual: value, value, message: `${a.quantity} ${formatCheckValue(value)} with ${head}'s softmax temperature ${c.temperature} ${pass ? 'satisfies' : 'is not'} ${a.bound.text}; ${ctx.prompts.length} prompts${c.tags ? ` tagged ${c.tags.join('/')}` : ''}` };
  }
  const nodes: NodeId[] = c.ablate ? engine.checkNodes(c.ablate) : [];
  if (a.quantity === 'threshold') {
    // The check's prompts (tags) that carry a value of the variable; n* without bootstrap (the bound is on n* itself).
    const variable = sweepVariable(suite, a.variable);
    const [res] = await evaluateSets(ctx, [nodes]);
    const v = thresholdVerdict(summarizeSweep(ctx.prompts, res!.scores, variable, suite.metric, { level: a.at, resamples: 0 }), a.bound);
    // bisect measures how far a check is from passing: n* where accuracy crosses (NaN when it never does).
    return { ...v, value: typeof v.actual === 'number' ? v.actual : Number.NaN, message: `${v.message}${nodes.length ? ` with ${nodes.join(', ')} ablated` : ''}; ${scope}` };
  }
  const [res] = await evaluateSets(ctx, [nodes]);
  const value = res!.metrics[a.quantity];
  const pass = holds(a.bound, value);
  const what = nodes.length ? ` with ${nodes.join(', ')} ablated` : '';
  return { pass, actual: value, value, message: `${a.quantity} ${formatCheckValue(value)}${what} ${pass ? 'satisfies' : 'is not'} ${a.bound.text}; ${scope}` };
}

/** A canary file and its suite, read once so its checks can be measured on engines the caller brings. */
export interface OpenedCanary { file: string; canary: Canary; suite: Suite; diagnostics: Diagnostic[] }

/** Reads a canary file and its suite; a problem in either is a UserError at its line. The canary's `model:` is not loaded. */
export async function openCanary(ws: Workspace, file: string): Promise<OpenedCanary> {
  const located = (ds: Diagnostic[]) => { const d = ds.find((x) => x.severity === 'error')!; return new UserError(d.message, ws.display(d.file), d.line, d.col); };
  const parsed = parseCanary(file, await ws.readText(file));
  if (!parsed.canary) throw located(parsed.diagnostics);
  const canary = parsed.canary;
  const suitePath = ws.resolve(file, canary.suite);
  if (!(await ws.exists(suitePath))) {
    canary.source.report(['suite'], `suite file not found: ${ws.display(suitePath)}`);
    throw located(canary.source.diagnostics);
  }
  const sp = parseSuite(suitePath, await ws.readText(suitePath));
  if (!sp.suite) throw located(sp.diagnostics);
  return { file, canary, suite: sp.suite, diagnostics: [...parsed.diagnostics, ...sp.diagnostics] };
}

/**
 * Measures one check of an opened canary on `engine` (not the canary's own model: bisect runs it on models built
 * in memory). Prompts are resolved and prepared on that engine, as `runCanary` does on the canary's model.
 */
export async function measureCheck(ws: Workspace, opened: OpenedCanary, check: CanaryCheck, engine: Engine, signal?: AbortSignal): Promise<CheckMeasure> {
  const resolved = resolvePrompts(opened.suite, engine);
  const error = resolved.diagnostics.find((d) => d.severity === 'error');
  if (error) throw new UserError(error.message, ws.display(error.file), error.line, error.col);
  const diagnostics: Diagnostic[] = [];
  return runCheck(ws, opened.file, undefined, check, opened.suite, engine, contextsOn(engine, resolved.prompts, signal), diagnostics, resolved.prompts);
}
