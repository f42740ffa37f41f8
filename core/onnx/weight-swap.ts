// Models that differ only in their weights: which initializers two exports of one architecture hold differently,
// and a copy of one with some initializers taken from the other (bisect's candidate models, built in memory).
import { UserError } from '../errors';
import { EXTERNAL, floatData, num, type OnnxModel, type TensorProto } from './model';

/** The bytes of an initializer's values held in the model (raw data, or the typed field the exporter used). */
export function tensorBytes(t: TensorProto): Uint8Array {
  if (t.dataLocation === EXTERNAL) throw new Error(`initializer ${t.name} is external data; read it in first`);
  if (t.rawData && t.rawData.length) return t.rawData;
  if (t.floatData?.length) return new Uint8Array(Float32Array.from(t.floatData).buffer);
  if (t.int32Data?.length) return new Uint8Array(Int32Array.from(t.int32Data).buffer);
  if (t.int64Data?.length) return new Uint8Array(BigInt64Array.from(t.int64Data.map((v) => BigInt(num(v)))).buffer);
  return new Uint8Array(0);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const shapeText = (t: TensorProto) => `[${t.dims.map(num).join(', ')}] type ${t.dataType}`;

/**
 * The initializers `good` and `bad` hold differently, in `bad`'s order. Both must be one architecture: the same
 * operators in the same order and the same initializer names, shapes and types (a UserError says what differs).
 */
export function differingInitializers(good: OnnxModel, bad: OnnxModel, goodName: string, badName: string): string[] {
  const gi = new Map(good.graph!.initializer.map((t) => [t.name, t]));
  const bi = new Map(bad.graph!.initializer.map((t) => [t.name, t]));
  const problems: string[] = [];
  for (const name of gi.keys()) if (!bi.has(name)) problems.push(`"${name}" is in ${goodName} only`);
  for (const name of bi.keys()) if (!gi.has(name)) problems.push(`"${name}" is in ${badName} only`);
  for (const [name, b] of bi) {
    const g = gi.get(name);
    if (g && shapeText(g) !== shapeText(b)) problems.push(`"${name}" is ${shapeText(g)} in ${goodName} but ${shapeText(b)} in ${badName}`);
  }
  const ops = (m: OnnxModel) => m.graph!.node.map((n) => `${n.domain ? n.domain + '.' : ''}${n.opType}`);
  const go = ops(good);
  const bo = ops(bad);
  const at = go.findIndex((op, i) => op !== bo[i]);
  if (go.length !== bo.length || at >= 0) problems.push(`the graphs differ (${go.length} and ${bo.length} nodes${at >= 0 ? `; node ${at} is ${go[at]} in one and ${bo[at] ?? 'missing'} in the other` : ''})`);
  if (problems.length) {
    throw new UserError(`${goodName} and ${badName} are not the same architecture with different weights: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? `; and ${problems.length - 5} more` : ''}. Bisect copies tensors between two exports of one model (e.g. before and after fine-tuning).`);
  }
  return [...bi.values()].filter((b) => !equalBytes(tensorBytes(b), tensorBytes(gi.get(b.name)!))).map((b) => b.name);
}

/**
 * A copy of `model` with the named initializers replaced by `replacements` (same names). The copy's graph arrays
 * and nodes are its own, so the engine may rewrite them; tensors not replaced are shared with `model`.
 */
export function withInitializers(model: OnnxModel, replacements: readonly TensorProto[]): OnnxModel {
  const g = model.graph!;
  const by = new Map(replacements.map((t) => [t.name, t]));
  const known = new Set(g.initializer.map((t) => t.name));
  for (const name of by.keys()) if (!known.has(name)) throw new Error(`no initializer "${name}" to replace`);
  return {
    ...model,
    graph: {
      ...g, node: g.node.map((n) => ({ ...n })), initializer: g.initializer.map((t) => by.get(t.name) ?? t),
      input: [...g.input], output: [...g.output], valueInfo: [...g.valueInfo],
    },
  };
}

/**
 * How much a set of float32 initializers changed from `good` to `bad`: ‖bad − good‖ / ‖good‖ over all their values
 * (undefined when one is not float32). Cheap, and an order to try candidates in: no evaluation needed.
 */
export function relativeChange(good: readonly TensorProto[], bad: readonly TensorProto[]): number | undefined {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < good.length; i++) {
    const g = floatData(good[i]!);
    const b = floatData(bad[i]!);
    if (!g || !b || g.length !== b.length) return undefined;
    for (let k = 0; k < g.length; k++) { diff += (b[k]! - g[k]!) ** 2; norm += g[k]! ** 2; }
  }
  return norm > 0 ? Math.sqrt(diff / norm) : diff > 0 ? Infinity : 0;
}
