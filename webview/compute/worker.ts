// The compute worker of every CircuitLens webview: the engine on onnxruntime-web, WebGPU when an adapter
// exists, WASM otherwise. Runs off the UI thread; the extension host is never involved in the math.
import { sweepPrompt } from '../../core/analysis/attention/temperature';
import { evaluateSets, prepare } from '../../core/analysis/evaluate';
import { Engine } from '../../core/engine/engine';
import { OrtWebRuntime } from '../../core/engine/ort-web';
import { Tokenizer } from '../../core/tokenizer';
import type { ComputeRequest, FromWorker, InitParams, Ready, ToWorker } from '../../protocol/compute';
import type { RequestHandlers } from '../../protocol/ipc';

// Typed views of the worker globals (this file is checked both with and without the DOM library).
const self = globalThis as unknown as { onmessage: ((e: { data: ToWorker }) => void) | null; postMessage(m: FromWorker): void };
const navigator = (globalThis as unknown as { navigator?: { gpu?: { requestAdapter(): Promise<{ info?: { vendor?: string; architecture?: string; description?: string } } | null> } } }).navigator ?? {};

let engine: Engine | undefined;

async function init(m: InitParams): Promise<Ready> {
  let adapterName: string | undefined;
  let webgpu = false;
  if (m.prefer !== 'wasm' && navigator.gpu) {
    const adapter = await navigator.gpu.requestAdapter().catch(() => null);
    if (adapter) {
      webgpu = true;
      const i = adapter.info;
      adapterName = [i?.vendor, i?.architecture, i?.description].filter(Boolean).join(' ') || 'WebGPU adapter';
    }
  }
  if (m.prefer === 'webgpu' && !webgpu) throw new Error('WebGPU was requested but this webview has no WebGPU adapter');
  const tokenizer = m.tokenizerJson ? Tokenizer.parse(m.tokenizerJson) : undefined;
  const make = (gpu: boolean) => Engine.create(new OrtWebRuntime({ webgpu: gpu, wasmBinary: m.wasmBinary, threads: 1 }), m.model, { what: m.what, tokenizer });
  try {
    engine = await make(webgpu);
  } catch (e) {
    if (!webgpu || m.prefer === 'webgpu') throw e;
    webgpu = false;
    engine = await make(false);
  }
  return { info: engine.info, backend: webgpu ? 'webgpu' : 'wasm', adapter: adapterName };
}

function loaded(): Engine {
  if (!engine) throw new Error('the model is not loaded yet');
  return engine;
}

const handlers: RequestHandlers<ComputeRequest> = {
  'compute/init': init,
  'compute/evaluate': async (p) => {
    const t0 = performance.now();
    const ctx = await prepare(loaded(), p.prompts, p.ablation, { meanOver: p.meanOver });
    const sets = await evaluateSets(ctx, p.sets);
    return { sets: sets.map((s) => ({ ablated: s.ablated, metrics: s.metrics, scores: s.scores })), ms: performance.now() - t0 };
  },
  'compute/trace': async (p) => {
    const t0 = performance.now();
    const res = await loaded().run({ ids: [p.ids], hooks: p.hooks, lens: p.lens });
    return { logits: res.logits, activations: res.activations, lens: res.lens, ms: performance.now() - t0 };
  },
  'compute/temperature': async (p) => {
    const t0 = performance.now();
    const r = await sweepPrompt(loaded(), p.ids, p.head, p.temperatures, p.answer, p.foil);
    return { ...r, ms: performance.now() - t0 };
  },
};

self.onmessage = async (e: { data: ToWorker }) => {
  const m = e.data;
  const t = `${m.t}/response` as const;
  try {
    // The handler is the request's own (handlers is keyed by method), so its result is the response's type.
    const result = await (handlers[m.t] as (p: typeof m.params) => Promise<never>)(m.params);
    self.postMessage({ t, id: m.id, ok: true, result });
  } catch (err) {
    self.postMessage({ t, id: m.id, ok: false, error: (err as Error).message ?? String(err) });
  }
};
