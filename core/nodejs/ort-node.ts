import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { OrtSession, sessionError } from '../engine/ort';
import type { ExternalFile, Runtime, Session } from '../engine/runtime';

/** onnxruntime-node (native CPU). The default for the CLI and the extension host. */
/** How an OrtNodeRuntime runs onnxruntime-node: see its constructor. */
export interface OrtNodeOptions { threads?: number; flushDenormals?: boolean; spinning?: Spinning; prepacking?: Prepacking }

/**
 * Whether onnxruntime prepacks constant weights (MatMul/Gemm right operands) into its own layout when a session is
 * built. Prepacking makes a private, packed copy of every weight in each session; without it onnxruntime reads
 * weights in place, and weights it loads from external data files by path are memory-mapped from the file, so the
 * sessions of one engine (main, metrics, layer skipping, gradients) share one physical copy through the page cache
 * and build in about a second instead of 10-20 s (a 1.1B model). 'auto' (the default): off when the weights come
 * from external files by path of more than SHARED_WEIGHTS_BYTES in all, on otherwise (small models, where memory
 * is not the issue and prepacking may be faster).
 */
export type Prepacking = 'auto' | 'on' | 'off';

/** External data by path above this many bytes: weights are shared, not prepacked (Prepacking 'auto'). */
export const SHARED_WEIGHTS_BYTES = 1024 ** 3;

/**
 * When onnxruntime's intra-op worker threads busy-wait for work instead of sleeping. 'during-run' (the default):
 * they spin between the kernels of one run and stop when it ends (`session.force_spinning_stop`); 'always':
 * onnxruntime's own default, spinning on after a run; 'never': they always sleep (`intra_op.allow_spinning` 0).
 */
export type Spinning = 'during-run' | 'always' | 'never';

/** onnxruntime-node's session options that flush denormals to zero (see OrtNodeRuntime). */
export const FLUSH_DENORMALS = { session: { set_denormal_as_zero: '1' } } satisfies ort.InferenceSession.SessionOptions['extra'];

export class OrtNodeRuntime implements Runtime {
  readonly backend = 'node' as const;

  private readonly opts: OrtNodeOptions;

  /**
   * `threads`: onnxruntime's intra-op threads; by default one per core.
   * `spinning`: see Spinning. Analyses alternate between several sessions (clean and ablated runs, metrics and
   * gradient graphs), each with its own pool. With onnxruntime's default a finished run's workers spin on and hold
   * the cores the next session's run needs; that made two threads slower than one on the demo models' head sweeps
   * (kernels of microseconds), and one thread was the rule for small models. Stopping the spin when a run ends
   * keeps the fast hand-over between kernels within a run. Measured on this project's 2-core machine, in one
   * process, alternating, on the demo models: two threads then beat one on everything (six A/B rounds: forward
   * 8 × 64 5-25 % faster, head sweep 15-25 %, node EAP 10-15 %), so small models no longer get one thread; on
   * GPT-2-small the spinning mode changed nothing measurable. Machines with many cores were not measured.
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
    this.opts = opts;
  }

  /** Whether sessions over these external files share their weights (no prepacking: see Prepacking). */
  sharesWeights(external: ExternalFile[]): boolean {
    const mode = this.opts.prepacking ?? 'auto';
    if (mode !== 'auto') return mode === 'off';
    if (external.length === 0 || external.some((f) => !f.path) || !modelDir(external)) return false;
    return externalBytes(external) > SHARED_WEIGHTS_BYTES;
  }

  async createSession(model: Uint8Array, external: ExternalFile[]): Promise<Session> {
    // onnxruntime's process-wide logger (made when the first session is) logs what happens outside a session's own
    // logger at this level: errors only, as sessionOptions asks of each session.
    ort.env.logLevel = 'error';
    const options = sessionOptions(this.opts, this.sharesWeights(external));
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

/** The bytes of the external files given by path (each file once). */
export function externalBytes(external: ExternalFile[]): number {
  const paths = new Set(external.flatMap((f) => (f.path ? [path.resolve(f.path)] : [])));
  let n = 0;
  for (const p of paths) n += fs.statSync(p, { throwIfNoEntry: false })?.size ?? 0;
  return n;
}

/** onnxruntime's in-memory external data: each file's bytes as given, read by the caller's `read`, or from its path. */
export function externalDataInMemory(external: ExternalFile[]): { path: string; data: Uint8Array }[] {
  return external.map((f) => ({ path: f.location, data: f.data ?? f.read?.() ?? fs.readFileSync(f.path!) }));
}

/** onnxruntime-node's session options for these OrtNodeOptions; `shareWeights`: no prepacking (see Prepacking). */
export function sessionOptions(opts: OrtNodeOptions, shareWeights = false): ort.InferenceSession.SessionOptions {
  // Errors only (severity 3; verbosity matters only at the verbose level 0): onnxruntime's warnings, printed to
  // stderr in terminal colours, say nothing a user can act on (initializers it merged, or removed as unused from
  // the gradient graphs, as on the zoo's Llama and GPT-NeoX).
  const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', logSeverityLevel: 3, logVerbosityLevel: 0 };
  options.extra = { session: { ...(opts.flushDenormals ? FLUSH_DENORMALS.session : {}), ...SPINNING[opts.spinning ?? 'during-run'], ...(shareWeights ? { disable_prepacking: '1' } : {}) } };
  if (opts.threads) options.intraOpNumThreads = opts.threads;
  return options;
}

/** onnxruntime's session config entries (`session.…`) for each Spinning. */
const SPINNING: Record<Spinning, Record<string, string>> = {
  'during-run': { force_spinning_stop: '1' },
  always: {},
  never: { 'intra_op.allow_spinning': '0' },
};

/** The folder the external files' locations are relative to, when they are given by path. */
function modelDir(external: ExternalFile[]): string | undefined {
  const f = external.find((x) => x.path);
  if (!f?.path) return undefined;
  const abs = path.resolve(f.path);
  const rel = path.normalize(f.location);
  return abs.endsWith(rel) ? abs.slice(0, abs.length - rel.length) : undefined;
}
