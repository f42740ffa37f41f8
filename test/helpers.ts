import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import type { F32 } from '../core/engine/runtime';

/** The repository root: the nearest folder above this (bundled) file with CircuitLens' package.json. */
export const ROOT = (() => {
  for (let d = __dirname; d !== path.dirname(d); d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'package.json')) && fs.existsSync(path.join(d, 'examples'))) return d;
  }
  throw new Error('repository root not found');
})();
export const EXAMPLES = path.join(ROOT, 'examples');
export const FIXTURES = path.join(ROOT, 'test', 'fixtures');

export interface RefTensor { shape: number[]; b64: string }
export interface Reference {
  model: string;
  config: { n_layers: number; n_heads: number; n_kv_heads: number; d_model: number; d_head: number; vocab: number; n_ctx: number; arch: string };
  training: { accuracy: number };
  prompts: { text: string; ids: number[] }[];
  clean: Record<string, RefTensor>;
  ablations: { nodes: string[]; kind: 'zero' | 'mean'; logits: RefTensor; hooks: Record<string, RefTensor> }[];
}

export function loadReference(name: string): Reference {
  return JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'references', `${name}.json`), 'utf8'));
}

export function decodeRef(t: RefTensor): F32 {
  const buf = Buffer.from(t.b64, 'base64');
  const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  return { dims: t.shape, data };
}

/** Max |a−b| over two tensors of equal shape; fails on a shape mismatch. */
export function maxAbsDiff(a: F32, b: F32): number {
  if (a.dims.join(',') !== b.dims.join(',')) throw new Error(`shape mismatch: [${a.dims}] vs [${b.dims}]`);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i]! - b.data[i]!));
  if (Number.isNaN(m)) throw new Error('NaN in comparison');
  return m;
}

/** Row `b` of a batch-first tensor, with a batch dimension of 1. */
export function row(t: F32, b: number): F32 {
  const w = t.data.length / t.dims[0]!;
  return { dims: [1, ...t.dims.slice(1)], data: t.data.subarray(b * w, (b + 1) * w) };
}

/** [B, H, T, Dh] → [B, T, H, Dh] (the engine's patch layout to hook_z's). */
export function toHookZ(t: F32): F32 {
  const [B, H, T, D] = t.dims as [number, number, number, number];
  const data = new Float32Array(t.data.length);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let s = 0; s < T; s++) {
    data.set(t.data.subarray(((b * H + h) * T + s) * D, ((b * H + h) * T + s + 1) * D), ((b * T + s) * H + h) * D);
  }
  return { dims: [B, T, H, D], data };
}

export const TOL = 1e-4;

/** The names in `dir`, sorted; none when it is not there. */
export const listing = (dir: string): string[] => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);

/** A port nothing listens on (yet). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const port = (s.address() as net.AddressInfo).port; s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

/** A copy of `b` with its middle byte flipped (other bytes of the same length). */
export function flipMiddle(b: Uint8Array): Buffer {
  const out = Buffer.from(b);
  out[out.length >> 1] ^= 0xff;
  return out;
}

export interface ModelServer { base: string; requests: string[]; close(): Promise<void> }

/**
 * An HTTP server on 127.0.0.1 (a free port) serving the files of `dir` by name: /NAME is the file, /bad/NAME the
 * file with its middle byte flipped (flipMiddle), anything else (no such file, a deeper path) 404. `requests`: the
 * URLs asked for, in order.
 */
export async function serveModelFolder(dir: string): Promise<ModelServer> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url!);
    const m = /^\/(bad\/)?([\w.-]+)$/.exec(decodeURIComponent(req.url!.split('?')[0]!));
    const file = m ? path.join(dir, m[2]!) : '';
    if (!m || !fs.existsSync(file)) { res.statusCode = 404; res.end('not found'); return; }
    if (m[1]) { res.end(flipMiddle(fs.readFileSync(file))); return; }
    fs.createReadStream(file).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    requests,
    close: () => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }),
  };
}
