import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { OrtSession, sessionError } from '../engine/ort';
import type { ExternalFile, Runtime, Session } from '../engine/runtime';

/** Models smaller than this (graph and weights) run on one intra-op thread unless told otherwise. */
export const SMALL_MODEL_BYTES = 8 << 20;

/** onnxruntime-node (native CPU). The default for the CLI and the extension host. */
/** How an OrtNodeRuntime runs onnxruntime-node: see its constructor. */
export interface OrtNodeOptions { threads?: number; flushDenormals?: boolean }

/** onnxruntime-node's session options that flush denormals to zero (see OrtNodeRuntime). */
export const FLUSH_DENORMALS: ort.InferenceSession.SessionOptions['extra'] = { session: { set_denormal_as_zero: '1' } };

export class OrtNodeRuntime implements Runtime {
  readonly backend = 'node' as const;

  private readonly threads?: number;
  private readonly flushDenormals: boolean;

  /**
   * `threads`: onnxruntime's intra-op threads; by default one per core, and one for small models (see below).
   * `flushDenormals`: onnxruntime's `session.set_denormal_as_zero` (flush-to-zero and denormals-are-zero). In a
   * trained model's softmax, exp of masked and very negative attention scores runs through float32's denormal
   * range (below 1.2e-38), which x86 cores compute on a slow microcode path: on the demo models softmax took a
   * quarter of a forward pass, and a sixth of that flushed. Flushing changes no result beyond 1e-38 in absolute
   * value (the test compares logits and attention to 1e-6). But onnxruntime sets the flags on the thread that creates
   * the process' first session, the JS main thread, where they stay: JavaScript arithmetic on denormal doubles
   * (below 2.2e-308) then flushes too. So it is for processes CircuitLens owns (the CLI, benchmarks), off by
   * default and off in the VS Code extension host, which other extensions share.
   */
  constructor(opts: OrtNodeOptions = {}) {
    this.threads = opts.threads;
    this.flushDenormals = opts.flushDenormals ?? false;
  }

  async createSession(model: Uint8Array, external: ExternalFile[]): Promise<Session> {
    // Errors only: onnxruntime's warnings (e.g. about initializers it merged) say nothing a user can act on.
    const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', logSeverityLevel: 3 };
    if (this.flushDenormals) options.extra = FLUSH_DENORMALS;
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
