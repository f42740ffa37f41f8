// The compute worker of every CircuitLens webview: the engine on onnxruntime-web, WebGPU when an adapter
// exists, WASM otherwise. Runs off the UI thread; the extension host is never involved in the math.
import { evaluateSets, prepare } from '../../core/analysis/evaluate';
import { Engine } from '../../core/engine/engine';
import { OrtWebRuntime } from '../../core/engine/ort-web';
import { Tokenizer } from '../../core/tokenizer';
import type { FromWorker, ToWorker } from './protocol';

// Typed views of the worker globals (this file is checked both with and without the DOM library).
const self = globalThis as unknown as { onmessage: ((e: { data: ToWorker }) => void) | null; postMessage(m: FromWorker): void };
const navigator = (globalThis as unknown as { navigator?: { gpu?: { requestAdapter(): Promise<{ info?: { vendor?: string; architecture?: string; description?: string } } | null> } } }).navigator ?? {};

let engine: Engine | undefined;

async function init(m: Extract<ToWorker, { t: 'init' }>): Promise<void> {
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
  self.postMessage({ t: 'ready', info: engine.info, backend: webgpu ? 'webgpu' : 'wasm', adapter: adapterName });
}

self.onmessage = async (e: { data: ToWorker }) => {
  const m = e.data;
  const id = 'id' in m ? m.id : undefined;
  try {
    if (m.t === 'init') return await init(m);
    if (!engine) throw new Error('the model is not loaded yet');
    const t0 = performance.now();
    if (m.t === 'evaluate') {
      const ctx = await prepare(engine, m.prompts, m.ablation, { meanOver: m.meanOver });
      const sets = await evaluateSets(ctx, m.sets);
      self.postMessage({ t: 'evaluated', id: m.id, sets: sets.map((s) => ({ ablated: s.ablated, metrics: s.metrics, scores: s.scores })), ms: performance.now() - t0 });
    } else if (m.t === 'trace') {
      const res = await engine.run({ ids: [m.ids], hooks: m.hooks, lens: m.lens });
      self.postMessage({ t: 'traced', id: m.id, logits: res.logits, activations: res.activations, lens: res.lens, ms: performance.now() - t0 });
    }
  } catch (err) {
    self.postMessage({ t: 'error', id, message: (err as Error).message ?? String(err) });
  }
};
