import type { ComputeSetup } from '../../extension/webviews/compute-setup';
import type { FromWorker, ToWorker } from '../compute/protocol';

type Request = Extract<ToWorker, { id: number }>;
type Answer<R extends Request> = R['t'] extends 'evaluate' ? Extract<FromWorker, { t: 'evaluated' }> : Extract<FromWorker, { t: 'traced' }>;

/**
 * Starts the compute worker (onnxruntime-web) from the extension's files: the worker script runs from a blob
 * (webviews cannot start workers from resource URLs) and gets the WASM binary and the model by message.
 */
export class Compute {
  private worker!: Worker;
  private next = 1;
  private pending = new Map<number, { resolve(m: FromWorker): void; reject(e: Error): void }>();
  ready!: Extract<FromWorker, { t: 'ready' }>;

  static async start(setup: ComputeSetup): Promise<Compute> {
    const c = new Compute();
    await c.init(setup);
    return c;
  }

  private async init(setup: ComputeSetup): Promise<void> {
    const [code, wasm, model, tok] = await Promise.all([
      fetchOk(setup.workerUri).then((r) => r.text()),
      fetchOk(setup.wasmUri).then((r) => r.arrayBuffer()),
      fetchOk(setup.modelUri).then((r) => r.arrayBuffer()),
      setup.tokenizerUri ? fetchOk(setup.tokenizerUri).then((r) => r.text()) : Promise.resolve(undefined),
    ]);
    this.worker = new Worker(URL.createObjectURL(new Blob([code], { type: 'text/javascript' })));
    const ready = new Promise<Extract<FromWorker, { t: 'ready' }>>((resolve, reject) => {
      this.worker.onmessage = (e: MessageEvent<FromWorker>) => {
        const m = e.data;
        if (m.t === 'ready') return resolve(m);
        if (m.t === 'error' && m.id === undefined) return reject(new Error(m.message));
        if ('id' in m && m.id !== undefined) {
          const p = this.pending.get(m.id);
          this.pending.delete(m.id);
          if (p) (m.t === 'error' ? p.reject(new Error(m.message)) : p.resolve(m));
        }
      };
      this.worker.onerror = (e) => reject(new Error(e.message || 'the compute worker failed to start'));
    });
    const init: ToWorker = { t: 'init', model: new Uint8Array(model), tokenizerJson: tok, wasmBinary: wasm, prefer: setup.prefer, what: setup.what };
    this.worker.postMessage(init, [wasm]);
    this.ready = await ready;
  }

  call<R extends Request>(req: Omit<R, 'id'> & { t: R['t'] }): Promise<Answer<R>> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (m: FromWorker) => void, reject });
      this.worker.postMessage({ ...req, id });
    });
  }

  dispose(): void {
    this.worker?.terminate();
  }
}

async function fetchOk(url: string): Promise<Response> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`could not load ${url.split('/').pop()}: HTTP ${r.status}`);
  return r;
}
