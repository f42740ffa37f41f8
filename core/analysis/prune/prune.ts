// Pruning curves (DESIGN §7 `prune`): the suite's metric and accuracy on its task prompts, the KL of the pruned
// model's next-token distribution to the unpruned one's, and a circuit's faithfulness, as the attention and MLP
// weight matrices are pruned to each sparsity under each strategy (core/onnx/prune.ts). The point of it: pruning
// everything but a circuit compared with plain magnitude pruning. Each pruned model is an engine on the same graph
// with the pruned initializers replaced in memory (WeightVariants); nothing is written per point.
import type { WeightVariants } from '../../engine/variants';
import { UserError } from '../../errors';
import type { Circuit } from '../../formats/circuit';
import { circuitComponents } from '../../formats/circuit';
import type { Suite } from '../../formats/suite';
import { ownedMasks } from '../../onnx/owned-masks';
import { pruneRanking, pruneScope, withOwned, type PrunePlan, type PruneRanking, type PruneScope, type PruneStrategy } from '../../onnx/prune';
import { weightComponents } from '../../onnx/weight-components';
import type { AblationKind, MetricName } from '../../vocabulary';
import { checkPoint, measurePoints, measureVariant, openBaseline, type VariantBaseline, type VariantMeasures, type VariantWorkers } from '../variant-measures';

export const DEFAULT_SPARSITIES = [0.1, 0.3, 0.5, 0.7, 0.9];

/** Said with every result: what the numbers are and are not. */
export const PRUNE_NOTES = [
  'unstructured pruning of the attention and MLP weight matrices (float32, rank 2); embeddings, norms, biases and the unembedding are never pruned',
  'sparsity is the fraction of all prunable entries that are zero; outside-circuit never prunes the circuit\'s entries, so it is capped at the share outside them ("capped": true, "reached" says how far it got)',
  'no fine-tuning after pruning: these are the pruned weights as they are',
];

/** What each point reports of the variant's measures (variant-measures.ts). */
export type PruneMeasures = Pick<VariantMeasures, 'metric' | 'accuracy' | 'kl' | 'faithfulness'>;

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
  /** Measures the points on workers (`--broker`) instead of here, one after another. */
  workers?: VariantWorkers;
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

/**
 * What pruned models are made from: the prunable matrices (the circuit's entries marked) and the ranking of the
 * last strategy asked (its sort is the costly part; points come strategy by strategy).
 */
export interface PruneBench {
  scope: PruneScope;
  owned: OwnedEntry[];
  plan(strategy: PruneStrategy, sparsity: number): PrunePlan;
}

export function pruneBench(v: WeightVariants, what: string, circuit?: Circuit): PruneBench {
  const { scope, owned } = pruneScopeOf(v, what, circuit);
  let last: PruneRanking | undefined;
  return {
    scope, owned,
    plan(strategy, sparsity) {
      if (last?.strategy !== strategy) {
        last = undefined; // the last sort can go before the next is made
        last = pruneRanking(scope, strategy);
      }
      return last.plan(sparsity);
    },
  };
}

/** The replaced initializers of one pruned model (a canary check's). */
export function prunePlanOf(scope: PruneScope, strategy: PruneStrategy, sparsity: number): PrunePlan {
  return pruneRanking(scope, strategy).plan(sparsity);
}

/** One point of a curve: the model pruned to `sparsity` under `strategy`, measured against the baseline. */
export async function prunePoint(base: VariantBaseline, v: WeightVariants, bench: PruneBench, strategy: PruneStrategy, sparsity: number, signal?: AbortSignal): Promise<PrunePoint> {
  const plan = bench.plan(strategy, sparsity);
  const m = pruneMeasures(await measureVariant(base, v, plan.replacements, signal));
  return { sparsity, reached: plan.reached, pruned: plan.pruned, capped: plan.capped, ...m, byLayer: plan.byLayer };
}

const pruneMeasures = (m: VariantMeasures): PruneMeasures => ({ metric: m.metric, accuracy: m.accuracy, kl: m.kl, ...(m.faithfulness !== undefined ? { faithfulness: m.faithfulness } : {}) });

export interface PruneRun extends PruneReport {
  /** What the pruned models were made from (`--out` writes one more from it). */
  bench: PruneBench;
}

export async function runPrune(suite: Suite, v: WeightVariants, what: string, opts: PruneOptions): Promise<PruneRun> {
  if (opts.strategies.includes('outside-circuit') && !opts.circuit) throw new UserError('the outside-circuit strategy prunes everything but a circuit: pass --circuit FILE.circuit.json');
  const bench = pruneBench(v, what, opts.circuit);
  const { scope, owned } = bench;
  const t0 = Date.now();
  const say = (line: string) => opts.report?.(line);
  const base = await openBaseline(suite, v, { ablation: opts.ablation, circuit: opts.circuit, signal: opts.signal });
  const points = opts.strategies.flatMap((strategy) => opts.sparsities.map((sparsity) => ({ kind: 'prune' as const, strategy, sparsity })));
  if (opts.workers) say(`${points.length} pruned model${points.length === 1 ? '' : 's'} to measure on the workers`);
  let done = 0;
  const measured = await measurePoints(base, points, (p) => prunePoint(base, v, bench, p.strategy, p.sparsity, opts.signal), {
    workers: opts.workers, signal: opts.signal,
    check: (r) => checkPoint<PrunePoint>(r, ['sparsity', 'reached', 'pruned', 'capped', 'byLayer']),
    done: (i, p) => {
      done++;
      const s = (Date.now() - t0) / 1000;
      const total = points.length;
      say(`${points[i]!.strategy} at ${p.sparsity}: accuracy ${p.accuracy.toFixed(3)}${p.capped ? ` (capped at ${p.reached.toFixed(3)})` : ''} — ${done}/${total} pruned models in ${s.toFixed(1)} s${done < total ? `, ~${Math.ceil((s / done) * (total - done))} s left` : ''}`);
    },
  });
  const curves: PruneCurve[] = opts.strategies.map((strategy) => ({ strategy, points: measured.filter((_, i) => points[i]!.strategy === strategy) }));
  return {
    suite: suite.name, metricName: suite.metric, ablation: base.ablation, prompts: base.prompts.length,
    prunable: { entries: scope.total, tensors: scope.tensors.map((t) => ({ name: t.name, component: t.component, ...(t.layer !== undefined ? { layer: t.layer } : {}), entries: t.data.length })), skipped: scope.skipped },
    ...(opts.circuit ? { circuit: { name: opts.circuit.name, nodes: circuitComponents(opts.circuit), ownedEntries: scope.ownedEntries, maxSparsity: (scope.total - scope.ownedEntries) / scope.total, slices: owned } } : {}),
    baseline: pruneMeasures(base.measures), curves, notes: PRUNE_NOTES, bench,
  };
}
