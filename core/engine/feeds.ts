// What the engine's sessions are fed: token ids and the inputs exports add, the ablation inputs of node runs
// (core/onnx/instrument.ts IN) and the masks and ablated values of edge runs (core/onnx/edges.ts).
import { UserError } from '../errors';
import { checkNodeInModel, parseNodeId } from '../ids';
import type { ModelStructure } from '../onnx/detect';
import { EDGE, type EdgeLayout } from '../onnx/edge-layout';
import { IN } from '../onnx/instrument';
import { TEMPERATURE } from '../onnx/temperature';
import type { AblationKind } from '../vocabulary';
import { size, type F32, type Feed } from './runtime';
import type { EdgeValues, HeadTemperature, ModelInfo, RunRequest } from './types';

/** Token ids, the inputs Hugging Face exports add, and neutral ablation inputs: what every run feeds. */
export function baseFeeds(structure: ModelStructure, ids: number[][]): Record<string, Feed> {
  const B = ids.length;
  const T = ids[0]!.length;
  return {
    [structure.inputIds]: { type: 'int64', dims: [B, T], data: int64Of(ids, B * T) },
    ...extraFeeds(structure.extraInputs, B, T),
    ...neutralFeeds(structure.layers.length),
  };
}

/** Ablation inputs that change nothing, broadcast over any batch. */
export function neutralFeeds(layers: number): Record<string, Feed> {
  const feeds: Record<string, Feed> = {};
  for (let l = 0; l < layers; l++) {
    feeds[IN.zMask(l)] = f32([1, 1], new Float32Array([1]));
    feeds[IN.zAdd(l)] = f32([1, 1, 1, 1], new Float32Array(1));
    feeds[IN.mlpMask(l)] = f32([1], new Float32Array([1]));
    feeds[IN.mlpAdd(l)] = f32([1, 1, 1], new Float32Array(1));
  }
  return feeds;
}

/** Inputs of Hugging Face exports: attention_mask (all ones), position_ids (0..T-1), empty past key/values. */
export function extraFeeds(extraInputs: ModelStructure['extraInputs'], B: number, T: number): Record<string, Feed> {
  const feeds: Record<string, Feed> = {};
  for (const v of extraInputs) {
    const elem = v.type?.tensorType?.elemType;
    const name = v.name;
    if (/attention_mask/.test(name)) feeds[name] = typed(elem, [B, T], () => 1, name);
    else if (/position_ids/.test(name)) feeds[name] = typed(elem, [B, T], (i) => i % T, name);
    else if (/past/.test(name)) {
      // [batch, kv_heads, past_seq, head_dim]: batch from the prompt, an empty past; the rest must be fixed.
      const dims = (v.type?.tensorType?.shape?.dim ?? []).map((d, i) => {
        const fixed = d.dimValue !== undefined && d.dimValue !== null ? Number(d.dimValue) : 0;
        if (fixed > 0) return fixed;
        if (i === 0) return B;
        if (i === 2) return 0;
        throw new UserError(`input "${name}" has a symbolic dimension ${i} (${d.dimParam ?? '?'}); CircuitLens fills past key/values as [batch, heads, 0, head_dim] and needs the other sizes fixed in the export`);
      });
      feeds[name] = typed(elem, dims, () => 0, name);
    } else {
      throw new UserError(`the model has an input "${name}" that CircuitLens does not know how to fill (it fills input_ids, attention_mask, position_ids and past key/values)`);
    }
  }
  return feeds;
}

/** The ablation inputs of a node run: per batch row, which heads and MLPs are replaced, and by what. */
export function ablationFeeds(info: ModelInfo, req: Pick<RunRequest, 'ablations' | 'means' | 'resample'>, B: number, T: number): Record<string, Feed> {
  const { layers, heads, dHead, dModel } = info;
  const feeds: Record<string, Feed> = {};
  // Which (row, layer, head) and (row, layer) are ablated, and with what.
  const headOff = Array.from({ length: layers }, () => new Uint8Array(B * heads));
  const mlpOff = Array.from({ length: layers }, () => new Uint8Array(B));
  const kinds = new Set<AblationKind>();
  req.ablations?.forEach((a, b) => {
    if (!a || a.nodes.length === 0) return;
    kinds.add(a.kind);
    for (const id of a.nodes) {
      const n = parseNodeId(id);
      checkNodeInModel(id, n, info);
      if (n.kind === 'head') headOff[n.layer]![b * heads + n.head] = 1;
      else if (n.kind === 'mlp') mlpOff[n.layer]![b] = 1;
      else throw new UserError(`node "${id}" cannot be ablated (only heads a<L>.h<H> and MLPs m<L>)`);
    }
  });
  if (kinds.has('mean') && !req.means) throw new Error('mean ablation needs means');
  if (kinds.has('resample') && !req.resample) throw new UserError('resample ablation needs corrupted prompts (a `corrupted` text for each prompt)');
  const kindOf = (b: number) => req.ablations?.[b]?.kind ?? 'zero';

  for (let l = 0; l < layers; l++) {
    const hOff = headOff[l]!;
    if (!hOff.some((x) => x)) {
      feeds[IN.zMask(l)] = f32([1, 1], new Float32Array([1]));
      feeds[IN.zAdd(l)] = f32([1, 1, 1, 1], new Float32Array(1));
    } else {
      feeds[IN.zMask(l)] = f32([B, heads], Float32Array.from(hOff, (x) => 1 - x));
      const needsT = [...Array(B).keys()].some((b) => kindOf(b) === 'resample' && hOff.subarray(b * heads, (b + 1) * heads).some((x) => x));
      const Tz = needsT ? T : 1;
      const add = new Float32Array(B * Tz * heads * dHead);
      for (let b = 0; b < B; b++) {
        const kind = kindOf(b);
        if (kind === 'zero') continue;
        for (let h = 0; h < heads; h++) {
          if (!hOff[b * heads + h]) continue;
          for (let t = 0; t < Tz; t++) {
            const dst = ((b * Tz + t) * heads + h) * dHead;
            if (kind === 'mean') add.set(req.means!.z[l]!.subarray(h * dHead, (h + 1) * dHead), dst);
            else add.set(sourceRow(req.resample!.z[l]!, b, T, t, heads * dHead).subarray(h * dHead, (h + 1) * dHead), dst);
          }
        }
      }
      feeds[IN.zAdd(l)] = f32([B, Tz, heads, dHead], add);
    }
    const mOff = mlpOff[l]!;
    if (!mOff.some((x) => x)) {
      feeds[IN.mlpMask(l)] = f32([1], new Float32Array([1]));
      feeds[IN.mlpAdd(l)] = f32([1, 1, 1], new Float32Array(1));
    } else {
      feeds[IN.mlpMask(l)] = f32([B], Float32Array.from(mOff, (x) => 1 - x));
      const needsT = [...Array(B).keys()].some((b) => kindOf(b) === 'resample' && mOff[b]);
      const Tm = needsT ? T : 1;
      const add = new Float32Array(B * Tm * dModel);
      for (let b = 0; b < B; b++) {
        if (!mOff[b] || kindOf(b) === 'zero') continue;
        for (let t = 0; t < Tm; t++) {
          const src = kindOf(b) === 'mean' ? req.means!.mlp[l]! : sourceRow(req.resample!.mlp[l]!, b, T, t, dModel);
          add.set(src, (b * Tm + t) * dModel);
        }
      }
      feeds[IN.mlpAdd(l)] = f32([B, Tm, dModel], add);
    }
  }
  return feeds;
}

/**
 * The temperature inputs (core/onnx/temperature.ts TEMPERATURE) of a run: per layer [B, heads] with each row's τ
 * for the heads it sets and 1 elsewhere, or [1, 1] of 1 when no row sets a head of that layer.
 */
export function temperatureFeeds(info: ModelInfo, rows: (HeadTemperature[] | undefined)[] | undefined, B: number): Record<string, Feed> {
  const { layers, heads } = info;
  if (rows && rows.length !== B) throw new Error('temperatures must have one entry per batch row');
  const tau = Array.from({ length: layers }, () => undefined as Float32Array | undefined);
  rows?.forEach((row, b) => {
    for (const { head, temperature } of row ?? []) {
      const n = parseNodeId(head);
      checkNodeInModel(head, n, info);
      if (n.kind !== 'head') throw new UserError(`"${head}" is not an attention head: temperatures apply to heads a<L>.h<H>`);
      if (!Number.isFinite(temperature) || temperature <= 0) throw new UserError(`the temperature of ${head} must be a positive number (got ${temperature})`);
      const t = (tau[n.layer] ??= new Float32Array(B * heads).fill(1));
      t[b * heads + n.head] = temperature;
    }
  });
  const feeds: Record<string, Feed> = {};
  tau.forEach((t, l) => { feeds[TEMPERATURE(l)] = t ? f32([B, heads], t) : f32([1, 1], new Float32Array([1])); });
  return feeds;
}

export function checkEdgeWeightRows(B: number, weights: unknown[] | undefined): void {
  if (weights && weights.length !== B) throw new Error('edge weights must have one entry per batch row');
}

/**
 * Mask inputs from per-row edge weights (one entry per batch row, or none). They are [1, rows, cols] when no row
 * ablates anything, unless gradients per row are wanted (`perRow`).
 */
export function maskFeeds(layout: EdgeLayout, B: number, weights: (Float32Array | undefined)[] | undefined, perRow = false): Record<string, Feed> {
  checkEdgeWeightRows(B, weights);
  const feeds: Record<string, Feed> = {};
  const any = perRow || weights?.some((w) => w && w.some((x) => x !== 0));
  const data = new Map<string, Float32Array>();
  for (const m of layout.masks) {
    data.set(m.name, new Float32Array((any ? B : 1) * m.rows * m.cols));
    feeds[m.name] = f32([any ? B : 1, m.rows, m.cols], data.get(m.name)!);
  }
  if (any && weights) {
    const E = layout.edges.length;
    const maskOf = new Map(layout.masks.map((m) => [m.name, m]));
    weights.forEach((w, b) => {
      if (!w) return;
      if (w.length !== E) throw new Error(`edge weights have ${w.length} entries, the model has ${E} edges`);
      for (let e = 0; e < E; e++) {
        if (w[e] === 0) continue;
        const slot = layout.edges[e]!;
        const m = maskOf.get(slot.input)!;
        data.get(slot.input)![(b * m.rows + slot.row) * m.cols + slot.col] = w[e]!;
      }
    });
  }
  return feeds;
}

/** The ablated values every edge graph reads (zeros when not given). */
export function ablatedFeeds(shape: Pick<ModelInfo, 'layers' | 'heads' | 'dModel'>, ablated: EdgeValues | undefined): Record<string, Feed> {
  const { layers, heads, dModel } = shape;
  const feeds: Record<string, Feed> = {};
  feeds[EDGE.corrInput] = ablated ? f32(ablated.input.dims, ablated.input.data) : f32([1, 1, dModel], new Float32Array(dModel));
  for (let l = 0; l < layers; l++) {
    feeds[EDGE.corrHeads(l)] = ablated ? f32(ablated.heads[l]!.dims, ablated.heads[l]!.data) : f32([1, 1, heads, dModel], new Float32Array(heads * dModel));
    feeds[EDGE.corrMlp(l)] = ablated ? f32(ablated.mlp[l]!.dims, ablated.mlp[l]!.data) : f32([1, 1, dModel], new Float32Array(dModel));
  }
  return feeds;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Rows of small integers (token ids, positions) as int64, `n` values in all. On little-endian machines it writes
 * each value's two 32-bit halves instead of making a BigInt per value (a sixth of a demo sweep's JavaScript time).
 */
export function int64Of(rows: number[][], n: number): BigInt64Array {
  const out = new BigInt64Array(n);
  let i = 0;
  if (LITTLE_ENDIAN && rows.every((r) => r.every((v) => Number.isInteger(v) && Math.abs(v) < 2 ** 31))) {
    const words = new Int32Array(out.buffer);
    for (const r of rows) for (const v of r) { words[2 * i] = v; words[2 * i + 1] = v < 0 ? -1 : 0; i++; }
  } else {
    for (const r of rows) for (const v of r) out[i++] = BigInt(v);
  }
  return out;
}

export function f32(dims: number[], data: Float32Array): Feed {
  return { type: 'float32', dims, data };
}

function typed(elem: number | undefined, dims: number[], fill: (i: number) => number, name: string): Feed {
  const n = size(dims);
  switch (elem) {
    case 7: return { type: 'int64', dims, data: int64Of([Array.from({ length: n }, (_, i) => fill(i))], n) };
    case 6: return { type: 'int32', dims, data: Int32Array.from({ length: n }, (_, i) => fill(i)) };
    case 1: return { type: 'float32', dims, data: Float32Array.from({ length: n }, (_, i) => fill(i)) };
    case 9: return { type: 'bool', dims, data: Uint8Array.from({ length: n }, (_, i) => fill(i)) };
    default: throw new UserError(`input "${name}" has element type ${elem}, which CircuitLens cannot fill (float16 models are not supported yet)`);
  }
}

/** Row `t` of batch row `b` of a [B, T, ...] activation whose trailing size is `width`. */
function sourceRow(src: F32, b: number, T: number, t: number, width: number): Float32Array {
  if (src.dims[1] !== T) throw new UserError(`corrupted prompt ${b + 1} has ${src.dims[1]} tokens but the prompt has ${T}; resample ablation needs equal lengths`);
  const off = (b * T + t) * width;
  return src.data.subarray(off, off + width);
}

/** Adds each `acc.length`-wide row of `data` into `acc` (sums over batch and positions, for means). */
export function accumulateRows(data: Float32Array, acc: Float64Array): void {
  const w = acc.length;
  for (let i = 0; i < data.length; i += w) for (let j = 0; j < w; j++) acc[j]! += data[i + j]!;
}

/** Groups prompts by token length (the engine batches rows of one length), keeping each prompt's index. */
export function groupByLength(prompts: number[][]): { index: number; ids: number[] }[][] {
  const groups = new Map<number, { index: number; ids: number[] }[]>();
  prompts.forEach((ids, index) => {
    const g = groups.get(ids.length);
    if (g) g.push({ index, ids }); else groups.set(ids.length, [{ index, ids }]);
  });
  return [...groups.values()];
}
