// Protect a circuit during fine-tuning (DESIGN §7 `protect`): a mask per ONNX initializer, `scale` on the entries
// the circuit's nodes own (core/onnx/weight-slices.ts) and 1 elsewhere, to multiply each entry's learning rate by.
// The mask covers the initializers of the file as written (names kept; weights stored in float16 or quantized
// keep their stored name), and its metadata maps them to PyTorch parameter names where the export tells them.
import { UserError } from '../../errors';
import type { SafeTensor, SafeTensors } from '../../formats/safetensors';
import { detectStructure, type HooksSidecar, type ModelStructure } from '../../onnx/detect';
import { GraphIndex } from '../../onnx/graph';
import { readersOf } from '../../onnx/initializers';
import { DataType, decodeModel, floatData, num, type OnnxModel, type TensorProto } from '../../onnx/model';
import { normalizeExport } from '../../onnx/normalize';
import { fileName, sliceEntries, sliceMasks } from '../../onnx/owned-masks';
import { ownedSlices, type OwnedSlice } from '../../onnx/weight-slices';
import { sharedWeights, type SharedPart, type SharedWeight } from './shared';

/** The format tag in a mask's metadata. */
export const PROTECT_FORMAT = 'circuitlens.protect/1';

/** A model read for protection: its graph as the engine reads it, and the initializers of the file as written. */
export interface ProtectModel {
  /** Normalised (normalizeExport), so weight-slices sees plain float32 weights. */
  model: OnnxModel;
  structure: ModelStructure;
  /** Initializers of the file that get a mask: floating-point ones and the integer weights of DequantizeLinear. */
  stored: { name: string; dims: number[] }[];
  /** Normalised initializer name → the stored one it comes from (a folded Cast or DequantizeLinear's input). */
  origin: Map<string, string>;
  /** The model as decoded from the file (weight-components reads it), and its hooks sidecar. */
  raw: OnnxModel;
  hooks: { sidecar?: HooksSidecar; sidecarPath?: string };
}

export function readProtectModel(bytes: Uint8Array, what: string, sidecar?: HooksSidecar, sidecarPath?: string): ProtectModel {
  const rawModel = decodeModel(bytes, what);
  const raw = rawModel.graph!;
  const origin = new Map<string, string>();
  const rawInits = new Map(raw.initializer.map((t) => [t.name, t]));
  const dequantized = new Set<string>();
  for (const n of raw.node) {
    if ((n.opType === 'Cast' || n.opType === 'DequantizeLinear') && rawInits.has(n.input[0] ?? '')) origin.set(n.output[0]!, n.input[0]!);
    if (n.opType === 'DequantizeLinear' && rawInits.has(n.input[0] ?? '')) dequantized.add(n.input[0]!);
  }
  const floating = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE]);
  const stored = raw.initializer.filter((t) => floating.has(t.dataType) || dequantized.has(t.name)).map((t) => ({ name: t.name, dims: t.dims.map(num) }));
  const model = decodeModel(bytes, what);
  normalizeExport(model, what);
  const structure = detectStructure(model, what, sidecar, sidecarPath);
  return { model, structure, stored, origin, raw: rawModel, hooks: { sidecar, sidecarPath } };
}

/** A slice in the file's names, as reported: `[:, 0:16]` style. */
export interface ReportedSlice { initializer: string; role: OwnedSlice['role']; slice: string; entries: number }

export interface ProtectResult {
  mask: SafeTensors;
  /** Per node, what it owns. */
  nodes: Record<string, ReportedSlice[]>;
  /** The shared weights protected whole (`shared` parts). */
  shared: SharedWeight[];
  /** Per initializer with protected entries: how many, of how many. */
  initializers: { name: string; pytorch?: string; transposed?: boolean; protected: number; total: number }[];
  protectedEntries: number;
  totalEntries: number;
}

/**
 * The mask for `nodes` at `scale` (a learning-rate multiplier: 0 freezes, 1 leaves as is), and for the shared
 * weights of `shared` they read and write through (shared.ts). `info`: what the metadata records besides the
 * names (circuit, model). `invert`: the other way round, `scale` on every entry the nodes do not own and 1 on theirs
 * (only the circuit fine-tunes at full rate; "protected" then counts the entries at `scale`).
 */
export function protectMask(pm: ProtectModel, nodes: readonly string[], scale: number, what: string, info: Record<string, string> = {}, shared: readonly SharedPart[] = [], invert = false): ProtectResult {
  if (invert && shared.length) throw new UserError('--invert and --shared: --invert already scales every weight no node of the circuit owns');
  if (!Number.isFinite(scale) || scale < 0) throw new UserError(`--scale must be a number ≥ 0 (got ${scale})`);
  if (nodes.length === 0) throw new UserError(`${what}: the circuit has no nodes to protect`);
  const storedName = storedNameOf(pm);
  const owned = sliceMasks(ownedSlices(pm.model.graph!, pm.structure, nodes, what), storedName);
  const storedDims = new Map(pm.stored.map((s) => [s.name, s.dims.join()]));
  const report: Record<string, ReportedSlice[]> = {};
  for (const [id, slices] of owned.slices) {
    report[id] = slices.map((s) => {
      if (storedDims.get(s.initializer) !== s.dims.join()) throw new Error(`protect: ${id} owns "${s.initializer}", which is no stored initializer of shape [${s.dims}]`);
      return { initializer: s.initializer, role: s.role, slice: sliceText(s), entries: sliceEntries(s) };
    });
  }
  const masks = new Map(pm.stored.map((s) => [s.name, { dims: s.dims, ...scaled(owned.masks.get(s.name)?.entries, s.dims.reduce((a, v) => a * v, 1), scale, invert) }]));
  // Shared weights no node owns (a norm an MLP reads alone is that MLP's already).
  const sharedOnes = sharedWeights(pm, nodes, shared, what).filter((w) => masks.get(w.initializer)!.owned.includes(0));
  for (const w of sharedOnes) {
    const m = masks.get(w.initializer)!;
    m.data.fill(scale);
    m.owned.fill(1);
  }
  const names = pytorchNames(pm, storedName);
  const initializers = [...masks].map(([name, m]) => ({ name, ...names.get(name), protected: ones(m.owned), total: m.data.length }))
    .filter((x) => x.protected > 0);
  const tensors: SafeTensor[] = [...masks].map(([name, m]) => ({ name, dims: m.dims, data: m.data }));
  const kept: Record<string, string> = {};
  const transposed: Record<string, string> = {};
  for (const [onnx, p] of names) (p.transposed ? transposed : kept)[onnx] = p.pytorch;
  const metadata: Record<string, string> = {
    format: PROTECT_FORMAT, scale: String(scale), nodes: JSON.stringify(nodes), shared: JSON.stringify(shared), ...(invert ? { invert: 'true' } : {}), ...info,
    pytorch_names: JSON.stringify(kept), pytorch_transposed: JSON.stringify(transposed),
  };
  return {
    mask: { tensors, metadata }, nodes: report, shared: sharedOnes, initializers,
    protectedEntries: initializers.reduce((a, x) => a + x.protected, 0), totalEntries: tensors.reduce((a, t) => a + t.data.length, 0),
  };
}

/**
 * One initializer's mask: `owned` 1 on the entries at `scale` (the nodes' entries, `own`; with `invert` the others),
 * `data` the scales. Plain loops and fills: a model's every weight passes here (a callback per entry, as
 * `TypedArray.from` takes, costs seconds per 100M entries).
 */
function scaled(own: Uint8Array | undefined, n: number, scale: number, invert: boolean): { data: Float32Array; owned: Uint8Array } {
  const owned = new Uint8Array(n);
  const data = new Float32Array(n);
  if (!own) return { owned: owned.fill(invert ? 1 : 0), data: data.fill(invert ? scale : 1) };
  for (let i = 0; i < n; i++) {
    const o = invert ? 1 - own[i]! : own[i]!;
    owned[i] = o;
    data[i] = o ? scale : 1;
  }
  return { data, owned };
}

function ones(a: Uint8Array): number {
  let k = 0;
  for (let i = 0; i < a.length; i++) k += a[i]!;
  return k;
}

/** A normalised initializer's name → the stored one it comes from. */
export function storedNameOf(pm: ProtectModel): (n: string) => string {
  return (n) => pm.origin.get(n) ?? pm.origin.get(fileName(n)) ?? fileName(n);
}

function sliceText(s: OwnedSlice): string {
  if (s.start === 0 && s.end === s.dims[s.axis]) return `[${s.dims.map(() => ':').join(', ')}]`;
  return `[${s.dims.map((_, i) => (i === s.axis ? `${s.start}:${s.end}` : ':')).join(', ')}]`;
}

/** A dotted identifier: how torch.onnx names an initializer it keeps a module parameter's name for. */
const PYTORCH_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$/;
/** torch.onnx's node names carry the module path: `/blocks.0/attn/qkv/MatMul` is module `blocks.0.attn.qkv`. */
const SCOPED_MATMUL = /^\/(.+)\/MatMul$/;

/**
 * PyTorch parameter names where the export tells them: an initializer named like a parameter keeps its name;
 * a renamed one (`onnx::MatMul_404`: torch.onnx folds nn.Linear's weight transposed, [in, out]) read only by a
 * MatMul whose node name carries the module path is that module's `.weight`, transposed; a 2-D one holding another
 * named initializer's values transposed is that parameter (the copy torch.onnx makes of a tied unembedding).
 * Others: no name.
 */
export function pytorchNames(pm: ProtectModel, storedName: (n: string) => string): Map<string, { pytorch: string; transposed: boolean }> {
  const g = new GraphIndex(pm.model.graph!);
  const stored = new Set(pm.stored.map((s) => s.name));
  const out = new Map<string, { pytorch: string; transposed: boolean }>();
  for (const t of pm.model.graph!.initializer) {
    const name = storedName(t.name);
    if (!stored.has(name) || out.has(name)) continue;
    if (PYTORCH_NAME.test(name)) { out.set(name, { pytorch: name, transposed: false }); continue; }
    const readers = readersOf(g, t.name);
    const scope = readers.length === 1 && readers[0]!.opType === 'MatMul' && t.dims.length === 2 ? SCOPED_MATMUL.exec(readers[0]!.name) : null;
    if (scope && readers[0]!.input[0] !== t.name) {
      const module = scope[1]!.split('/').join('.');
      if (PYTORCH_NAME.test(module)) out.set(name, { pytorch: `${module}.weight`, transposed: true });
    }
  }
  const inits = pm.model.graph!.initializer;
  for (const t of inits) {
    const name = storedName(t.name);
    if (!stored.has(name) || out.has(name) || t.dims.length !== 2) continue;
    const tied = inits.find((u) => u.dims.length === 2 && num(u.dims[0]) === num(t.dims[1]) && num(u.dims[1]) === num(t.dims[0])
      && out.get(storedName(u.name))?.transposed === false && transposeEqual(t, u));
    if (tied) out.set(name, { pytorch: out.get(storedName(tied.name))!.pytorch, transposed: true });
  }
  return out;
}

/** Whether 2-D tensor `a` holds `b` transposed, value for value. */
function transposeEqual(a: TensorProto, b: TensorProto): boolean {
  const [x, y] = [floatData(a), floatData(b)];
  if (!x || !y || x.length !== y.length) return false;
  const [r, c] = [num(a.dims[0]), num(a.dims[1])];
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) if (x[i * c + j] !== y[j * r + i]) return false;
  return true;
}
