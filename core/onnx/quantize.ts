// Fake quantization of weight matrices (quantize, then dequantize back to float32), the way post-training
// round-to-nearest (RTN) weight quantization changes a model's numbers without changing its graph:
// - int8 / int4: symmetric, per output channel (weight-scope.ts says which axis that is from how the matrix is read)
//   or per group of G consecutive input entries of a channel: scale s = max|w| / q (q = 127 or 7, in float32),
//   w ↦ round(w / s)·s with round half to even and the integer clamped to [−q, q]. A group of zeros stays zero.
// - fp16: each entry rounded to the nearest float16 (ties to even; beyond 65504 it is ±∞, as a cast would make it).
// Every step is a float32 operation (products and quotients of float32 values rounded once), so an independent
// NumPy/PyTorch implementation gets the same bits (scripts/quantize_check.py checks it).
// Biases and norm gains are vectors and are in no scope (weight-scope.ts): they stay float32, as in common practice.
// Entries outside a scope's selection keep their values; those inside take the value they have when the whole
// matrix is quantized (a channel's scale is its own, whichever of its entries are selected).
import { UserError } from '../errors';
import { DataType, floatData, type OnnxModel, type TensorProto } from './model';
import type { ScopedTensor } from './weight-scope';

export type QuantScheme = 'int8' | 'int4' | 'fp16';
export const QUANT_SCHEMES: readonly QuantScheme[] = ['int8', 'int4', 'fp16'];
const QMAX: Record<'int8' | 'int4', number> = { int8: 127, int4: 7 };

export interface QuantizeOptions {
  scheme: QuantScheme;
  /** Input entries per scale (int8/int4); undefined: one scale per output channel. */
  groupSize?: number;
}

/** Round half to even (NumPy's and PyTorch's round), a zero keeping the sign of `v` as theirs does. */
export function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  const r = d < 0.5 ? f : d > 0.5 ? f + 1 : f % 2 === 0 ? f : f + 1;
  return r === 0 && (v < 0 || Object.is(v, -0)) ? -0 : r;
}

/** `x` (a float32 value) rounded to the nearest float16, as a number. */
export function roundToHalf(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, -14) - 10);
  const r = roundHalfEven(a / ulp) * ulp;
  return Math.sign(x) * (r > 65504 ? Infinity : r);
}

/**
 * The fake-quantized values of a float32 tensor `values` of shape `dims` whose output channels run along
 * `channelAxis`. Per channel: every other entry of the channel shares its scale; with a group size (2-D only), each
 * run of `groupSize` consecutive entries along the other axis does (the last run of a channel may be shorter).
 */
export function fakeQuantize(values: Float32Array, dims: readonly number[], channelAxis: number, opts: QuantizeOptions): Float32Array {
  const out = new Float32Array(values.length);
  if (opts.scheme === 'fp16') {
    for (let i = 0; i < values.length; i++) out[i] = roundToHalf(values[i]!);
    return out;
  }
  const q = QMAX[opts.scheme];
  const C = dims[channelAxis]!;
  const inner = dims.slice(channelAxis + 1).reduce((a, v) => a * v, 1);
  const outer = values.length / (C * inner);
  // A channel's entries, in order along the input: (o, c, i) for o < outer, i < inner.
  const index = (c: number, k: number) => (Math.floor(k / inner) * C + c) * inner + (k % inner);
  const perChannel = outer * inner;
  const G = opts.groupSize ?? perChannel;
  if (opts.groupSize !== undefined && dims.length !== 2) throw new UserError(`--group-size applies to 2-D weight matrices; this one is [${dims.join(', ')}]`);
  for (let c = 0; c < C; c++) {
    for (let k0 = 0; k0 < perChannel; k0 += G) {
      const k1 = Math.min(k0 + G, perChannel);
      let absmax = 0;
      for (let k = k0; k < k1; k++) absmax = Math.max(absmax, Math.abs(values[index(c, k)]!));
      const s = Math.fround(absmax / q);
      for (let k = k0; k < k1; k++) {
        const i = index(c, k);
        if (s === 0) { out[i] = 0; continue; }
        const n = Math.min(q, Math.max(-q, roundHalfEven(Math.fround(values[i]! / s))));
        out[i] = n * s;
      }
    }
  }
  return out;
}

export interface QuantizedWeights {
  /** Replacement initializers (same names, float32). */
  tensors: TensorProto[];
  /** Entries changed in scope (quantized), over all tensors. */
  entries: number;
  /** ‖W_q − W‖ / ‖W‖ over the entries in scope. */
  relativeError: number;
}

/** The scoped matrices of `model`, fake-quantized: initializers to put in place of the model's own. */
export function quantizeWeights(model: OnnxModel, scoped: readonly ScopedTensor[], opts: QuantizeOptions): QuantizedWeights {
  if (opts.groupSize !== undefined && !(Number.isInteger(opts.groupSize) && opts.groupSize >= 1)) throw new UserError(`--group-size must be a whole number ≥ 1 (got ${opts.groupSize})`);
  if (opts.groupSize !== undefined && opts.scheme === 'fp16') throw new UserError('--group-size applies to int8 and int4 (fp16 rounds each entry on its own)');
  const inits = new Map(model.graph!.initializer.map((t) => [t.name, t]));
  const tensors: TensorProto[] = [];
  let entries = 0;
  let diff = 0;
  let norm = 0;
  for (const s of scoped) {
    const t = inits.get(s.tensor);
    const w = t && t.dataType === DataType.FLOAT ? floatData(t) : undefined;
    if (!w) throw new Error(`quantize: "${s.tensor}" is not a float32 initializer`);
    const dq = fakeQuantize(w, s.dims, s.use.channelAxis, opts);
    if (s.entries) for (let i = 0; i < w.length; i++) if (!s.entries[i]) dq[i] = w[i]!;
    for (let i = 0; i < w.length; i++) {
      if (s.entries && !s.entries[i]) continue;
      diff += (dq[i]! - w[i]!) ** 2;
      norm += w[i]! ** 2;
    }
    entries += s.count;
    tensors.push({ name: t!.name, dims: t!.dims, dataType: DataType.FLOAT, rawData: new Uint8Array(dq.buffer) });
  }
  return { tensors, entries, relativeError: norm > 0 ? Math.sqrt(diff / norm) : 0 };
}
