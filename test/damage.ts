// Damaged copies of a model for bisect's tests: decode, change chosen initializers, encode to a temporary folder.
// `jitter` adds a little noise to every other float tensor too (as fine-tuning would), so that every tensor
// differs and bisect has to find the damaged ones among all of them.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DataType, decodeModel, encodeModel, floatData, type OnnxModel, type TensorProto } from '../core/onnx/model';

export interface Damage { tensor: string; kind: 'zero' | 'noise'; /** noise: its size relative to the tensor's RMS */ scale?: number }

/** A seeded Gaussian source (mulberry32 + Box–Muller): the same damage on every run. */
export function gaussian(seed: number): () => number {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

function setFloats(t: TensorProto, values: Float32Array): void {
  t.rawData = new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  t.floatData = [];
}

function addNoise(t: TensorProto, rel: number, next: () => number): void {
  const v = floatData(t)!;
  const rms = Math.sqrt(v.reduce((s, x) => s + x * x, 0) / Math.max(1, v.length)) || 1;
  setFloats(t, v.map((x) => x + rel * rms * next()));
}

/**
 * Writes `<dir>/<name>` (a damaged copy of `source`; `edit` may change its graph too) and copies `tokenizer.json`
 * from `withTokenizer` when given.
 */
export function damagedCopy(source: string, damage: Damage[], opts: { jitter?: number; seed?: number; dir?: string; name?: string; withTokenizer?: string; edit?: (m: OnnxModel) => void } = {}): string {
  const model: OnnxModel = decodeModel(fs.readFileSync(source), source);
  const next = gaussian(opts.seed ?? 1);
  const byName = new Map(model.graph!.initializer.map((t) => [t.name, t]));
  for (const d of damage) {
    const t = byName.get(d.tensor);
    if (!t || t.dataType !== DataType.FLOAT) throw new Error(`no float initializer ${d.tensor} in ${source}`);
    if (d.kind === 'zero') setFloats(t, new Float32Array(floatData(t)!.length));
    else addNoise(t, d.scale ?? 1, next);
  }
  if (opts.jitter) {
    const damaged = new Set(damage.map((d) => d.tensor));
    for (const t of model.graph!.initializer) if (t.dataType === DataType.FLOAT && !damaged.has(t.name) && floatData(t)) addNoise(t, opts.jitter, next);
  }
  opts.edit?.(model);
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cl-bisect-'));
  const out = path.join(dir, opts.name ?? 'bad.onnx');
  fs.writeFileSync(out, encodeModel(model));
  if (opts.withTokenizer) fs.copyFileSync(opts.withTokenizer, path.join(dir, 'tokenizer.json'));
  return out;
}
