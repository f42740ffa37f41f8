// Pruning curves (DESIGN §7 `prune`): the suite's metric and accuracy on its task prompts, the KL of the pruned
// model's next-token distribution to the unpruned one's, and a circuit's faithfulness, as the attention and MLP
// weight matrices are pruned to each sparsity under each strategy (core/onnx/prune.ts). The point of it: pruning
// everything but a circuit compared with plain magnitude pruning. Each pruned model is an engine on the same graph
// with the pruned initializers replaced in memory (WeightVariants); nothing is written per point.
import type { Engine } from '../../engine/engine';
import type { WeightVariants } from '../../engine/variants';
import { UserError } from '../../errors';
import type { Circuit } from '../../formats/circuit';
import { circuitComponents } from '../../formats/circuit';
import type { Suite } from '../../formats/suite';
import { ownedMasks } from '../../onnx/owned-masks';
import { pruneRanking, pruneScope, withOwned, type PrunePlan, type PruneRanking, type PruneScope, type PruneStrategy } from '../../onnx/prune';
import { weightComponents } from '../../onnx/weight-components';
import type { AblationKind, MetricName } from '../../vocabulary';
import { prepare, type EvalContext } from '../evaluate';
import { meanMetrics, scorePrompt, type SuiteMetrics } from '../metrics';
import { openSuite, taskPrompts } from '../open-suite';
import type { ResolvedPrompt } from '../prompts';
import { evaluateSavedCircuit } from '../verify/verify';

export const DEFAULT_SPARSITIES = [0.1, 0.3, 0.5, 0.7, 0.9];

/** Said with every result: what the numbers are and are not. */
export const PRUNE_NOTES = [
  'unstructured pruning of the attention and MLP weight matrices (float32, rank 2); embeddings, norms, biases and the unembedding are never pruned',
  'sparsity is the fraction of all prunable entries that are zero; outside-circuit never prunes the circuit\'s entries, so it is capped at the share outside them ("capped": true, "reached" says how far it got)',
  'no fine-tuning after pruning: these are the pruned weights as they are',
];

export interface PruneMeasures {
  /** The suite's metric (mean over the task prompts). */
  metric: number;
  accuracy: number;
  /** KL(unpruned ‖ pruned) of the next-token distribution, mean over the task prompts. */
  kl: number;
  /** The circuit's faithfulness (the suite's metric) on this model, everything outside it ablated; with a circuit. */
  faithfulness?: number;
}

export interface PrunePoint extends PruneMeasures {
  sparsity: number;
  reached: number;
  /** Entries set to zero. */
  pruned: number;
  capped: boolean;
  /** Per layer ("shared": matrices several layers read): its zero entries over its prunable ones. */
  byLayer: Record<string, number>;
}

export interface PruneCurve { strategy: PruneStrategy; points: PrunePoint[] }

export interface PruneReport {
  suite: string;
  metricName: MetricName;
  ablation: AblationKind;
  prompts: number;
  prunable: { entries: number; tensors: { name: string; component: 'attention' | 'mlp'; layer?: number; entries: number }[]; skipped: string[] };
  circuit?: { name: string; nodes: string[]; ownedEntries: number; maxSparsity: number; slices: OwnedEntry[] };
  baseline: PruneMeasures;
  curves: PruneCurve[];
  notes: string[];
}

/** A circuit's slice of a prunable matrix, in the file's initializer names. */
export interface OwnedEntry { node: string; initializer: string; role: string; axis: number; start: number; end: number }

export interface PruneOptions {
  strategies: PruneStrategy[];
  sparsities: number[];
  circuit?: Circuit;
  /** Overrides the suite's ablation (used for the circuit's faithfulness only). */
  ablation?: AblationKind;
  report?: (line: string) => void;
  signal?: AbortSignal;
}

/** The model's prunable matrices, with the circuit's entries marked when one is given. */
export function pruneScopeOf(v: WeightVariants, what: string, circuit?: Circuit): { scope: PruneScope; owned: OwnedEntry[] } {
  let scope = pruneScope(v.model, weightComponents(v.model, what, v.hooks));
  if (scope.total === 0) {
    throw new UserError(`${what} has no prunable weights: no float32 attention or MLP weight matrix${scope.skipped.length ? ` (${scope.skipped.length} stored in another type: ${scope.skipped.slice(0, 3).join(', ')})` : ''}`);
  }
  if (!circuit) return { scope, owned: [] };
  const nodes = circuitComponents(circuit);
  if (nodes.length === 0) throw new UserError(`the circuit "${circuit.name}" has no heads or MLPs: nothing to keep from pruning`);
  const { masks, slices } = ownedMasks(v.model, what, v.hooks, nodes);
  const prunable = new Set(scope.tensors.map((t) => t.name));
  scope = withOwned(scope, masks);
  const owned = [...slices].flatMap(([node, ss]) => ss.filter((s) => prunable.has(s.initializer))
    .map((s) => ({ node, initializer: s.initializer, role: s.role, axis: s.axis, start: s.start, end: s.end })));
  return { scope, owned };
}

/** The replaced initializers of one pruned model (for `--out`). */
export function prunePlanOf(scope: PruneScope, strategy: PruneStrategy, sparsity: number): PrunePlan {
  return pruneRanking(scope, strategy).plan(sparsity);
}

export async function runPrune(suite: Suite, v: WeightVariants, what: string, opts: PruneOptions): Promise<PruneReport> {
  const { scope, owned } = pruneScopeOf(v, what, opts.circuit);
  if (opts.strategies.includes('outside-circuit') && !opts.circuit) throw new UserError('the outside-circuit strategy prunes everything but a circuit: pass --circuit FILE.circuit.json');
  const t0 = Date.now();
  const total = opts.strategies.length * opts.sparsities.length;
  let done = 0;
  const say = (line: string) => opts.report?.(line);

  const base = await v.engineWith([]);
  let prompts: ResolvedPrompt[];
  let all: ResolvedPrompt[];
  let ablation: AblationKind;
  let baseCtx: EvalContext;
  let baseline: PruneMeasures;
  try {
    const { opened, diagnostics } = openSuite(suite, base, opts.ablation ?? (opts.circuit?.ablation as AblationKind | undefined));
    if (!opened) {
      const d = diagnostics.find((x) => x.severity === 'error')!;
      throw new UserError(d.message, d.file, d.line, d.col);
    }
    prompts = taskPrompts(opened);
    all = opened.all;
    ablation = opened.ablation;
    baseCtx = await prepareFor(base, prompts, all, ablation, !!opts.circuit, opts.signal);
    baseline = await measure(baseCtx, baseCtx, suite.metric, opts.circuit, all);
  } finally {
    await base.release();
  }

  const curves: PruneCurve[] = [];
  for (const strategy of opts.strategies) {
    const ranking: PruneRanking = pruneRanking(scope, strategy);
    const points: PrunePoint[] = [];
    for (const sparsity of opts.sparsities) {
      const plan = ranking.plan(sparsity);
      const engine = await v.engineWith(plan.replacements);
      try {
        const ctx = await prepareFor(engine, prompts, all, ablation, !!opts.circuit, opts.signal);
        const m = await measure(ctx, baseCtx, suite.metric, opts.circuit, all);
        points.push({ sparsity, reached: plan.reached, pruned: plan.pruned, capped: plan.capped, ...m, byLayer: plan.byLayer });
      } finally {
        await engine.release();
      }
      done++;
      const s = (Date.now() - t0) / 1000;
      say(`${strategy} at ${sparsity}: accuracy ${points.at(-1)!.accuracy.toFixed(3)}${plan.capped ? ` (capped at ${plan.reached.toFixed(3)})` : ''} — ${done}/${total} pruned models in ${s.toFixed(1)} s${done < total ? `, ~${Math.ceil((s / done) * (total - done))} s left` : ''}`);
    }
    curves.push({ strategy, points });
  }
  return {
    suite: suite.name, metricName: suite.metric, ablation, prompts: prompts.length,
    prunable: { entries: scope.total, tensors: scope.tensors.map((t) => ({ name: t.name, component: t.component, ...(t.layer !== undefined ? { layer: t.layer } : {}), entries: t.data.length })), skipped: scope.skipped },
    ...(opts.circuit ? { circuit: { name: opts.circuit.name, nodes: circuitComponents(opts.circuit), ownedEntries: scope.ownedEntries, maxSparsity: (scope.total - scope.ownedEntries) / scope.total, slices: owned } } : {}),
    baseline, curves, notes: PRUNE_NOTES,
  };
}

/** The clean run of the task prompts (and, for a circuit's faithfulness, the ablation's preparation). */
function prepareFor(engine: Engine, prompts: ResolvedPrompt[], all: ResolvedPrompt[], ablation: AblationKind, circuit: boolean, signal?: AbortSignal): Promise<EvalContext> {
  if (circuit && ablation === 'resample' && all.some((p) => !p.corruptedIds)) throw new UserError('resample ablation needs a corrupted counterpart for every prompt (add corrupted: to each, or use zero or mean ablation)');
  return prepare(engine, prompts, circuit ? ablation : 'zero', { signal, meanOver: all });
}

/** The pruned model's clean scores against the unpruned model's distribution, and the circuit's faithfulness on it. */
async function measure(ctx: EvalContext, base: EvalContext, metric: MetricName, circuit: Circuit | undefined, all: ResolvedPrompt[]): Promise<PruneMeasures> {
  const scores = ctx.prompts.map((p, i) => scorePrompt(ctx.cleanLogits![i]!, p.answer, p.foil, base.cleanLogProbs[i]));
  const m: SuiteMetrics = meanMetrics(scores);
  const out: PruneMeasures = { metric: m[metric], accuracy: m.accuracy, kl: m.kl };
  if (circuit) out.faithfulness = (await evaluateSavedCircuit(circuit, ctx, all)).faithfulness[metric];
  return out;
}
