// Opening a suite on a model, the first step of every analysis in every front end (CLI, extension, graph panel,
// canaries): prompts resolved against the model's tokenizer, split into task and control prompts, and the
// evaluation contexts built once. One policy for all of them: a suite can be run whatever its tags, but a suite
// whose every prompt is a control has nothing to attribute, discover or verify, and says so.
import type { Engine } from '../engine/engine';
import type { AblationKind } from '../vocabulary';
import { UserError } from '../errors';
import { hasErrors, type Diagnostic } from '../formats/diagnostics';
import type { Suite } from '../formats/suite';
import { prepare, type EvalContext } from './evaluate';
import type { ProgressSink } from './progress';
import { resolvePrompts, type ResolvedPrompt } from './prompts';

export interface OpenedSuite {
  suite: Suite;
  engine: Engine;
  ablation: AblationKind;
  /** Every prompt of the suite (means are taken over them, DESIGN §4). */
  all: ResolvedPrompt[];
  /** Prompts not tagged `control`: the behaviour under study. */
  task: ResolvedPrompt[];
  /** Prompts tagged `control`: what a specific circuit should leave alone. */
  control: ResolvedPrompt[];
}

/** Task prompts are those not tagged `control`; control prompts check specificity. */
export function splitPrompts(prompts: ResolvedPrompt[]): { task: ResolvedPrompt[]; control: ResolvedPrompt[] } {
  return { task: prompts.filter((p) => !p.tags.includes('control')), control: prompts.filter((p) => p.tags.includes('control')) };
}

/** The task prompts, or an error that says why there are none. */
export function taskPrompts(o: OpenedSuite): ResolvedPrompt[] {
  if (o.task.length === 0) throw new UserError(`suite "${o.suite.name}" has no task prompts: every prompt is tagged control (task prompts are the ones without that tag)`);
  return o.task;
}

/**
 * The suite's prompts on this engine. Problems with the prompts (an answer of two tokens, a prompt longer than the
 * context) come back as diagnostics at their lines, for the caller to show its way; `opened` is then undefined.
 * `ablation` overrides the suite's own (a flag, or the ablation a circuit was found with).
 */
export function openSuite(suite: Suite, engine: Engine, ablation?: AblationKind): { opened?: OpenedSuite; diagnostics: Diagnostic[] } {
  const { prompts, diagnostics } = resolvePrompts(suite, engine);
  if (hasErrors(diagnostics)) return { diagnostics };
  const kind = ablation ?? suite.ablation;
  const { task, control } = splitPrompts(prompts);
  return { opened: { suite, engine, ablation: kind, all: prompts, task, control }, diagnostics };
}

export interface Contexts {
  task: EvalContext;
  /** Only when the suite has control prompts and they were asked for. */
  control?: EvalContext;
}

/** The evaluation contexts of the task prompts and, with `control`, of the control prompts (means over all prompts). */
export async function prepareSuite(o: OpenedSuite, opts: { control?: boolean; signal?: AbortSignal; progress?: ProgressSink } = {}): Promise<Contexts> {
  if (o.ablation === 'resample' && o.all.some((p) => !p.corruptedIds)) {
    throw new UserError(`suite "${o.suite.name}": resample ablation needs a corrupted counterpart for every prompt (add corrupted: to each, or use zero or mean ablation)`);
  }
  const common = { signal: opts.signal, meanOver: o.all, progress: opts.progress };
  const task = await prepare(o.engine, taskPrompts(o), o.ablation, common);
  const control = opts.control && o.control.length ? await prepare(o.engine, o.control, o.ablation, common) : undefined;
  return { task, control };
}
