// Critical thresholds: a suite's metric and accuracy at each value of a swept variable (the amount of padding
// before the evidence, the number of distractors, ...), with percentile bootstrap intervals, and the value n*
// where accuracy crosses a level. The prompts are those of the suite's templates expanded per value (tag n=VALUE,
// core/formats/suite.ts), run once on the model (open-suite, evaluate), then grouped by value.
import { UserError } from '../../errors';
import { holds, type Bound } from '../../formats/canary';
import { sweepValueOf, type Suite } from '../../formats/suite';
import type { NodeId } from '../../ids';
import type { AblationKind, MetricName } from '../../vocabulary';
import type { PromptSelection } from '../distributed/plan';
import { bareContext, evaluateSets, prepare, singleSetRemotely, type EvalContext, type RemoteCalls } from '../evaluate';
import { metricOf, type PromptScore } from '../metrics';
import type { OpenedSuite } from '../open-suite';
import type { ProgressSink } from '../progress';
import type { ResolvedPrompt } from '../prompts';
import { firstCrossing, percentileInterval, resampleMeans, seededRandom, type Crossing } from './stats';

export const SWEEP_DEFAULTS = { level: 0.5, resamples: 1000, seed: 0, confidence: 0.95 };

export interface SweepOptions {
  /** The swept variable (default: the suite's only one). */
  variable?: string;
  /** The accuracy level whose crossing is n* (default 0.5). */
  level?: number;
  /** Bootstrap resamples per value (default 1000; 0: no intervals). */
  resamples?: number;
  seed?: number;
  /** Central coverage of the intervals (default 0.95). */
  confidence?: number;
  /** Nodes ablated in every run (default none). */
  ablate?: NodeId[];
  signal?: AbortSignal;
  /** Where batched work reports rows done. */
  progress?: ProgressSink;
  /**
   * Runs the prompts on workers (distributed/run.ts workersFor): binds the sweep's context, named for the workers by
   * its prompts. The scores equal the local ones bit for bit (evaluate.ts singleSetRemotely).
   */
  remote?: (ctx: EvalContext, prompts: PromptSelection) => RemoteCalls;
}

export interface SweepPoint {
  value: number;
  /** Prompts at this value. */
  prompts: number;
  /** The suite's metric, mean over the prompts. */
  metric: number;
  accuracy: number;
  /** Percentile bootstrap intervals (prompts resampled with replacement within the value); null without resamples. */
  ci: { metric: [number, number]; accuracy: [number, number] } | null;
}

export interface SweepCritical extends Crossing {
  level: number;
  /** Percentile interval of n* over the resamples that cross in the same direction; null when none do. */
  ci: [number, number] | null;
  /** Fraction of the resamples that cross in the same direction. */
  resolved: number;
}

export interface SweepReport {
  suite: string;
  variable: string;
  metric: MetricName;
  level: number;
  ablation: AblationKind;
  ablated: NodeId[];
  points: SweepPoint[];
  /** The first crossing of `level` by accuracy as the variable grows; null when accuracy stays on one side. */
  critical: SweepCritical | null;
  bootstrap: { resamples: number; confidence: number; seed: number };
}

/** The variable to sweep: the one asked for, else the suite's only one. */
export function sweepVariable(suite: Suite, asked?: string): string {
  const vars = Object.keys(suite.sweep ?? {});
  if (vars.length === 0) throw new UserError(`suite "${suite.name}" has no swept variables: add sweep: {n: [0, 4, 8, ...]} and use {n} or {repeat(n, "TEXT")} in a template`);
  if (asked !== undefined) {
    if (!vars.includes(asked)) throw new UserError(`suite "${suite.name}" sweeps ${vars.join(', ')}, not ${asked}`);
    return asked;
  }
  if (vars.length > 1) throw new UserError(`suite "${suite.name}" sweeps ${vars.join(', ')}: choose one with --variable`);
  return vars[0]!;
}

/** The suite's metric and accuracy at every value of the variable, n* and their bootstrap intervals. */
export async function runSweep(o: OpenedSuite, opts: SweepOptions = {}): Promise<SweepReport> {
  const variable = sweepVariable(o.suite, opts.variable);
  const prompts = sweepPrompts(o, variable);
  const ablate = opts.ablate ?? [];
  if (o.ablation === 'resample' && ablate.length && prompts.some((p) => !p.corruptedIds)) {
    throw new UserError(`suite "${o.suite.name}": resample ablation needs a corrupted counterpart for every prompt`);
  }
  // With nothing ablated the ablation needs no preparation (means, corrupted runs): only the clean run is made.
  const kind = ablate.length ? o.ablation : 'zero';
  const common = { signal: opts.signal, progress: opts.progress };
  let scores: PromptScore[];
  if (opts.remote) {
    // Nothing is run here: the workers prepare the ablation and make the clean run, call by call, with the set's.
    const ctx = bareContext(o.engine, prompts, kind, common);
    ctx.remote = opts.remote(ctx, { sweep: variable });
    scores = await singleSetRemotely(ctx, ablate);
  } else {
    const ctx = await prepare(o.engine, prompts, kind, { ...common, meanOver: o.all });
    scores = (await evaluateSets(ctx, [ablate]))[0]!.scores;
  }
  return { suite: o.suite.name, ablation: o.ablation, ablated: ablate, ...summarizeSweep(prompts, scores, variable, o.suite.metric, opts) };
}

/** The prompts swept: the task prompts with a value of the variable (control prompts check specificity, not the behaviour swept). */
export function sweepPrompts(o: Pick<OpenedSuite, 'suite' | 'task'>, variable: string): ResolvedPrompt[] {
  const prompts = o.task.filter((p) => sweepValueOf(p.tags, variable) !== undefined);
  if (prompts.length === 0) throw new UserError(`suite "${o.suite.name}" has no task prompt with a value of ${variable} (templates that use {${variable}}, or prompts tagged ${variable}=VALUE)`);
  return prompts;
}

/** Points and n* from per-prompt scores (pure: the canary's threshold check uses it too). */
export function summarizeSweep(
  prompts: ResolvedPrompt[], scores: PromptScore[], variable: string, metric: MetricName, opts: Omit<SweepOptions, 'variable' | 'ablate' | 'signal' | 'progress' | 'remote'> = {},
): Pick<SweepReport, 'variable' | 'metric' | 'level' | 'points' | 'critical' | 'bootstrap'> {
  const { level, resamples, seed, confidence } = { ...SWEEP_DEFAULTS, ...opts };
  if (!(level >= 0 && level <= 1)) throw new UserError(`the accuracy level must be between 0 and 1 (got ${level})`);
  if (!(confidence > 0 && confidence < 1)) throw new UserError(`the confidence must be between 0 and 1 (got ${confidence})`);
  if (!Number.isInteger(resamples) || resamples < 0) throw new UserError(`resamples must be a whole number (got ${resamples})`);
  const groups = new Map<number, { metric: number[]; correct: number[] }>();
  prompts.forEach((p, i) => {
    const v = sweepValueOf(p.tags, variable);
    if (v === undefined) return;
    const g = groups.get(v) ?? { metric: [], correct: [] };
    g.metric.push(metricOf(scores[i]!, metric));
    g.correct.push(scores[i]!.correct ? 1 : 0);
    groups.set(v, g);
  });
  const values = [...groups.keys()].sort((a, b) => a - b);
  if (values.length === 0) throw new UserError(`no prompt has a value of ${variable} (templates that use {${variable}}, or prompts tagged ${variable}=VALUE)`);
  const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
  const rand = seededRandom(seed);
  // Resampled accuracies per value, in the same order, for n*'s interval.
  const sampled: number[][] = [];
  const points: SweepPoint[] = values.map((value) => {
    const g = groups.get(value)!;
    let ci: SweepPoint['ci'] = null;
    if (resamples > 0) {
      const [m, a] = resampleMeans([g.metric, g.correct], resamples, rand);
      sampled.push(a!);
      ci = { metric: percentileInterval(m!, confidence), accuracy: percentileInterval(a!, confidence) };
    }
    return { value, prompts: g.metric.length, metric: mean(g.metric), accuracy: mean(g.correct), ci };
  });
  const crossing = firstCrossing(values, points.map((p) => p.accuracy), level);
  let critical: SweepCritical | null = null;
  if (crossing) {
    const found: number[] = [];
    for (let b = 0; b < resamples; b++) {
      const c = firstCrossing(values, sampled.map((s) => s[b]!), level);
      if (c && c.direction === crossing.direction) found.push(c.value);
    }
    critical = { ...crossing, level, ci: found.length ? percentileInterval(found, confidence) : null, resolved: resamples ? found.length / resamples : 1 };
  }
  return { variable, metric, level, points, critical, bootstrap: { resamples, confidence, seed } };
}

/**
 * Whether n* satisfies a bound (the canary check `threshold: {variable: n, at: 0.5, ">=": 12}`). Without a
 * crossing the sweep still bounds n*: accuracy at or above the level everywhere puts it beyond the largest value,
 * below everywhere before the smallest (accuracy taken to fall as the variable grows). The check passes only when
 * every n* the sweep allows satisfies the bound.
 */
export function thresholdVerdict(r: Pick<SweepReport, 'variable' | 'level' | 'points' | 'critical'>, bound: Bound): { pass: boolean; actual: number | string; message: string } {
  const v = r.variable;
  const fmt = (x: number) => String(Number(x.toFixed(3)));
  if (r.critical) {
    const c = r.critical;
    const pass = holds(bound, c.value);
    return { pass, actual: c.value, message: `${v}* ${fmt(c.value)} (accuracy ${c.direction === 'falls' ? 'falls below' : 'rises to'} ${r.level} between ${v}=${c.between[0]} and ${v}=${c.between[1]}) ${pass ? 'satisfies' : 'is not'} ${bound.text}` };
  }
  const values = r.points.map((p) => p.value);
  const max = Math.max(...values);
  const min = Math.min(...values);
  if (r.points.every((p) => p.accuracy >= r.level)) {
    const pass = (bound.op === '>=' || bound.op === '>') && max >= bound.value;
    return { pass, actual: `> ${max}`, message: `accuracy stays at or above ${r.level} up to ${v}=${max}, the largest value swept, so ${v}* > ${max}: ${pass ? 'satisfies' : `cannot show ${v}*`} ${bound.text}${pass ? '' : ' (sweep further)'}` };
  }
  const pass = (bound.op === '<=' || bound.op === '<') && min <= bound.value;
  return { pass, actual: `< ${min}`, message: `accuracy is below ${r.level} from ${v}=${min}, the smallest value swept, so ${v}* < ${min}: ${pass ? 'satisfies' : 'is not'} ${bound.text}` };
}
