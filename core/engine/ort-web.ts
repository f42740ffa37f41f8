import * as ort from 'onnxruntime-web';
import { OrtSession, sessionError } from './ort';
import type { Backend, ExternalFile, Runtime, Session } from './runtime';

/** onnxruntime's severity levels: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal. */
const LOG_SEVERITY_ERROR = 3;

/**
 * onnxruntime-web: WASM in Node and in the browser, WebGPU in the browser when an adapter exists.
 * `wasmPaths` points the browser build at the .wasm files (webviews serve them from the extension).
 */
export class OrtWebRuntime implements Runtime {
  readonly backend: Backend;

  constructor(opts: { webgpu?: boolean; wasmPaths?: string; wasmBinary?: ArrayBuffer; threads?: number } = {}) {
    this.backend = opts.webgpu ? 'webgpu' : 'wasm';
    // onnxruntime's own warnings (e.g. "Some nodes were not assigned to the preferred execution providers" under
    // WebGPU) are advice to its developers, and the WASM build prints them with console.error: errors only, for
    // the runtime here and for each session (LOG_SEVERITY_ERROR below; a session's default is warning).
    ort.env.logLevel = 'error';
    if (opts.wasmPaths) ort.env.wasm.wasmPaths = opts.wasmPaths;
    // Webviews hand the binary over by message: no fetch from another origin, no CSP exception for it.
    if (opts.wasmBinary) ort.env.wasm.wasmBinary = opts.wasmBinary;
    if (opts.threads !== undefined) ort.env.wasm.numThreads = opts.threads;
  }

  async createSession(model: Uint8Array, external: ExternalFile[]): Promise<Session> {
    try {
      const session = await ort.InferenceSession.create(model, {
        executionProviders: [this.backend === 'webgpu' ? 'webgpu' : 'wasm'],
        graphOptimizationLevel: 'all',
        logSeverityLevel: LOG_SEVERITY_ERROR,
        externalData: external.map((f) => ({ path: f.location, data: f.data ?? f.read?.() ?? f.path! })),
      });
      return new OrtSession(ort, session);
    } catch (e) {
      throw sessionError(e);
    }
  }
}
