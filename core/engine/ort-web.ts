import * as ort from 'onnxruntime-web';
import { OrtSession, sessionError } from './ort';
import type { Backend, ExternalFile, Runtime, Session } from './runtime';

/**
 * onnxruntime-web: WASM in Node and in the browser, WebGPU in the browser when an adapter exists.
 * `wasmPaths` points the browser build at the .wasm files (webviews serve them from the extension).
 */
export class OrtWebRuntime implements Runtime {
  readonly backend: Backend;

  constructor(opts: { webgpu?: boolean; wasmPaths?: string; wasmBinary?: ArrayBuffer; threads?: number } = {}) {
    this.backend = opts.webgpu ? 'webgpu' : 'wasm';
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
        externalData: external.map((f) => ({ path: f.location, data: f.data ?? f.read?.() ?? f.path! })),
      });
      return new OrtSession(ort, session);
    } catch (e) {
      throw sessionError(e);
    }
  }
}
