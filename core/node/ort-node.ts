import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { OrtSession, sessionError } from '../engine/ort';
import type { ExternalFile, Runtime, Session } from '../engine/runtime';

/** onnxruntime-node (native CPU). The default for the CLI and the extension host. */
export class OrtNodeRuntime implements Runtime {
  readonly backend = 'node' as const;

  constructor(private readonly threads?: number) {}

  async createSession(model: Uint8Array, external: ExternalFile[]): Promise<Session> {
    const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all' };
    if (this.threads) options.intraOpNumThreads = this.threads;
    try {
      if (external.length === 0) return new OrtSession(ort, await ort.InferenceSession.create(model, options));
      // Native onnxruntime resolves external data next to the model file: stage the instrumented graph in a
      // temporary folder with links to the original data files (no copy of the weights).
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'circuitlens-'));
      try {
        for (const f of external) {
          const dst = path.join(dir, f.location);
          fs.mkdirSync(path.dirname(dst), { recursive: true });
          if (f.path) fs.symlinkSync(path.resolve(f.path), dst);
          else fs.writeFileSync(dst, f.data!);
        }
        const file = path.join(dir, 'model.onnx');
        fs.writeFileSync(file, model);
        return new OrtSession(ort, await ort.InferenceSession.create(file, options));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    } catch (e) {
      throw sessionError(e);
    }
  }
}
