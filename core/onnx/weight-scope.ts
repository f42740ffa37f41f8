// Which weight matrices, and which of their entries, a scope names: `attn`, `mlp`, `embed` (embedding and
// unembedding) and `all` from weight-components.ts (the component of each initializer, found from the graph's
// structure); `circuit:C`, the entries the circuit's nodes own (weight-slices.ts: a head's q/k/v columns and W_O
// rows, an MLP's matrices); `outside:C`, every other entry of the attention and MLP matrices. A matrix is an
// initializer of rank ≥ 2, stored as float32, that a weight product (MatMul, Gemm, Conv) reads as its weight or that
// the embedding reads as a table (Gather, or a Slice of positions); vectors (biases, norm gains) and constants such
// as rotary caches are in no scope. How the matrix is read also says its output channels (`channelAxis`): the
// columns of a MatMul's [in, out] weight, the rows of Gemm's with transB, of a Conv's and of an embedding table.
import { UserError } from '../errors';
import type { HooksSidecar } from './detect';
import { GraphIndex } from './graph';
import { weightReads } from './initializers';
import { DataType, num, type OnnxModel, type OnnxNode } from './model';
import { ownedMasks } from './owned-masks';
import { weightComponents, type WeightComponent, type WeightRole } from './weight-components';

export type ScopeKind = 'all' | 'attn' | 'mlp' | 'embed' | 'circuit' | 'outside';
export const SCOPE_KINDS: readonly ScopeKind[] = ['all', 'attn', 'mlp', 'embed', 'circuit', 'outside'];

/** A scope; `circuit` and `outside` name a circuit (its nodes: heads and MLPs). */
export interface WeightScope { kind: ScopeKind; circuit?: { name: string; nodes: readonly string[] } }

/** The scope's label, as the user writes it: `attn`, `circuit:induction`. */
export function scopeLabel(s: WeightScope): string {
  return s.circuit && (s.kind === 'circuit' || s.kind === 'outside') ? `${s.kind}:${s.circuit.name}` : s.kind;
}

const COMPONENTS: Record<'attn' | 'mlp' | 'embed', WeightComponent[]> = { attn: ['attention'], mlp: ['mlp'], embed: ['embedding', 'unembedding'] };

/** How a matrix is read: by which node, and which of its axes are the output channels (the stored tensor's axes). */
export interface MatrixUse { op: string; node: string; channelAxis: number }

export interface ScopedTensor {
  tensor: string;
  component: WeightComponent;
  layer?: number;
  dims: number[];
  use: MatrixUse;
  /** The entries in scope (row-major, 1 = in); undefined: all of them. */
  entries?: Uint8Array;
  /** How many entries are in scope. */
  count: number;
}

export interface ScopedWeights {
  tensors: ScopedTensor[];
  /** Initializers of the scope's components left out, and why (stored as float16/int8, not read as a matrix). */
  skipped: { tensor: string; reason: string }[];
}

const WEIGHT_OPS = new Set(['MatMul', 'Gemm', 'Conv']);
/** Constant operators a weight passes through on its way to the activations (a DequantizeLinear: an int8 export's). */
const THROUGH = new Set(['Identity', 'Cast', 'Transpose', 'DequantizeLinear']);

/**
 * The matrices (and entries) of `scope` in `model` (as decoded from the file, not changed here). `roles`: the
 * model's weightComponents, when the caller has them already (several scopes of one model).
 */
export function weightScope(model: OnnxModel, what: string, scope: WeightScope, hooks: { sidecar?: HooksSidecar; sidecarPath?: string } = {}, roles: readonly WeightRole[] = weightComponents(model, what, hooks)): ScopedWeights {
  const g = new GraphIndex(model.graph!);
  const inits = new Map(model.graph!.initializer.map((t) => [t.name, t]));
  const wanted: WeightComponent[] = scope.kind === 'all' ? [...COMPONENTS.attn, ...COMPONENTS.mlp, ...COMPONENTS.embed]
    : scope.kind === 'circuit' || scope.kind === 'outside' ? [...COMPONENTS.attn, ...COMPONENTS.mlp] : COMPONENTS[scope.kind];
  const tensors: ScopedTensor[] = [];
  const skipped: ScopedWeights['skipped'] = [];
  for (const r of roles) {
    if (!r.uses.some((u) => wanted.includes(u)) || r.dims.length < 2 || r.elements <= 1) continue;
    // A tensor read by a component outside the scope too (a tied embedding in `attn`) stays out.
    if (scope.kind !== 'all' && r.uses.some((u) => !wanted.includes(u))) { skipped.push({ tensor: r.tensor, reason: `also read by the ${r.uses.filter((u) => !wanted.includes(u)).join(', ')}` }); continue; }
    const use = matrixUse(g, r.tensor, r.dims.length, r.component);
    if (typeof use === 'string') { if (use) skipped.push({ tensor: r.tensor, reason: use }); continue; }
    const t = inits.get(r.tensor)!;
    if (t.dataType !== DataType.FLOAT) { skipped.push({ tensor: r.tensor, reason: `stored as ${TYPE_NAMES[t.dataType] ?? `type ${t.dataType}`} (already reduced precision; left as is)` }); continue; }
    tensors.push({ tensor: r.tensor, component: r.component, ...(r.layer !== undefined ? { layer: r.layer } : {}), dims: r.dims, use, count: r.elements });
  }
  if (scope.kind !== 'circuit' && scope.kind !== 'outside') return { tensors, skipped };
  if (!scope.circuit || scope.circuit.nodes.length === 0) throw new UserError(`${what}: scope ${scope.kind} needs a circuit with heads or MLPs (--circuit C)`);
  const owned = ownedMasks(model, what, hooks, scope.circuit.nodes).masks;
  const out: ScopedTensor[] = [];
  for (const t of tensors) {
    const mask = owned.get(t.tensor)?.entries;
    if (scope.kind === 'circuit') {
      if (!mask) continue;
      const count = mask.reduce((a, v) => a + v, 0);
      if (count) out.push({ ...t, entries: count === mask.length ? undefined : mask, count });
    } else {
      if (!mask) { out.push(t); continue; }
      const rest = mask.map((v) => 1 - v);
      const count = rest.reduce((a, v) => a + v, 0);
      if (count) out.push({ ...t, entries: rest, count });
    }
  }
  return { tensors: out, skipped };
}

/**
 * How initializer `name` (rank `rank`) is read: followed through Identity, Cast, Transpose and DequantizeLinear to the
 * nodes that meet the activations with it (weightReads; prune.ts asks the same readers a looser question). Every reader must agree on the output channels. A string: why it is not a matrix
 * ('' for constants that are not weights at all: a rotary cache, a shape).
 */
export function matrixUse(g: GraphIndex, name: string, rank: number, component: WeightComponent): MatrixUse | string {
  const uses: MatrixUse[] = [];
  const other: OnnxNode[] = [];
  for (const { node: n, at, perm } of weightReads(g, name, rank, THROUGH)) {
    const label = n.name || `${n.opType} → ${n.output[0]}`;
    const r = perm.length;
    const attr = (k: string) => num(n.attribute.find((a) => a.name === k)?.i);
    if (n.opType === 'MatMul' && at === 1 && r >= 2) uses.push({ op: 'MatMul', node: label, channelAxis: perm[r - 1]! });
    else if (n.opType === 'MatMul' && at === 0 && r === 2) uses.push({ op: 'MatMul', node: label, channelAxis: perm[0]! });
    else if (n.opType === 'Gemm' && at === 1 && r === 2) uses.push({ op: 'Gemm', node: label, channelAxis: perm[attr('transB') ? 0 : 1]! });
    else if (n.opType === 'Conv' && at === 1) uses.push({ op: 'Conv', node: label, channelAxis: perm[0]! });
    else if ((n.opType === 'Gather' || n.opType === 'Slice') && at === 0 && r === 2 && component === 'embedding' && (n.opType === 'Slice' || attr('axis') === 0)) {
      uses.push({ op: n.opType, node: label, channelAxis: perm[0]! });
    } else other.push(n);
  }
  if (!uses.length) return WEIGHT_OPS.has(other[0]?.opType ?? '') ? `read by ${other[0]!.opType} "${other[0]!.name}" in a way not understood` : '';
  if (other.length) return `read as a weight by ${uses[0]!.op} "${uses[0]!.node}" and otherwise by ${other[0]!.opType} "${other[0]!.name || other[0]!.output[0]}"`;
  const axes = new Set(uses.map((u) => u.channelAxis));
  if (axes.size > 1) return `its readers disagree on its output channels (${uses.map((u) => `${u.op} "${u.node}": axis ${u.channelAxis}`).join(', ')})`;
  return uses[0]!;
}

const TYPE_NAMES: Record<number, string> = { [DataType.FLOAT16]: 'float16', [DataType.BFLOAT16]: 'bfloat16', [DataType.DOUBLE]: 'float64', 2: 'uint8', 3: 'int8', 22: 'int4', 21: 'uint4' };
