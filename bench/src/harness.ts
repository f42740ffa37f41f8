// Timing helpers and the PyTorch reference client shared by the benchmarks. Nothing here asserts a time.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { seededRandom } from '../../core/analysis/sweep/stats';

export const ROOT = path.resolve(__dirname, '..', '..');
export const PYTHON = process.env.BENCH_PYTHON ?? '/usr/bin/python3';

/** Debian's packages that give /usr/bin/python3 what the PyTorch reference and the model scripts import. */
export const TORCH_PACKAGES = 'python3-torch python3-onnx libopenblas0-openmp';

/** Why PYTHON cannot run the PyTorch side (it must import torch and onnx), or undefined when it can. */
export function torchMissing(): string | undefined {
  const r = spawnSync(PYTHON, ['-c', 'import torch, onnx'], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status === 0) return undefined;
  if (r.error) return r.error.message;
  return r.stderr.trim().split('\n').pop() || `exit code ${r.status}`;
}

export interface Stats { median: number; min: number; max: number; n: number; samples: number[] }

export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  const median = n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  return { median, min: s[0] ?? NaN, max: s[n - 1] ?? NaN, n, samples: samples.map((x) => round(x, 3)) };
}

export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

/** A contender: one timed repetition, returning its milliseconds (measured where the work runs). */
export interface Contender { name: string; run(): Promise<number> }

/**
 * Runs the contenders alternately (after one untimed warm-up each, unless the caller already ran each), rotating which goes first in each round so
 * neither always follows the other; other processes on the machine make single timings noisy, so callers
 * report medians.
 */
export async function alternate(contenders: Contender[], reps: number, label: string, opts: { warmup?: boolean } = {}): Promise<Record<string, Stats>> {
  for (const c of opts.warmup === false ? [] : contenders) {
    log(`  ${label}: warm-up ${c.name}`);
    await c.run();
  }
  const samples: Record<string, number[]> = Object.fromEntries(contenders.map((c) => [c.name, []]));
  for (let r = 0; r < reps; r++) {
    const order = contenders.map((_, i) => contenders[(i + r) % contenders.length]!);
    for (const c of order) {
      const ms = await c.run();
      samples[c.name]!.push(ms);
      log(`  ${label}: round ${r + 1}/${reps}: ${c.name} ${ms.toFixed(1)} ms`);
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, stats(v)]));
}

export async function timed<T>(f: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await f();
  return { ms: performance.now() - t0, value };
}

/**
 * PyTorch's OpenMP threads: one per core, and OMP_WAIT_POLICY=PASSIVE. With GOMP's default (active) waiting,
 * on this shared 2-core machine a forward took 3-10× longer whenever another process held a core (each
 * parallel region waits a scheduler slice for its second thread); passive waiting is PyTorch at its best here.
 */
export function torchEnv(threads: number): NodeJS.ProcessEnv {
  return { ...process.env, OMP_NUM_THREADS: String(threads), OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE' };
}

/** The PyTorch eager reference (bench/torch_ref.py serve), one JSON line per request. */
export class TorchRef {
  private proc: ChildProcessWithoutNullStreams;
  private lines: AsyncIterableIterator<string>;
  private stderr = '';

  constructor(threads: number) {
    this.proc = spawn(PYTHON, [path.join(ROOT, 'bench', 'torch_ref.py'), 'serve'], {
      cwd: ROOT, env: torchEnv(threads),
    });
    this.proc.stderr.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-4000); });
    this.lines = readline.createInterface({ input: this.proc.stdout })[Symbol.asyncIterator]();
  }

  async call<T = Record<string, unknown>>(req: Record<string, unknown>): Promise<T> {
    this.proc.stdin.write(`${JSON.stringify(req)}\n`);
    const next = await this.lines.next();
    if (next.done) throw new Error(`the PyTorch reference exited: ${this.stderr}`);
    const res = JSON.parse(next.value) as { ok: boolean; error?: string };
    if (!res.ok) throw new Error(`PyTorch reference (${String(req.cmd)}): ${res.error}`);
    return res as T;
  }

  async close(): Promise<void> {
    try { await this.call({ cmd: 'quit' }); } catch { /* already gone */ }
    this.proc.kill();
  }
}

export function decodeF32(b64: string): Float32Array {
  const buf = Buffer.from(b64, 'base64');
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export function randomIds(B: number, T: number, vocab: number, seed: number, lo = 0): number[][] {
  const r = seededRandom(seed);
  return Array.from({ length: B }, () => Array.from({ length: T }, () => lo + Math.floor(r() * (vocab - lo))));
}

export function mb(kb: number): number {
  return round(kb / 1024, 1);
}
