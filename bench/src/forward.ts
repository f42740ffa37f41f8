// Bench 1: one forward pass, CircuitLens (onnxruntime-node native, onnxruntime-web WASM) vs PyTorch eager,
// on the same weights and token ids, alternating. Optional: every hook recorded (TransformerLens'
// run_with_cache). `lastOnly` runs use the engine's lean metrics session (last-position logits only, final norm
// and unembedding on the last position).
import * as ortWeb from 'onnxruntime-web';
import type { Engine } from '../../core/engine/engine';
import { alternate, decodeF32, log, maxAbsDiff, randomIds, round, type Contender, type Stats, type TorchRef } from './harness';
import { loadCircuitLens, loadTorch, nodeRuntimeOptions, type ModelSpec } from './models';

export interface ForwardOptions {
  reps: number;
  wasm: boolean;
  /** Also time recording every hook (CircuitLens hooks: all; PyTorch run_with_cache). */
  cache: boolean;
  torchThreads: number;
}

export interface ForwardResult {
  model: string;
  label: string;
  batch: number;
  tokens: number;
  threads: { ortNode: string; ortWasm: number | undefined; torch: number };
  loadMs: Record<string, number>;
  /** Max |Δ| of the last-position logits against PyTorch (same weights, same ids). */
  agreement: Record<string, number>;
  ms: Record<string, Stats>;
  /** Median time / PyTorch's median time. */
  ratioToPytorch: Record<string, number>;
}

export async function forwardBench(torch: TorchRef, spec: ModelSpec, opts: ForwardOptions): Promise<ForwardResult> {
  log(`\n[forward] ${spec.label}: batch ${spec.B} × ${spec.T} tokens`);
  const loadMs: Record<string, number> = {};
  const native = await loadCircuitLens(spec, 'node');
  loadMs['circuitlens-native'] = round(native.loadMs, 1);
  const tl = await loadTorch(torch, spec, opts.torchThreads);
  loadMs.pytorch = round(tl.loadMs, 1);
  let wasm: Engine | undefined;
  if (opts.wasm) {
    const w = await loadCircuitLens(spec, 'wasm');
    wasm = w.engine;
    loadMs['circuitlens-wasm'] = round(w.loadMs, 1);
  }
  const { vocab } = native.engine.info;
  const ids = randomIds(spec.B, spec.T, vocab, 17);

  // Same function? Last-position logits of every row against PyTorch's.
  const ref = await torch.call<{ last: string }>({ cmd: 'forward', key: spec.key, ids, mode: 'logits', returnLast: true });
  const refLast = decodeF32(ref.last);
  const agreement: Record<string, number> = {};
  agreement['circuitlens-native'] = maxAbsDiff((await native.engine.run({ ids, lastOnly: true })).logits.data, refLast);
  if (wasm) agreement['circuitlens-wasm'] = maxAbsDiff((await wasm.run({ ids, lastOnly: true })).logits.data, refLast);
  log(`  max |Δ last logits| vs PyTorch: ${Object.entries(agreement).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);

  const time = (f: () => Promise<unknown>) => async () => { const t0 = performance.now(); await f(); return performance.now() - t0; };
  const torchForward = (mode: string) => async () => (await torch.call<{ ms: number }>({ cmd: 'forward', key: spec.key, ids, mode })).ms;
  const contenders: Contender[] = [
    { name: 'circuitlens-native', run: time(() => native.engine.run({ ids })) },
    { name: 'circuitlens-native lastOnly', run: time(() => native.engine.run({ ids, lastOnly: true })) },
    { name: 'pytorch', run: torchForward('logits') },
  ];
  if (wasm) contenders.push({ name: 'circuitlens-wasm', run: time(() => wasm!.run({ ids })) });
  if (opts.cache) {
    const hooks = native.engine.hookNames;
    contenders.push(
      { name: 'circuitlens-native all hooks', run: time(() => native.engine.run({ ids, hooks })) },
      { name: 'pytorch run_with_cache', run: torchForward('cache') },
    );
  }
  const ms = await alternate(contenders, opts.reps, `forward ${spec.key}`);
  const base = (name: string) => (name.includes('all hooks') ? ms['pytorch run_with_cache']! : ms.pytorch!).median;
  const ratioToPytorch = Object.fromEntries(Object.entries(ms).filter(([k]) => !k.startsWith('pytorch')).map(([k, v]) => [k, round(v.median / base(k), 3)]));
  for (const [k, v] of Object.entries(ms)) log(`  ${k}: median ${v.median.toFixed(1)} ms${ratioToPytorch[k] !== undefined ? ` (${ratioToPytorch[k]}× PyTorch)` : ''}`);

  await native.engine.release();
  await wasm?.release();
  await torch.call({ cmd: 'unload', key: spec.key });
  return {
    model: spec.key, label: spec.label, batch: spec.B, tokens: spec.T,
    threads: { ortNode: `${nodeRuntimeOptions.threads ?? 'one per core'}, spinning ${nodeRuntimeOptions.spinning ?? 'during-run'}`, ortWasm: wasm ? (ortWeb.env.wasm.numThreads as number | undefined) : undefined, torch: tl.threads },
    loadMs, agreement, ms, ratioToPytorch,
  };
}
