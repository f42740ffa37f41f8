// Quantization sensitivity (DESIGN §7 `sensitivity`): the suite's task prompts on the model with the weight
// matrices of each scope fake-quantized (core/onnx/quantize.ts; scopes from core/onnx/weight-scope.ts), each
// variant an engine on the same graph with those initializers replaced, in memory (core/nodejs/model-variants.ts).
// Per scope: the suite's metric and accuracy, KL(original ‖ quantized) of the next-token distribution at the last
// position, the drops from the unquantized model, and with a circuit its faithfulness under the quantized model
// (the full and the empty model quantized alike). Variants run one after another (each is a model of its own).
import type { Engine } from '../../engine/engine';
import { UserError } from '../../errors';
import { circuitComponents, type Circuit } from '../../formats/circuit';
import type { WeightVariants } from '../../engine/variants';
import type { Suite } from '../../formats/suite';
import { quantizeWeights, type QuantizeOptions } from '../../onnx/quantize';
import { scopeLabel, weightScope, type WeightScope } from '../../onnx/weight-scope';
import type { AblationKind, MetricName } from '../../vocabulary';
import { prepare, type EvalContext } from '../evaluate';
import { meanMetrics, scorePrompt, type SuiteMetrics } from '../metrics';
import { openSuite, taskPrompts } from '../open-suite';
import type { ResolvedPrompt } from '../prompts';
import { evaluateSavedCircuit } from '../verify/verify';

export interface SensitivityOptions {
  quantize: QuantizeOptions;
  scopes: WeightScope[];
  /** A circuit whose faithfulness is measured on each variant (its nodes also define circuit:/outside: scopes). */
  circuit?: Circuit;
  /** How nodes outside the circuit are ablated (default: the suite's). */
  ablation?: AblationKind;
  /** Progress lines. */
  report?: (line: string) => void;
  signal?: AbortSignal;
}

export interface SensitivityMeasure {
  /** The suite's metric, mean over the task prompts. */
  metric: number;
  accuracy: number;
  /** Mean KL(original ‖ this model) of the next-token distribution at the last position (0 for the original). */
  kl: number;
  logitDiff: number;
  prob: number;
  /** The circuit's faithfulness under the suite's metric, the full and empty model being this one. */
  faithfulness?: number;
  faithfulnessByMetric?: Record<MetricName, number>;
}

export interface SensitivityRow extends SensitivityMeasure {
  scope: string;
  quantize: QuantizeOptions['scheme'];
  groupSize: number | null;
  /** Initializers changed. */
  tensors: number;
  /** Entries quantized. */
  entries: number;
  /** ‖W_q − W‖ / ‖W‖ over the quantized entries. */
  relativeError: number;
  /** Baseline minus this (the metric's drop; for kl-metric suites, its rise is negative). */
  metricDrop: number;
  accuracyDrop: number;
  faithfulnessDrop?: number;
  /** Initializers of the scope's components left as they are, and why. */
  skipped: { tensor: string; reason: string }[];
}

export interface SensitivityResult {
  suite: string;
  metric: MetricName;
  prompts: number;
  baseline: SensitivityMeasure;
  rows: SensitivityRow[];
  circuit?: { name: string; nodes: string[]; level: 'node' | 'edge' };
  ablation: AblationKind;
  seconds: number;
}

/** Said with every result: what the numbers are and are not. */
export const SENSITIVITY_NOTES = [
  'fake quantization: weights are rounded (round-to-nearest, symmetric) and turned back into float32; the model computes in float32 as before, so this measures the error of the rounded weights, not of integer kernels',
  'only weight matrices are quantized (attention, MLP, embedding and unembedding matrices); biases, norm gains and other vectors stay float32',
  'entries selected from part of a matrix (circuit:, outside:) take the value they have when the whole matrix is quantized (per-channel or per-group scales of the whole matrix)',
];

/** One run of the task prompts on `engine`: metrics, KL to the original's clean log-probabilities, faithfulness. */
async function measure(engine: Engine, prompts: ResolvedPrompt[], all: ResolvedPrompt[], metric: MetricName, ablation: AblationKind, original: EvalContext | undefined, circuit: Circuit | undefined, signal?: AbortSignal): Promise<{ m: SensitivityMeasure; ctx: EvalContext }> {
  const ctx = await prepare(engine, prompts, circuit ? ablation : 'zero', { signal, meanOver: all });
  const clean = original ?? ctx;
  const scores = ctx.prompts.map((p, i) => scorePrompt(ctx.cleanLogits![i]!, p.answer, p.foil, clean.cleanLogProbs[i]));
  const s: SuiteMetrics = meanMetrics(scores);
  const m: SensitivityMeasure = { metric: s[metric], accuracy: s.accuracy, kl: original ? s.kl : 0, logitDiff: s.logit_diff, prob: s.prob };
  if (circuit) {
    const ev = await evaluateSavedCircuit(circuit, ctx, all);
    m.faithfulness = ev.faithfulness[metric];
    m.faithfulnessByMetric = ev.faithfulness;
  }
  return { m, ctx };
}

export async function runSensitivity(suite: Suite, model: WeightVariants, opts: SensitivityOptions): Promise<SensitivityResult> {
  const t0 = Date.now();
  if (!opts.scopes.length) throw new UserError('no scope to quantize (--scope all|attn|mlp|embed|circuit:C|outside:C)');
  const base = await model.engineWith([]);
  try {
    const { opened, diagnostics } = openSuite(suite, base, opts.ablation);
    if (!opened) {
      const d = diagnostics.find((x) => x.severity === 'error')!;
      throw new UserError(d.message, d.file, d.line, d.col);
    }
    const prompts = taskPrompts(opened);
    const circuit = opts.circuit;
    if (circuit) base.checkNodes(circuitComponents(circuit));
    const metric = suite.metric;
    const what = model.path;
    opts.report?.(`baseline: ${prompts.length} task prompts on the unquantized model`);
    const { m: baseline, ctx: original } = await measure(base, prompts, opened.all, metric, opened.ablation, undefined, circuit, opts.signal);
    const rows: SensitivityRow[] = [];
    for (const [k, scope] of opts.scopes.entries()) {
      const label = scopeLabel(scope);
      const scoped = weightScope(model.model, what, scope, model.hooks);
      const q = quantizeWeights(model.model, scoped.tensors, opts.quantize);
      opts.report?.(`scope ${k + 1}/${opts.scopes.length}: ${label}, ${q.tensors.length} tensors, ${q.entries.toLocaleString('en')} entries (${opts.quantize.scheme}${opts.quantize.groupSize ? `, groups of ${opts.quantize.groupSize}` : ''})`);
      const engine = await model.engineWith(q.tensors);
      try {
        const { m } = await measure(engine, prompts, opened.all, metric, opened.ablation, original, circuit, opts.signal);
        rows.push({
          scope: label, quantize: opts.quantize.scheme, groupSize: opts.quantize.groupSize ?? null, tensors: q.tensors.length, entries: q.entries,
          relativeError: q.relativeError, ...m, metricDrop: baseline.metric - m.metric, accuracyDrop: baseline.accuracy - m.accuracy,
          ...(m.faithfulness !== undefined ? { faithfulnessDrop: baseline.faithfulness! - m.faithfulness } : {}), skipped: scoped.skipped,
        });
      } finally {
        await engine.release();
      }
    }
    return {
      suite: suite.name, metric, prompts: prompts.length, baseline, rows, ablation: opened.ablation, seconds: (Date.now() - t0) / 1000,
      ...(circuit ? { circuit: { name: circuit.name, nodes: circuitComponents(circuit), level: circuit.granularity === 'edge' && (circuit.edges ?? []).length ? 'edge' as const : 'node' as const } } : {}),
    };
  } finally {
    await base.release();
  }
}
