import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
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
      const dir = modelDir(external);
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
      // Read-only model folder: hand the weights over in memory.
      options.externalData = external.map((f) => ({ path: f.location, data: f.data ?? fs.readFileSync(f.path!) }));
      return new OrtSession(ort, await ort.InferenceSession.create(model, options));
    } catch (e) {
      throw sessionError(e);
    }
  }
}

/** The folder the external files' locations are relative to, when they are given by path. */
function modelDir(external: ExternalFile[]): string | undefined {
  const f = external.find((x) => x.path);
  if (!f?.path) return undefined;
  const abs = path.resolve(f.path);
  const rel = path.normalize(f.location);
  return abs.endsWith(rel) ? abs.slice(0, abs.length - rel.length) : undefined;
}
