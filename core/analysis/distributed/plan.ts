// Distributed runs, the pure part: a batched analysis cut into chunks of whole engine calls (the local run's own
// calls, so every row is computed in the batch it is computed in locally and the results are equal bit for bit),
// each chunk with an id derived from what it computes, so that adding it again, from a restarted coordinator, is
// the same job. Rows travel as packed float arrays (exact, NaN included). No Node here: the broker adapter is
// cli/broker.ts.

/** The batched analyses a run can fan out (see distributed/run.ts). */
export type DistributedKind = 'node-patching' | 'edge-patching' | 'edge-gradient';

export interface DistributedAnalysis {
  kind: DistributedKind;
  /** edge-gradient: EAP-IG steps (1 = EAP). */
  steps: number;
}

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
 * brings it to `targetRows` rows or more. `runKey` (the hash of everything the result depends on, runKey()) and
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

/** What a distributed result depends on; runKey hashes it. */
export interface RunIdentity {
  /** The format of this material and of the jobs (bumped when either changes). */
  format: 1;
  version: string;
  modelSha256: string;
  suiteText: string;
  analysis: DistributedAnalysis;
  ablation: string;
  runtime: string;
  maxRows: number;
  targetRows: number;
}

/** The identity as one canonical string (keys in a fixed order), for hashing. */
export function identityText(id: RunIdentity): string {
  const canon = (v: unknown): unknown => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon((v as Record<string, unknown>)[k])]))
    : v);
  return JSON.stringify(canon(id));
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
