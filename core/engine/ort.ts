import type * as OrtCommon from 'onnxruntime-common';
import { UserError } from '../errors';
import type { Feed, F32, Session } from './runtime';

type Ort = Pick<typeof OrtCommon, 'Tensor' | 'InferenceSession'>;

/** Wraps an onnxruntime InferenceSession (node or web build; they share onnxruntime-common's API). */
export class OrtSession implements Session {
  private released = false;
  private inFlight = new Set<Promise<unknown>>();

  constructor(private readonly ort: Ort, private readonly session: OrtCommon.InferenceSession) {}

  async run(feeds: Record<string, Feed>, fetches: string[]): Promise<Record<string, F32>> {
    if (this.released) {
      throw new UserError('the model was unloaded while this command was running (its file changed on disk, or the workspace closed); run the command again');
    }
    const run = this.runNow(feeds, fetches);
    this.inFlight.add(run);
    try {
      return await run;
    } finally {
      this.inFlight.delete(run);
    }
  }

  private async runNow(feeds: Record<string, Feed>, fetches: string[]): Promise<Record<string, F32>> {
    const inputs: Record<string, OrtCommon.Tensor> = {};
    for (const [name, f] of Object.entries(feeds)) inputs[name] = new this.ort.Tensor(f.type, f.data, f.dims);
    let out: OrtCommon.InferenceSession.ReturnType;
    try {
      out = await this.session.run(inputs, fetches);
    } catch (e) {
      throw new UserError(`onnxruntime failed to run the model: ${(e as Error).message}`);
    }
    const res: Record<string, F32> = {};
    for (const name of fetches) {
      const t = out[name]!;
      res[name] = { dims: t.dims.map(Number), data: t.data as Float32Array };
    }
    return res;
  }

  /** Releases the session once the runs in flight have finished; later runs get a clear error. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await Promise.allSettled([...this.inFlight]);
    await this.session.release();
  }
}

export function sessionError(e: unknown): UserError {
  const msg = (e as Error).message ?? String(e);
  return new UserError(`onnxruntime could not load the instrumented model: ${msg}`);
}
