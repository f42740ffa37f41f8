// Distributed weight variants: prune's points and sensitivity's rows measured on workers, one job per variant (a
// pruned or quantized model is a model of its own: its clean run, its circuit evaluation). A job carries the
// variant as described (strategy and sparsity; scheme, group size and scope), never its weights, with the circuit
// and the suite's context; the worker rebuilds the variant from its copy of the model (the same sha256) and
// measures it as the local run does (variant-measures.ts), against the unchanged model's clean run, which it makes
// once per context. The point comes back as exact JSON (toWire: NaN and −0 too), so the result equals the local
// one bit for bit. Job ids hash the context (model, suite, ablation, runtime, version), the variant and the
// circuit: a restarted coordinator finds the points already measured.
import type { WeightVariants } from '../../engine/variants';
import { UserError } from '../../errors';
import type { Circuit } from '../../formats/circuit';
import type { Suite } from '../../formats/suite';
import { weightComponents, type WeightRole } from '../../onnx/weight-components';
import { pruneBench, prunePoint, type PruneBench } from '../prune/prune';
import { quantizedRow } from '../sensitivity/sensitivity';
import { openBaseline, type VariantBaseline, type VariantWorkers } from '../variant-measures';
import { fromWire, identityText, planChunks, toWire, type VariantWork } from './plan';
import { contextSpec, type Broker, type ChunkJob, type ContextSpec, type RunSource } from './run';

/** What a worker answers for a variant: the point, as toWire wrote it. */
export interface VariantResult {
  point: unknown;
  /** host:pid of the worker that measured it. */
  worker: string;
  /** Milliseconds the worker spent on it, the baseline included when it was made for it. */
  ms: number;
}

/** The job id of one variant in one context: the same variant asked again (a rerun) is the same job. */
export function variantJobId(hash: (text: string) => string, contextKey: string, work: VariantWork): string {
  return planChunks(hash(identityText({ context: contextKey, work })).slice(0, 32), [1])[0]!.id;
}

/** Measures the points of a run on the broker's workers, the suite's task prompts prepared as the baseline's. */
export function variantsOnWorkers(source: RunSource, broker: Broker): VariantWorkers {
  return {
    async run(base, points, done, signal) {
      const context = contextSpec(source, broker, 'task', base.ablation, base.maxRows);
      const jobs = points.map((variant) => {
        const work: VariantWork = { kind: 'variant', variant, ...(base.circuit ? { circuit: base.circuit } : {}) };
        const data: ChunkJob = { format: 2, version: source.version, context, work, chunk: { from: 0, to: 1, rows: 1 } };
        return { id: variantJobId(broker.hash, context.key, work), name: 'variant', rows: 1, data };
      });
      // Points asked twice are one job.
      const unique = [...new Map(jobs.map((j) => [j.id, j])).values()];
      const results = await broker.jobs.run(unique, (_rows, id, r) => jobs.forEach((j, i) => { if (j.id === id) done(i, pointOf(j.id, r)); }), signal);
      const byId = new Map(unique.map((j, k) => [j.id, results[k]]));
      return jobs.map((j) => pointOf(j.id, byId.get(j.id)));
    },
  };
}

function pointOf(id: string, r: unknown): unknown {
  if (!r || typeof r !== 'object' || !('point' in r)) throw new UserError(`job ${id}: the worker's answer is not a CircuitLens variant result`);
  return fromWire((r as VariantResult).point);
}

// ---- the worker's side ------------------------------------------------------------------------------------------

/** A worker's bench for one context and circuit: the baseline, and what the variants are made from (when first asked). */
export interface VariantBench {
  v: WeightVariants;
  base: VariantBaseline;
  prune?: PruneBench;
  roles?: WeightRole[];
}

/** The suite opened on the unchanged weights as the coordinator opened it (its ablation, its batch size). */
export async function openVariantBench(v: WeightVariants, suite: Suite, context: ContextSpec, circuit: Circuit | undefined): Promise<VariantBench> {
  if (context.prompts !== 'task') throw new Error(`internal: variants are measured on the task prompts, not ${context.prompts}`);
  const base = await openBaseline(suite, v, { ablation: context.ablation, circuit });
  if (base.maxRows !== context.maxRows) throw new UserError(`this worker batches ${base.maxRows} rows per call, the coordinator ${context.maxRows}: results would differ`);
  return { v, base };
}

/** A worker's part: the variant rebuilt from the model and measured, as the point toWire writes. */
export async function computeVariant(b: VariantBench, work: VariantWork): Promise<unknown> {
  const p = work.variant;
  if (p.kind === 'prune') return toWire(await prunePoint(b.base, b.v, b.prune ??= pruneBench(b.v, b.v.path, b.base.circuit), p.strategy, p.sparsity));
  return toWire(await quantizedRow(b.base, b.v, b.roles ??= weightComponents(b.v.model, b.v.path, b.v.hooks), p.scope, p.quantize));
}
