import type { ComputeRequest, ComputeSetup, FromWorker, Ready, ToWorker } from '../../protocol/compute';
import type { ParamsOf, ResultOf } from '../../protocol/ipc';
import { Requests } from './requests';

type Method = Exclude<ComputeRequest['method'], 'compute/init'>;

/**
 * Starts the compute worker (onnxruntime-web) from the extension's files: the worker script runs from a blob
 * (webviews cannot start workers from resource URLs) and gets the WASM binary and the model by message.
 */
export class Compute {
  private worker!: Worker;
  private requests!: Requests<ComputeRequest>;
  ready!: Ready;

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
    const worker = this.worker = new Worker(URL.createObjectURL(new Blob([code], { type: 'text/javascript' })));
    this.requests = new Requests<ComputeRequest>((m: ToWorker, transfer) => worker.postMessage(m, transfer));
    worker.onmessage = (e: MessageEvent<FromWorker>) => this.requests.settle(e.data);
    worker.onerror = (e) => this.requests.failAll(new Error(e.message || 'the compute worker failed'));
    this.ready = await this.requests.request('compute/init', { model: new Uint8Array(model), tokenizerJson: tok, wasmBinary: wasm, prefer: setup.prefer, what: setup.what }, [wasm]);
  }

  call<M extends Method>(method: M, params: ParamsOf<ComputeRequest, M>): Promise<ResultOf<ComputeRequest, M>> {
    return this.requests.request(method, params);
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
