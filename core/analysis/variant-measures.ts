// Variants of a model's weights (pruned, quantized: engines from WeightVariants) measured as the unchanged model is:
// the suite's task prompts run clean on each variant, scored against the unchanged model's next-token distribution
// (KL), and with a circuit its faithfulness on the variant (the full and the empty model being the variant). One
// code path for the local run (prune/, sensitivity/) and for a worker (distributed/variants.ts), so a point
// measured on a worker equals the local one bit for bit: the same preparation, batching and scores.
import type { WeightVariants } from '../engine/variants';
import { UserError } from '../errors';
import { circuitComponents, type Circuit } from '../formats/circuit';
import type { Suite } from '../formats/suite';
import type { TensorProto } from '../onnx/model';
import type { PruneStrategy } from '../onnx/prune';
import type { QuantizeOptions } from '../onnx/quantize';
import type { WeightScope } from '../onnx/weight-scope';
import type { AblationKind, MetricName } from '../vocabulary';
import type { Engine } from '../engine/engine';
import { prepare, type EvalContext } from './evaluate';
import { meanMetrics, scorePrompt } from './metrics';
import { openSuite, taskPrompts } from './open-suite';
import type { ResolvedPrompt } from './prompts';
import { evaluateSavedCircuit } from './verify/verify';

/** One variant, as described (never its weights): a pruning point, or a quantization of a scope. */
export type VariantSpec =
  | { kind: 'prune'; strategy: PruneStrategy; sparsity: number }
  | { kind: 'quantize'; quantize: QuantizeOptions; scope: WeightScope };

export interface VariantMeasures {
  /** The suite's metric, mean over the task prompts. */
  metric: number;
  accuracy: number;
  /** Mean KL(unchanged ‖ variant) of the next-token distribution at the last position (0 for the unchanged model). */
  kl: number;
  logitDiff: number;
  prob: number;
  /** The circuit's faithfulness under the suite's metric, the full and empty model being the variant. */
  faithfulness?: number;
  faithfulnessByMetric?: Record<MetricName, number>;
}

/** The suite opened on the unchanged model: what every variant is measured against. */
export interface VariantBaseline {
  suite: Suite;
  metric: MetricName;
  /** The task prompts (measured) and all prompts (mean ablation's means). */
  prompts: ResolvedPrompt[];
  all: ResolvedPrompt[];
  ablation: AblationKind;
  circuit?: Circuit;
  /** Per task prompt: the unchanged model's clean log-probabilities (each variant's KL is to these). */
  cleanLogProbs: Float64Array[];
  /** Rows per engine call of every context (the same on a worker, or the batches and the numbers differ). */
  maxRows: number;
  measures: VariantMeasures;
}

/**
 * Opens the suite on the unchanged weights and measures them. `ablation` (default: the circuit's, else the suite's)
 * is how the circuit's faithfulness ablates; without a circuit nothing is ablated.
 */
export async function openBaseline(suite: Suite, v: WeightVariants, o: { ablation?: AblationKind; circuit?: Circuit; signal?: AbortSignal } = {}): Promise<VariantBaseline> {
  const engine = await v.engineWith([]);
  try {
    const { opened, diagnostics } = openSuite(suite, engine, o.ablation ?? o.circuit?.ablation);
    if (!opened) {
      const d = diagnostics.find((x) => x.severity === 'error')!;
      throw new UserError(d.message, d.file, d.line, d.col);
    }
    if (o.circuit) engine.checkNodes(circuitComponents(o.circuit));
    const base = { suite, metric: suite.metric, prompts: taskPrompts(opened), all: opened.all, ablation: opened.ablation, circuit: o.circuit };
    const ctx = await prepareVariant(engine, base, o.signal);
    return { ...base, cleanLogProbs: ctx.cleanLogProbs, maxRows: ctx.maxRows, measures: await measure(ctx, base, undefined) };
  } finally {
    await engine.release();
  }
}

/** The variant with these initializers in place of the model's own, measured against the baseline. */
export async function measureVariant(base: VariantBaseline, v: WeightVariants, replace: readonly TensorProto[], signal?: AbortSignal): Promise<VariantMeasures> {
  const engine = await v.engineWith(replace);
  try {
    return await measure(await prepareVariant(engine, base, signal), base, base.cleanLogProbs);
  } finally {
    await engine.release();
  }
}

/** The clean run of the task prompts (and, for a circuit's faithfulness, the ablation's preparation). */
function prepareVariant(engine: Engine, b: Pick<VariantBaseline, 'prompts' | 'all' | 'ablation' | 'circuit'>, signal?: AbortSignal): Promise<EvalContext> {
  if (b.circuit && b.ablation === 'resample' && b.all.some((p) => !p.corruptedIds)) throw new UserError('resample ablation needs a corrupted counterpart for every prompt (add corrupted: to each, or use zero or mean ablation)');
  return prepare(engine, b.prompts, b.circuit ? b.ablation : 'zero', { signal, meanOver: b.all });
}

/** Clean scores (KL to `original`; 0 for the unchanged model itself) and the circuit's faithfulness. */
async function measure(ctx: EvalContext, b: Pick<VariantBaseline, 'metric' | 'all' | 'circuit'>, original: Float64Array[] | undefined): Promise<VariantMeasures> {
  const scores = ctx.prompts.map((p, i) => scorePrompt(ctx.cleanLogits![i]!, p.answer, p.foil, (original ?? ctx.cleanLogProbs)[i]));
  const s = meanMetrics(scores);
  const m: VariantMeasures = { metric: s[b.metric], accuracy: s.accuracy, kl: original ? s.kl : 0, logitDiff: s.logit_diff, prob: s.prob };
  if (b.circuit) {
    const ev = await evaluateSavedCircuit(b.circuit, ctx, b.all);
    m.faithfulness = ev.faithfulness[b.metric];
    m.faithfulnessByMetric = ev.faithfulness;
  }
  return m;
}

/**
 * Where the points of a run are measured when not here one after another: on workers (distributed/variants.ts),
 * each point as `measurePoints`' `here` would measure it. `done(i, result)` as each comes back; results in order.
 */
export interface VariantWorkers {
  run(base: VariantBaseline, points: VariantSpec[], done: (i: number, result: unknown) => void, signal?: AbortSignal): Promise<unknown[]>;
}

/**
 * The points measured here (`here`, in order) or on `workers`; `done(i, point)` as each is measured. `check` takes a
 * worker's answer to the point's type (and refuses anything else).
 */
export async function measurePoints<S extends VariantSpec, T>(base: VariantBaseline, points: S[], here: (p: S) => Promise<T>, o: { workers?: VariantWorkers; check: (r: unknown) => T; done: (i: number, point: T) => void; signal?: AbortSignal }): Promise<T[]> {
  if (o.workers) {
    const results = await o.workers.run(base, points, (i, r) => o.done(i, o.check(r)), o.signal);
    return results.map(o.check);
  }
  const out: T[] = [];
  for (const [i, p] of points.entries()) {
    out.push(await here(p));
    o.done(i, out[i]!);
  }
  return out;
}

/** A worker's answer checked for the fields of a point (metric, accuracy, kl and `fields`). */
export function checkPoint<T>(r: unknown, fields: readonly string[]): T {
  const o = r as Record<string, unknown> | null;
  const missing = ['metric', 'accuracy', 'kl', ...fields].find((k) => !o || typeof o !== 'object' || !(k in o));
  if (missing) throw new UserError(`a worker answered a variant without "${missing}": is it running another CircuitLens?`);
  return o as T;
}
