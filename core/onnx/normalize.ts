// Export variants brought to the plain form the rest of the engine reads, before hooks are looked for:
// - optimum's merged decoder (`decoder_model_merged.onnx`): one `If` on the bool input `use_cache_branch`, whose
//   branches are the decoder with and without past key/values. Runs here have no past, so the branch without
//   it is inlined and the flag input dropped (the past inputs stay; the engine feeds them empty).
// - weights stored in float16, bfloat16 or float64 and cast to float32 where used (a weights-only fp16 export):
//   the Casts of initializers are folded into float32 initializers, so hooks, slicing and gradients see plain weights.
// - weight-only quantization in QDQ form (DequantizeLinear of an int8/uint8 initializer with constant scale and
//   zero point): folded into float32 weights the same way; the model computes exactly what the export does.
// Activation quantization (DynamicQuantizeLinear → MatMulInteger, what onnxruntime's quantize_dynamic and
// transformers.js' `model_quantized.onnx` contain, or QLinear* kernels) is refused with the operators named: hook
// points would sit between integer kernels, and no ablation or gradient is defined on their integer tensors.
import { UserError } from '../errors';
import { DataType, EXTERNAL, num, type Graph, type OnnxModel, type OnnxNode, type TensorProto } from './model';

/** What normalizeExport changed, for `info` (empty when the export was already plain). */
export interface Normalized { notes: string[] }

const ACTIVATION_QUANT = new Set(['DynamicQuantizeLinear', 'MatMulInteger', 'QLinearMatMul', 'QLinearConv', 'ConvInteger', 'QLinearAdd', 'QLinearMul', 'QGemm']);

export function normalizeExport(model: OnnxModel, what: string): Normalized {
  const graph = model.graph!;
  const notes: string[] = [];
  const quant = graph.node.filter((n) => ACTIVATION_QUANT.has(n.opType));
  if (quant.length) {
    const ops = [...new Set(quant.map((n) => n.opType))].join(', ');
    throw new UserError(
      `${what} is quantized with integer activations (${ops}, e.g. node "${quant[0]!.name || quant[0]!.output[0]}"): hooks, ablation and gradients ` +
        `need float activations between the layers, and here they are integer tensors inside quantized kernels. Use the float export ` +
        `(model.onnx rather than model_quantized.onnx); weight-only quantization (DequantizeLinear of constant weights) and fp16 weights load.`,
    );
  }
  if (inlineMergedDecoder(graph)) notes.push('merged decoder: the branch without past key/values inlined');
  const folded = foldConstantWeights(graph, what);
  if (folded.length) notes.push(`weights stored as ${folded.join(', ')} converted to float32 at load`);
  return { notes };
}

/** Replaces a top-level `If` whose condition is a bool graph input (optimum's use_cache_branch) by its else branch. */
function inlineMergedDecoder(graph: Graph): boolean {
  const boolInputs = new Set(graph.input.filter((v) => v.type?.tensorType?.elemType === 9 /* BOOL */).map((v) => v.name));
  const at = graph.node.findIndex((n) => n.opType === 'If' && boolInputs.has(n.input[0]!));
  if (at < 0) return false;
  const node = graph.node[at]!;
  const branch = node.attribute.find((a) => a.name === 'else_branch')?.g;
  if (!branch) return false;
  const outer = new Set([...graph.node.flatMap((n) => n.output), ...graph.initializer.map((t) => t.name), ...graph.input.map((v) => v.name)]);
  // Names the branch defines that the outer graph already has are renamed (optimum's branches are separate exports).
  const rename = new Map<string, string>();
  for (const t of [...branch.initializer.map((x) => x.name), ...branch.node.flatMap((n) => n.output)]) {
    if (t && outer.has(t)) rename.set(t, `${t}@no_past`);
  }
  const r = (t: string) => rename.get(t) ?? t;
  const nodes: OnnxNode[] = branch.node.map((n) => ({ ...n, input: n.input.map(r), output: n.output.map(r) }));
  // The If's outputs are the branch's outputs by position.
  node.output.forEach((o, i) => {
    const src = r(branch.output[i]!.name);
    if (o) nodes.push({ input: [src], output: [o], name: `circuitlens/merged/${o}`, opType: 'Identity', domain: '', attribute: [] });
  });
  graph.node.splice(at, 1, ...nodes);
  graph.initializer.push(...branch.initializer.map((t) => ({ ...t, name: r(t.name) })));
  const cond = node.input[0]!;
  if (!graph.node.some((n) => n.input.includes(cond))) graph.input = graph.input.filter((v) => v.name !== cond);
  return true;
}

/** Folds Cast(initializer) to float32 and DequantizeLinear(initializer, scale, zero point) into float32 initializers. */
function foldConstantWeights(graph: Graph, what: string): string[] {
  const inits = new Map(graph.initializer.map((t) => [t.name, t]));
  const kinds = new Set<string>();
  const replaced = new Map<number, TensorProto>();
  graph.node.forEach((n, i) => {
    const x = inits.get(n.input[0] ?? '');
    if (!x || x.dataLocation === EXTERNAL) return;
    if (n.opType === 'Cast' && num(n.attribute.find((a) => a.name === 'to')?.i) === DataType.FLOAT && x.dataType !== DataType.FLOAT) {
      const values = floatValues(x);
      if (!values) return;
      kinds.add(TYPE_NAMES[x.dataType] ?? `type ${x.dataType}`);
      replaced.set(i, floatTensor(n.output[0]!, x.dims.map(num), values));
    } else if (n.opType === 'DequantizeLinear') {
      const scale = inits.get(n.input[1] ?? '');
      const zero = n.input[2] ? inits.get(n.input[2]) : undefined;
      if (!scale || (n.input[2] && !zero)) return;
      const q = intValuesOf(x);
      const s = floatValues(scale);
      const z = zero ? intValuesOf(zero) : undefined;
      if (!q || !s || (zero && !z)) return;
      const dims = x.dims.map(num);
      const axisAttr = n.attribute.find((a) => a.name === 'axis');
      const axis = ((axisAttr ? num(axisAttr.i) : 1) + dims.length) % Math.max(1, dims.length);
      const out = new Float32Array(q.length);
      if (s.length === 1) {
        for (let k = 0; k < q.length; k++) out[k] = (q[k]! - (z?.[0] ?? 0)) * s[0]!;
      } else {
        if (n.attribute.some((a) => a.name === 'block_size' && num(a.i) > 0)) {
          throw new UserError(`${what}: blocked DequantizeLinear (node "${n.name}") is not supported; export the weights in float or per-channel int8`);
        }
        const inner = dims.slice(axis + 1).reduce((a, v) => a * v, 1);
        const size = dims[axis]!;
        for (let k = 0; k < q.length; k++) {
          const c = Math.floor(k / inner) % size;
          out[k] = (q[k]! - (z?.[c] ?? 0)) * s[c]!;
        }
      }
      kinds.add(`${TYPE_NAMES[x.dataType] ?? `type ${x.dataType}`} with DequantizeLinear`);
      replaced.set(i, floatTensor(n.output[0]!, dims, out));
    }
  });
  if (!replaced.size) return [];
  graph.node = graph.node.filter((_, i) => !replaced.has(i));
  graph.initializer.push(...replaced.values());
  // Initializers nothing reads any more (the fp16 originals) are dropped.
  const used = new Set(graph.node.flatMap((n) => n.input));
  const outputs = new Set(graph.output.map((o) => o.name));
  graph.initializer = graph.initializer.filter((t) => used.has(t.name) || outputs.has(t.name));
  return [...kinds];
}

const TYPE_NAMES: Record<number, string> = { [DataType.FLOAT16]: 'float16', [DataType.BFLOAT16]: 'bfloat16', [DataType.DOUBLE]: 'float64', 2: 'uint8', 3: 'int8' };

function floatTensor(name: string, dims: number[], values: Float32Array): TensorProto {
  return { name, dims, dataType: DataType.FLOAT, rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) };
}

/** The values of a float16, bfloat16, float64 or float32 tensor as float32 (undefined for other types). */
function floatValues(t: TensorProto): Float32Array | undefined {
  const n = t.dims.map(num).reduce((a, v) => a * v, 1);
  const raw = t.rawData && t.rawData.length ? t.rawData : undefined;
  const view = raw ? new DataView(raw.buffer, raw.byteOffset, raw.byteLength) : undefined;
  const out = new Float32Array(n);
  switch (t.dataType) {
    case DataType.FLOAT:
      if (view) for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      else out.set(t.floatData ?? []);
      return out;
    case DataType.DOUBLE:
      if (!view) return undefined;
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      return out;
    case DataType.FLOAT16: case DataType.BFLOAT16: {
      // Stored as raw bytes, or (without raw data) one 16-bit value per int32_data entry.
      const bits = (i: number) => (view ? view.getUint16(2 * i, true) : (t.int32Data?.[i] ?? 0));
      for (let i = 0; i < n; i++) out[i] = t.dataType === DataType.FLOAT16 ? halfToFloat(bits(i)) : bf16ToFloat(bits(i));
      return out;
    }
    default:
      return undefined;
  }
}

function intValuesOf(t: TensorProto): Int32Array | undefined {
  const n = t.dims.map(num).reduce((a, v) => a * v, 1);
  const raw = t.rawData && t.rawData.length ? t.rawData : undefined;
  if (t.dataType === 2 /* UINT8 */ || t.dataType === 3 /* INT8 */) {
    if (raw) return Int32Array.from({ length: n }, (_, i) => (t.dataType === 3 ? (raw[i]! << 24) >> 24 : raw[i]!));
    return t.int32Data ? Int32Array.from(t.int32Data) : undefined;
  }
  if (t.dataType === DataType.INT32) {
    if (raw) return new Int32Array(raw.slice().buffer, 0, n);
    return t.int32Data ? Int32Array.from(t.int32Data) : undefined;
  }
  return undefined;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

function bf16ToFloat(b: number): number {
  return new Float32Array(new Uint32Array([b << 16]).buffer)[0]!;
}


/**
 * For WebGPU: Sin and Cos computed with float32 arithmetic instead of WGSL's `sin`/`cos`, which the WGSL spec
 * bounds only to 2^-11 on [-π, π] and not at all outside it (SwiftShader: ~2e-4 off; rotary angles reach
 * position × frequency, thousands of radians at long contexts). The angle is reduced exactly (Cody–Waite: 2π
 * split into parts whose products with the period count are exact below 2^12 periods, ~25,000 rad), then a
 * Taylor polynomial of degree 19/20 on [-π, π] (truncation < 1e-9; float32 rounding ~1e-6). Returns how many
 * nodes were replaced.
 */
export function preciseTrigForWebGpu(model: OnnxModel): number {
  const graph = model.graph!;
  const trig = graph.node.filter((n) => (n.opType === 'Sin' || n.opType === 'Cos') && (!n.domain || n.domain === 'ai.onnx'));
  if (!trig.length) return 0;
  const twoPi = 2 * Math.PI;
  const c1 = 6.28125; // 8 significant bits
  const rest = twoPi - c1;
  const c2 = Math.round(rest * 2 ** 21) / 2 ** 21; // 12 significant bits
  const c3 = Math.fround(rest - c2);
  const consts = new Map<string, number>();
  const k = (v: number) => {
    const name = `circuitlens.trig.c${consts.size}`;
    consts.set(name, v);
    return name;
  };
  const [inv2pi, half, n1, n2, n3] = [k(1 / twoPi), k(0.5), k(c1), k(c2), k(c3)];
  const factorial = (n: number): number => (n <= 1 ? 1 : n * factorial(n - 1));
  const sinCoef = Array.from({ length: 10 }, (_, i) => k((-1) ** i / factorial(2 * i + 1)));
  const cosCoef = Array.from({ length: 11 }, (_, i) => k((-1) ** i / factorial(2 * i)));
  const out: OnnxNode[] = [];
  for (const n of graph.node) {
    if (!trig.includes(n)) { out.push(n); continue; }
    const p = `circuitlens.trig.${n.output[0]}`;
    let uid = 0;
    const op = (type: string, inputs: string[], output = `${p}.${uid++}`) => {
      out.push({ input: inputs, output: [output], name: `${p}/${type}${uid}`, opType: type, domain: '', attribute: [] });
      return output;
    };
    const x = n.input[0]!;
    const periods = op('Floor', [op('Add', [op('Mul', [x, inv2pi]), half])]);
    const r = op('Sub', [op('Sub', [op('Sub', [x, op('Mul', [periods, n1])]), op('Mul', [periods, n2])]), op('Mul', [periods, n3])]);
    const r2 = op('Mul', [r, r]);
    const coef = n.opType === 'Sin' ? sinCoef : cosCoef;
    let acc = coef[coef.length - 1]!;
    for (let i = coef.length - 2; i >= 0; i--) acc = op('Add', [op('Mul', [acc, r2]), coef[i]!]);
    if (n.opType === 'Sin') op('Mul', [acc, r], n.output[0]!);
    else op('Identity', [acc], n.output[0]!);
  }
  graph.node = out;
  for (const [name, v] of consts) graph.initializer.push(floatTensor(name, [], Float32Array.of(v)));
  return trig.length;
}
