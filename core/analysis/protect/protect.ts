// Protect a circuit during fine-tuning (DESIGN §7 `protect`): a mask per ONNX initializer, `scale` on the entries
// the circuit's nodes own (core/onnx/weight-slices.ts) and 1 elsewhere, to multiply each entry's learning rate by.
// The mask covers the initializers of the file as written (names kept; weights stored in float16 or quantized
// keep their stored name), and its metadata maps them to PyTorch parameter names where the export tells them.
import { UserError } from '../../errors';
import type { SafeTensor, SafeTensors } from '../../formats/safetensors';
import { detectStructure, type HooksSidecar, type ModelStructure } from '../../onnx/detect';
import { GraphIndex } from '../../onnx/graph';
import { readersOf } from '../../onnx/initializers';
import { DataType, decodeModel, num, type OnnxModel } from '../../onnx/model';
import { normalizeExport } from '../../onnx/normalize';
import { ownedSlices, type OwnedSlice } from '../../onnx/weight-slices';

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
}

export function readProtectModel(bytes: Uint8Array, what: string, sidecar?: HooksSidecar, sidecarPath?: string): ProtectModel {
  const raw = decodeModel(bytes, what).graph!;
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
  return { model, structure, stored, origin };
}

/** A slice in the file's names, as reported: `[:, 0:16]` style. */
export interface ReportedSlice { initializer: string; role: OwnedSlice['role']; slice: string; entries: number }

export interface ProtectResult {
  mask: SafeTensors;
  /** Per node, what it owns. */
  nodes: Record<string, ReportedSlice[]>;
  /** Per initializer with protected entries: how many, of how many. */
  initializers: { name: string; pytorch?: string; transposed?: boolean; protected: number; total: number }[];
  protectedEntries: number;
  totalEntries: number;
}

/**
 * The mask for `nodes` at `scale` (a learning-rate multiplier: 0 freezes, 1 leaves as is). `info`: what the
 * metadata records besides the names (circuit, model).
 */
export function protectMask(pm: ProtectModel, nodes: readonly string[], scale: number, what: string, info: Record<string, string> = {}): ProtectResult {
  if (!Number.isFinite(scale) || scale < 0) throw new UserError(`--scale must be a number ≥ 0 (got ${scale})`);
  if (nodes.length === 0) throw new UserError(`${what}: the circuit has no nodes to protect`);
  const owned = ownedSlices(pm.model.graph!, pm.structure, nodes, what);
  const storedName = (n: string) => pm.origin.get(n) ?? (pm.origin.get(n.replace(/@no_past$/, '')) ?? n.replace(/@no_past$/, ''));
  const masks = new Map(pm.stored.map((s) => {
    const n = s.dims.reduce((a, v) => a * v, 1);
    return [s.name, { dims: s.dims, data: new Float32Array(n).fill(1), owned: new Uint8Array(n) }];
  }));
  const report: Record<string, ReportedSlice[]> = {};
  for (const [id, slices] of owned) {
    report[id] = slices.map((s) => {
      const name = storedName(s.initializer);
      const m = masks.get(name);
      if (!m || m.dims.join() !== s.dims.join()) throw new Error(`protect: ${id} owns "${s.initializer}", which maps to no stored initializer of shape [${s.dims}]`);
      fill(m.owned, s, 1);
      return { initializer: name, role: s.role, slice: sliceText(s), entries: fill(m.data, s, scale) };
    });
  }
  const names = pytorchNames(pm, storedName);
  const initializers = [...masks].map(([name, m]) => ({ name, ...names.get(name), protected: m.owned.reduce((a, v) => a + v, 0), total: m.data.length }))
    .filter((x) => x.protected > 0);
  const tensors: SafeTensor[] = [...masks].map(([name, m]) => ({ name, dims: m.dims, data: m.data }));
  const kept: Record<string, string> = {};
  const transposed: Record<string, string> = {};
  for (const [onnx, p] of names) (p.transposed ? transposed : kept)[onnx] = p.pytorch;
  const metadata: Record<string, string> = {
    format: PROTECT_FORMAT, scale: String(scale), nodes: JSON.stringify(nodes), ...info,
    pytorch_names: JSON.stringify(kept), pytorch_transposed: JSON.stringify(transposed),
  };
  return {
    mask: { tensors, metadata }, nodes: report, initializers,
    protectedEntries: initializers.reduce((a, x) => a + x.protected, 0), totalEntries: tensors.reduce((a, t) => a + t.data.length, 0),
  };
}

/** Sets the slice's entries of `data` (row-major, `s.dims`) to `scale`; returns how many entries it has. */
function fill(data: Float32Array | Uint8Array, s: OwnedSlice, scale: number): number {
  const inner = s.dims.slice(s.axis + 1).reduce((a, v) => a * v, 1);
  const size = s.dims[s.axis]!;
  const outer = data.length / (inner * size);
  for (let o = 0; o < outer; o++) data.fill(scale, (o * size + s.start) * inner, (o * size + s.end) * inner);
  return outer * (s.end - s.start) * inner;
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
 * MatMul whose node name carries the module path is that module's `.weight`, transposed. Others: no name.
 */
function pytorchNames(pm: ProtectModel, storedName: (n: string) => string): Map<string, { pytorch: string; transposed: boolean }> {
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
  return out;
}
