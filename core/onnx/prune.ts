// Unstructured weight pruning: entries of the attention and MLP weight matrices set to zero, chosen by magnitude.
// What is prunable comes from weight-components.ts (the graph's structure, never names): float32 initializers of
// rank 2 whose component is attention or mlp and that are the weight of a matrix product (MatMul, Gemm; through
// Identity, Transpose or Cast): a rotary cos/sin table is in the attention but is no weight matrix. Embeddings, norms, biases, the final norm and the unembedding are
// never pruned; matrices stored in float16 or quantized are left as they are (and reported).
// Sparsity is always a fraction of every prunable entry, whatever the strategy, so curves are comparable:
// - magnitude: the k = round(s·N) entries of smallest |w| over all prunable matrices together (one global
//   threshold);
// - outside-circuit: the same among the entries the circuit's nodes do not own (weight-slices.ts); the circuit's
//   entries are never pruned, so the sparsity reachable is capped at (N − owned)/N;
// - layer-waves: the budget k is spent layer by layer from the last layer back to the first (a whole layer's
//   matrices before any entry of the layer before it), smallest |w| first within a layer; matrices read by several
//   layers come last.
// Ties in |w| are broken by position: initializer order in the file, then row-major index. So a plan is the first
// k entries of a stable sort of the candidates by (wave, |w|), which an independent implementation can reproduce.
import { GraphIndex } from './graph';
import { weightReads } from './initializers';
import { DataType, floatData, type OnnxModel, type TensorProto } from './model';
import type { OwnedMask } from './owned-masks';
import type { WeightRole } from './weight-components';

export type PruneStrategy = 'magnitude' | 'outside-circuit' | 'layer-waves';
export const PRUNE_STRATEGIES: readonly PruneStrategy[] = ['magnitude', 'outside-circuit', 'layer-waves'];

export interface PrunableTensor {
  name: string;
  dims: number[];
  component: 'attention' | 'mlp';
  /** The one layer that reads it (undefined when several do). */
  layer?: number;
  /** Its values (row-major); never changed here. */
  data: Float32Array;
}

export interface PruneScope {
  /** In file order. */
  tensors: PrunableTensor[];
  /** Prunable entries in all (N). */
  total: number;
  /** Attention and MLP matrices not stored as float32 (not pruned). */
  skipped: string[];
  /** Per tensor, the entries a circuit owns (1); only when a circuit was given. */
  owned?: Map<string, Uint8Array>;
  /** Prunable entries the circuit owns. */
  ownedEntries: number;
}

/** The prunable matrices of `model` (its initializers as decoded, weights in memory), by their roles. */
export function pruneScope(model: OnnxModel, roles: readonly WeightRole[]): PruneScope {
  const byName = new Map(model.graph!.initializer.map((t) => [t.name, t]));
  const g = new GraphIndex(model.graph!);
  const tensors: PrunableTensor[] = [];
  const skipped: string[] = [];
  for (const r of roles) {
    if ((r.component !== 'attention' && r.component !== 'mlp') || r.dims.length !== 2 || r.elements <= 1 || !isProductWeight(g, r.tensor)) continue;
    const t = byName.get(r.tensor)!;
    const data = t.dataType === DataType.FLOAT ? floatData(t) : undefined;
    if (!data || data.length !== r.elements) { skipped.push(r.tensor); continue; }
    tensors.push({ name: r.tensor, dims: r.dims, component: r.component, ...(r.layer !== undefined ? { layer: r.layer } : {}), data });
  }
  return { tensors, total: tensors.reduce((a, t) => a + t.data.length, 0), skipped, ownedEntries: 0 };
}

/**
 * The scope with a circuit's entries marked as owned (`masks`: owned-masks.ts, by the file's names). Masks of
 * tensors that are not prunable (biases, norms) change nothing.
 */
export function withOwned(scope: PruneScope, masks: ReadonlyMap<string, OwnedMask>): PruneScope {
  const owned = new Map<string, Uint8Array>();
  for (const t of scope.tensors) {
    const m = masks.get(t.name);
    if (!m) continue;
    if (t.dims.join() !== m.dims.join()) throw new Error(`prune: the circuit's entries of "${t.name}" are a mask of [${m.dims}], the tensor is [${t.dims}]`);
    owned.set(t.name, m.entries);
  }
  let ownedEntries = 0;
  for (const m of owned.values()) for (let i = 0; i < m.length; i++) ownedEntries += m[i]!;
  return { ...scope, owned, ownedEntries };
}

/** What a prunable matrix's value passes through to its products: unlike a quantize scope's matrices (weight-scope.ts
 * matrixUse), not a DequantizeLinear, so an integer weight is neither pruned nor reported as skipped. */
const PASS_THROUGH = new Set(['Identity', 'Transpose', 'Cast']);

/**
 * Whether every reader of `name` (through Identity, Transpose, Cast) is a MatMul or Gemm, and there is one. Any of
 * their operands counts, and the readers need not agree on the output channels: matrixUse asks for both.
 */
function isProductWeight(g: GraphIndex, name: string): boolean {
  const reads = weightReads(g, name, 2, PASS_THROUGH);
  return reads.length > 0 && reads.every((r) => r.node.opType === 'MatMul' || r.node.opType === 'Gemm');
}

/** One pruned model: what was asked, what was reached, and the replaced initializers. */
export interface PrunePlan {
  strategy: PruneStrategy;
  /** The sparsity asked for (a fraction of every prunable entry). */
  requested: number;
  /** Entries set to zero by this plan (round(requested·N), or fewer when capped). */
  pruned: number;
  /** Zero entries among the prunable ones afterwards (the pruned ones and any that were zero already), over N. */
  reached: number;
  /** Whether fewer entries than asked could be pruned (outside-circuit: the circuit owns the rest). */
  capped: boolean;
  /** Per layer ("shared" for matrices several layers read): zero entries over the layer's prunable entries. */
  byLayer: Record<string, number>;
  /** The changed initializers, same names, float32 raw data. */
  replacements: TensorProto[];
}

/** The candidates of one wave (a group pruned before the next), their |w| sorted once for every sparsity. */
interface Wave { tensors: number[]; count: number; sorted: Float32Array }

/** Plans for any sparsity under one strategy; the sorting is done once. */
export interface PruneRanking { strategy: PruneStrategy; candidates: number; plan(sparsity: number): PrunePlan }

export function pruneRanking(scope: PruneScope, strategy: PruneStrategy): PruneRanking {
  if (strategy === 'outside-circuit' && !scope.owned) throw new Error('prune: outside-circuit needs the circuit\'s slices (withOwned)');
  const owned = strategy === 'outside-circuit' ? scope.owned! : undefined;
  const candidate = (ti: number, i: number) => !owned?.get(scope.tensors[ti]!.name)?.[i];
  const groups: number[][] = [];
  if (strategy === 'layer-waves') {
    const layers = [...new Set(scope.tensors.flatMap((t) => (t.layer === undefined ? [] : [t.layer])))].sort((a, b) => b - a);
    for (const l of layers) groups.push(scope.tensors.flatMap((t, i) => (t.layer === l ? [i] : [])));
    const shared = scope.tensors.flatMap((t, i) => (t.layer === undefined ? [i] : []));
    if (shared.length) groups.push(shared);
  } else groups.push(scope.tensors.map((_, i) => i));
  const waves: Wave[] = groups.map((tensors) => {
    let count = 0;
    for (const ti of tensors) { const d = scope.tensors[ti]!.data; for (let i = 0; i < d.length; i++) if (candidate(ti, i)) count++; }
    const sorted = new Float32Array(count);
    let k = 0;
    for (const ti of tensors) { const d = scope.tensors[ti]!.data; for (let i = 0; i < d.length; i++) if (candidate(ti, i)) sorted[k++] = Math.abs(d[i]!); }
    sorted.sort();
    return { tensors, count, sorted };
  });
  const candidates = waves.reduce((a, w) => a + w.count, 0);

  return {
    strategy, candidates,
    plan(sparsity: number): PrunePlan {
      if (!(sparsity >= 0 && sparsity <= 1)) throw new Error(`prune: sparsity ${sparsity} is not in [0, 1]`);
      const want = Math.round(sparsity * scope.total);
      const k = Math.min(want, candidates);
      const zeroed = scope.tensors.map(() => undefined as Uint8Array | undefined);
      let left = k;
      for (const w of waves) {
        if (left <= 0) break;
        const take = Math.min(left, w.count);
        if (take <= 0) continue;
        left -= take;
        // The take-th smallest |w| of the wave is the threshold: every candidate below it, then entries equal to it
        // in position order until `take` are chosen.
        const t = w.sorted[take - 1]!;
        let below = 0;
        while (below < take && w.sorted[below]! < t) below++;
        let ties = take - below;
        for (const ti of w.tensors) {
          const d = scope.tensors[ti]!.data;
          let z = zeroed[ti];
          for (let i = 0; i < d.length; i++) {
            const a = Math.fround(Math.abs(d[i]!));
            if (a > t || !candidate(ti, i)) continue;
            if (a === t) { if (ties <= 0) continue; ties--; }
            z ??= zeroed[ti] = new Uint8Array(d.length);
            z[i] = 1;
          }
        }
      }
      const replacements: TensorProto[] = [];
      let zeros = 0;
      const layerZeros = new Map<string, [number, number]>();
      scope.tensors.forEach((t, ti) => {
        const z = zeroed[ti];
        const data = z ? t.data.slice() : t.data;
        if (z) for (let i = 0; i < data.length; i++) if (z[i]) data[i] = 0;
        let n = 0;
        for (let i = 0; i < data.length; i++) if (data[i] === 0) n++;
        zeros += n;
        const key = t.layer === undefined ? 'shared' : String(t.layer);
        const lz = layerZeros.get(key) ?? [0, 0];
        layerZeros.set(key, [lz[0] + n, lz[1] + data.length]);
        if (z) replacements.push(float32Tensor(t.name, t.dims, data));
      });
      const byLayer: Record<string, number> = {};
      for (const [key, [n, of]] of [...layerZeros].sort()) byLayer[key] = n / of;
      return { strategy, requested: sparsity, pruned: k, reached: scope.total ? zeros / scope.total : 0, capped: k < want, byLayer, replacements };
    },
  };
}

function float32Tensor(name: string, dims: number[], data: Float32Array): TensorProto {
  return { name, dims, dataType: DataType.FLOAT, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), floatData: [], int64Data: [], int32Data: [], externalData: [], dataLocation: 0 };
}
