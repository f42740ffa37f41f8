// Distributed runs, the pure part: a batch of engine calls cut into chunks of whole calls (the local run's own
// calls, so every row is computed in the batch it is computed in locally and the results are equal bit for bit),
// each chunk with an id derived from what it computes, so that adding it again, from a restarted coordinator, is
// the same job. Rows travel as packed float arrays (exact, NaN included). No Node here: the broker adapter is
// core/nodejs/broker.ts.
import type { Circuit } from '../../formats/circuit';
import type { NodeId } from '../../ids';
import type { MetricName } from '../../vocabulary';
import type { NodeGradientRow } from '../attribute/gradient';
import type { SetRow } from '../evaluate';
import type { PromptScore } from '../metrics';
import type { VariantSpec } from '../variant-measures';

/**
 * A batch of engine calls that workers can compute: ablation sets of nodes (evaluate.ts planSetCalls: the calls
 * themselves travel, with the sets they use), the sets of exact edge patching (edge-context.ts planEdgeCalls, which
 * a worker plans again), edge gradients (attribute/edges.ts planGradientCalls, EAP-IG steps, 1 = EAP), and one set
 * in the calls of the clean run, on a context without one (evaluate.ts singleSetRemotely: the sweep), and node
 * gradients (attribute/gradient.ts planNodeGradientCalls: the calls travel, their size set by the coordinator's
 * memory budget).
 */
export type RemoteWork =
  | { kind: 'sets'; sets: NodeId[][]; calls: SetRow[][] }
  | { kind: 'edge-patching' }
  | { kind: 'edge-gradient'; steps: number; metric: MetricName }
  | { kind: 'single-set'; set: NodeId[] }
  | { kind: 'node-gradient'; steps: number; metric: MetricName; calls: NodeGradientRow[][] };

export type RemoteKind = RemoteWork['kind'];

/**
 * One variant of the model's weights measured whole on a worker (distributed/variants.ts: prune's points,
 * sensitivity's rows): the variant as described, never its weights, and the circuit whose faithfulness is measured.
 */
export interface VariantWork { kind: 'variant'; variant: VariantSpec; circuit?: Circuit }

/** A contiguous range of a plan's engine calls [from, to), with its rows and its id. */
export interface Chunk {
  id: string;
  from: number;
  to: number;
  rows: number;
}

/** Rows per chunk when nothing else is asked: a few engine calls of the small demo models, one call of large ones. */
export const CHUNK_ROWS = 512;

/**
 * Cuts the calls (their row counts, in order) into chunks of whole calls: a chunk ends at the first call that
 * brings it to `targetRows` rows or more. `runKey` (the hash of everything the result depends on: the context and the work) and
 * the call range make the id; ids hold no ':' (BullMQ reserves it).
 */
export function planChunks(runKey: string, callRows: number[], targetRows = CHUNK_ROWS): Chunk[] {
  if (!/^[0-9a-z]+$/.test(runKey)) throw new Error(`run key must be lower-case hex or base-36, got "${runKey}"`);
  const chunks: Chunk[] = [];
  for (let from = 0; from < callRows.length;) {
    let to = from;
    let rows = 0;
    while (to < callRows.length && rows < targetRows) rows += callRows[to++]!;
    chunks.push({ id: `cl-${runKey}-${from}-${to}`, from, to, rows });
    from = to;
  }
  return chunks;
}

/**
 * Which prompts of the suite a context holds: the task prompts or the control prompts (the suite's contexts,
 * prepareSuite), or the task prompts with a value of a swept variable (sweep/sweep.ts sweepPrompts).
 */
export type PromptSelection = 'task' | 'control' | { sweep: string };

/** What the rows of a batch depend on besides the work itself; the context key hashes it. */
export interface ContextIdentity {
  /** The format of this material and of the jobs (bumped when either changes). */
  format: 2;
  version: string;
  modelSha256: string;
  suiteText: string;
  /** Which of the suite's prompts the context holds. */
  prompts: PromptSelection;
  ablation: string;
  runtime: string;
  maxRows: number;
}

/** The identity as one canonical string (keys in a fixed order), for hashing. */
export function identityText(id: object): string {
  const canon = (v: unknown): unknown => (Array.isArray(v) ? v.map(canon) : v && typeof v === 'object'
    ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])]))
    : v);
  return JSON.stringify(canon(id));
}

/** Numbers per row of a score (PromptScore) in packed rows. */
export const SCORE_WIDTH = 5;

export function packScore(out: Float64Array, at: number, s: PromptScore): void {
  out[at] = s.logitDiff; out[at + 1] = s.prob; out[at + 2] = s.correct ? 1 : 0; out[at + 3] = s.kl; out[at + 4] = s.top1;
}

function unpackScore(v: ArrayLike<number>, at: number): PromptScore {
  return { logitDiff: v[at]!, prob: v[at + 1]!, correct: v[at + 2] === 1, kl: v[at + 3]!, top1: v[at + 4]! };
}

/** Scores of a batch that workers computed, back in place: [set][prompt], from packed rows in the calls' row order. */
export function unpackScores(values: ArrayLike<number>, calls: { set: number; prompt: number }[][], sets: number): PromptScore[][] {
  const scores: PromptScore[][] = Array.from({ length: sets }, () => []);
  let row = 0;
  for (const call of calls) for (const r of call) scores[r.set]![r.prompt] = unpackScore(values, SCORE_WIDTH * row++);
  return scores;
}

/** A value as JSON keeps it exactly: the numbers JSON cannot hold (NaN, ±Infinity, −0) as {"$number": "NaN"}. */
export function toWire(v: unknown): unknown {
  if (typeof v === 'number') return Number.isFinite(v) && !Object.is(v, -0) ? v : { $number: Object.is(v, -0) ? '-0' : String(v) };
  if (Array.isArray(v)) return v.map(toWire);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toWire(x)]));
  return v;
}

const SPECIAL = new Map<string, number>([['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity], ['-0', -0]]);

/** What toWire wrote, as it was. */
export function fromWire(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(fromWire);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === '$number' && typeof o.$number === 'string' && SPECIAL.has(o.$number)) return SPECIAL.get(o.$number);
    return Object.fromEntries(keys.map((k) => [k, fromWire(o[k])]));
  }
  return v;
}

/** Rows of one chunk: `width` numbers per row, as float64 or (gradients, float32 already) float32. */
export interface PackedRows {
  width: number;
  type: 'f64' | 'f32';
  data: string;
}

export function packRows(values: Float64Array | Float32Array, width: number): PackedRows {
  return { width, type: values instanceof Float64Array ? 'f64' : 'f32', data: toBase64(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)) };
}

export function unpackRows(p: PackedRows): Float64Array | Float32Array {
  const bytes = fromBase64(p.data);
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return p.type === 'f64' ? new Float64Array(copy.buffer) : new Float32Array(copy.buffer);
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX = (() => { const t = new Int16Array(128).fill(-1); for (let i = 0; i < 64; i++) t[B64.charCodeAt(i)] = i; return t; })();

function toBase64(b: Uint8Array): string {
  const parts: string[] = [];
  let s = '';
  for (let i = 0; i < b.length; i += 3) {
    const n = (b[i]! << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    s += B64[(n >> 18) & 63]! + B64[(n >> 12) & 63]! + (i + 1 < b.length ? B64[(n >> 6) & 63]! : '=') + (i + 2 < b.length ? B64[n & 63]! : '=');
    if (s.length >= 8192) { parts.push(s); s = ''; }
  }
  parts.push(s);
  return parts.join('');
}

function fromBase64(s: string): Uint8Array {
  const clean = s.replace(/=+$/, '');
  const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
  let o = 0;
  for (let i = 0; i < clean.length; i += 4) {
    const v = (k: number) => {
      if (i + k >= clean.length) return 0;
      const c = clean.charCodeAt(i + k);
      const x = c < 128 ? B64_INDEX[c]! : -1;
      if (x < 0) throw new Error(`not base64 at ${i + k}`);
      return x;
    };
    const n = (v(0) << 18) | (v(1) << 12) | (v(2) << 6) | v(3);
    out[o++] = (n >> 16) & 255;
    if (i + 2 < clean.length) out[o++] = (n >> 8) & 255;
    if (i + 3 < clean.length) out[o++] = n & 255;
  }
  return out;
}
