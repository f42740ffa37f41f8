import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { OrtSession, sessionError } from '../engine/ort';
import type { ExternalFile, Runtime, Session } from '../engine/runtime';

/** Models smaller than this (graph and weights) run on one intra-op thread unless told otherwise. */
export const SMALL_MODEL_BYTES = 8 << 20;

/** onnxruntime-node (native CPU). The default for the CLI and the extension host. */
export class OrtNodeRuntime implements Runtime {
  readonly backend = 'node' as const;

  private readonly threads?: number;
  private readonly flushDenormals: boolean;

  /**
   * `threads`: onnxruntime's intra-op threads; by default one per core, and one for small models (see below).
   * `flushDenormals`: onnxruntime's `session.set_denormal_as_zero` (flush-to-zero and denormals-are-zero). Trained
   * attention is often so peaked that softmax produces denormal probabilities (below 1.2e-38), and x86 cores take
   * a slow microcode path for each: on the demo models that makes softmax half of a forward pass. Flushing them
   * changes no result beyond 1e-38 in absolute value. But onnxruntime sets the flags on the thread that creates
   * the process' first session, the JS main thread, where they stay: JavaScript arithmetic on denormal doubles
   * (below 2.2e-308) then flushes too. So it is for processes CircuitLens owns (the CLI, benchmarks), off by
   * default and off in the VS Code extension host, which other extensions share.
   */
  constructor(opts: { threads?: number; flushDenormals?: boolean } = {}) {
    this.threads = opts.threads;
    this.flushDenormals = opts.flushDenormals ?? false;
  }

  async createSession(model: Uint8Array, external: ExternalFile[]): Promise<Session> {
    // Errors only: onnxruntime's warnings (e.g. about initializers it merged) say nothing a user can act on.
    const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', logSeverityLevel: 3 };
    if (this.flushDenormals) options.extra = { session: { set_denormal_as_zero: '1' } };
    // A small model's kernels are too short to share between threads: on the demo models (d 64) one thread runs
    // a 64-prompt head sweep in less time, and with much less spread, than two (bench/, "sweep").
    const bytes = model.byteLength + external.reduce((a, f) => a + (f.data?.byteLength ?? (f.path ? fileSize(f.path) : f.read ? Infinity : 0)), 0);
    const threads = this.threads ?? (bytes < SMALL_MODEL_BYTES ? 1 : undefined);
    if (threads) options.intraOpNumThreads = threads;
    try {
      if (external.length === 0) return new OrtSession(ort, await ort.InferenceSession.create(model, options));
      const dir = external.some((f) => f.read) ? undefined : modelDir(external);
      if (dir) {
        // Native onnxruntime reads external data relative to the model file and refuses paths that leave its
        // folder, so the instrumented graph is staged beside the original for the moment of loading; the weights
        // are read from their own files, never copied.
        const staged = path.join(dir, `.circuitlens-${process.pid}-${crypto.randomBytes(4).toString('hex')}.onnx`);
        try {
          fs.writeFileSync(staged, model);
          return new OrtSession(ort, await ort.InferenceSession.create(staged, options));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EACCES' && (e as NodeJS.ErrnoException).code !== 'EROFS') throw e;
        } finally {
          fs.rmSync(staged, { force: true });
        }
      }
      // Read-only model folder, or weights read by the caller: hand the weights over in memory.
      options.externalData = externalDataInMemory(external);
      return new OrtSession(ort, await ort.InferenceSession.create(model, options));
    } catch (e) {
      throw sessionError(e);
    }
  }
}

/** onnxruntime's in-memory external data: each file's bytes as given, read by the caller's `read`, or from its path. */
export function externalDataInMemory(external: ExternalFile[]): { path: string; data: Uint8Array }[] {
  return external.map((f) => ({ path: f.location, data: f.data ?? f.read?.() ?? fs.readFileSync(f.path!) }));
}

function fileSize(p: string): number {
  try { return fs.statSync(p).size; } catch { return Infinity; }
}

/** The folder the external files' locations are relative to, when they are given by path. */
function modelDir(external: ExternalFile[]): string | undefined {
  const f = external.find((x) => x.path);
  if (!f?.path) return undefined;
  const abs = path.resolve(f.path);
  const rel = path.normalize(f.location);
  return abs.endsWith(rel) ? abs.slice(0, abs.length - rel.length) : undefined;
}
