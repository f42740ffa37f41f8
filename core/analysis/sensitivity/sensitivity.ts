// Quantization sensitivity (DESIGN §7 `sensitivity`): the suite's task prompts on the model with the weight
// matrices of each scope fake-quantized (core/onnx/quantize.ts; scopes from core/onnx/weight-scope.ts), each
// variant an engine on the same graph with those initializers replaced, in memory (core/nodejs/model-variants.ts).
// Per scope: the suite's metric and accuracy, KL(original ‖ quantized) of the next-token distribution at the last
// position, the drops from the unquantized model, and with a circuit its faithfulness under the quantized model
// (the full and the empty model quantized alike). Variants run one after another (each is a model of its own), or
// on workers (`--broker`: distributed/variants.ts), each measured there as here (variant-measures.ts).
import type { WeightVariants } from '../../engine/variants';
import { UserError } from '../../errors';
import { circuitComponents, type Circuit } from '../../formats/circuit';
import type { Suite } from '../../formats/suite';
import { quantizeWeights, type QuantizeOptions } from '../../onnx/quantize';
import { weightComponents, type WeightRole } from '../../onnx/weight-components';
import { scopeLabel, weightScope, type WeightScope } from '../../onnx/weight-scope';
import type { AblationKind, MetricName } from '../../vocabulary';
import { checkPoint, measurePoints, measureVariant, openBaseline, type VariantBaseline, type VariantMeasures, type VariantWorkers } from '../variant-measures';

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
  /** Measures the rows on workers (`--broker`) instead of here, one after another. */
  workers?: VariantWorkers;
}

/** A row's measures (variant-measures.ts): metric, accuracy, KL, logit difference, probability, faithfulness. */
export type SensitivityMeasure = VariantMeasures;

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

/** A row before its drops (which need the baseline's measures): the scope's matrices quantized, measured. */
export type QuantizedRow = Omit<SensitivityRow, 'metricDrop' | 'accuracyDrop' | 'faithfulnessDrop'>;

/**
 * One row: the matrices of `scope` fake-quantized, the variant measured against the baseline. `roles`: the model's
 * weight components (weightComponents), found once for every row.
 */
export async function quantizedRow(base: VariantBaseline, model: WeightVariants, roles: readonly WeightRole[], scope: WeightScope, quantize: QuantizeOptions, signal?: AbortSignal): Promise<QuantizedRow> {
  const scoped = weightScope(model.model, model.path, scope, model.hooks, roles);
  const q = quantizeWeights(model.model, scoped.tensors, quantize);
  const m = await measureVariant(base, model, q.tensors, signal);
  return { scope: scopeLabel(scope), quantize: quantize.scheme, groupSize: quantize.groupSize ?? null, tensors: q.tensors.length, entries: q.entries, relativeError: q.relativeError, ...m, skipped: scoped.skipped };
}

/** The row with its drops from the baseline (fields in the order the JSON has them). */
function withDrops(baseline: SensitivityMeasure, r: QuantizedRow): SensitivityRow {
  const { skipped, ...rest } = r;
  return {
    ...rest, metricDrop: baseline.metric - r.metric, accuracyDrop: baseline.accuracy - r.accuracy,
    ...(r.faithfulness !== undefined ? { faithfulnessDrop: baseline.faithfulness! - r.faithfulness } : {}), skipped,
  };
}

export async function runSensitivity(suite: Suite, model: WeightVariants, opts: SensitivityOptions): Promise<SensitivityResult> {
  const t0 = Date.now();
  if (!opts.scopes.length) throw new UserError('no scope to quantize (--scope all|attn|mlp|embed|circuit:C|outside:C)');
  const circuit = opts.circuit;
  const base = await openBaseline(suite, model, { ablation: opts.ablation, circuit, signal: opts.signal });
  opts.report?.(`baseline: ${base.prompts.length} task prompts on the unquantized model: ${base.metric} ${base.measures.metric.toFixed(3)}, accuracy ${base.measures.accuracy.toFixed(3)}`);
  const q = opts.quantize;
  const how = `${q.scheme}${q.groupSize ? `, groups of ${q.groupSize}` : ''}`;
  const n = opts.scopes.length;
  if (opts.workers) opts.report?.(`${n} scope${n === 1 ? '' : 's'} to measure on the workers (${how})`);
  let roles: WeightRole[] | undefined;
  const points = opts.scopes.map((scope) => ({ kind: 'quantize' as const, quantize: q, scope }));
  let done = 0;
  const rows = await measurePoints(base, points, (p) => quantizedRow(base, model, roles ??= weightComponents(model.model, model.path, model.hooks), p.scope, p.quantize, opts.signal), {
    workers: opts.workers, signal: opts.signal,
    check: (r) => checkPoint<QuantizedRow>(r, ['scope', 'tensors', 'entries', 'relativeError', 'skipped']),
    done: (i, r) => opts.report?.(`scope ${i + 1}/${n}: ${r.scope}, ${r.tensors} tensors, ${r.entries.toLocaleString('en')} entries (${how}): ${base.metric} ${r.metric.toFixed(3)}, accuracy ${r.accuracy.toFixed(3)} — ${++done}/${n} in ${((Date.now() - t0) / 1000).toFixed(1)} s`),
  });
  return {
    suite: suite.name, metric: base.metric, prompts: base.prompts.length, baseline: base.measures, rows: rows.map((r) => withDrops(base.measures, r)), ablation: base.ablation, seconds: (Date.now() - t0) / 1000,
    ...(circuit ? { circuit: { name: circuit.name, nodes: circuitComponents(circuit), level: circuit.granularity === 'edge' && (circuit.edges ?? []).length ? 'edge' as const : 'node' as const } } : {}),
  };
}
