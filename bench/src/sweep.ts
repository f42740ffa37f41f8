// Bench 2: single-node zero-ablation sweep over attention heads on a 64-prompt induction suite.
// CircuitLens: core/analysis/evaluate.ts (prepare + evaluateSets, one set per head, rows batched; on
// onnxruntime-node each row starts at its ablated head's layer from the cached clean residual, core/onnx/skip.ts).
// PyTorch: a hook loop, one forward of all prompts per ablated head (bench/torch_ref.py sweep).
import type { Engine } from '../../core/engine/engine';
import { evaluateSets, prepare } from '../../core/analysis/evaluate';
import { headId, type NodeId } from '../../core/ids';
import { alternate, log, round, type Contender, type Stats, type TorchRef } from './harness';
import { loadCircuitLens, loadTorch, type ModelSpec } from './models';
import { forTorch, inductionSuite } from './suite';

export interface SweepOptions {
  reps: number;
  prompts: number;
  promptTokens: number;
  /** Layers whose heads are swept (undefined: all). */
  layers?: number[];
  /** Rows per engine call for the shipped engine (prepare's maxRows; its default is 256). */
  maxRows?: number;
  torchThreads: number;
}

export interface SweepResult {
  model: string;
  label: string;
  prompts: number;
  promptTokens: number;
  heads: number;
  headsInModel: number;
  ablation: 'zero';
  maxRows: number;
  /** Whether the engine started rows at the ablated layer (layer skipping; native onnxruntime only). */
  layerSkipping: boolean;
  cleanLogitDiff: number;
  cleanAccuracy: number;
  /** Max |Δ| between CircuitLens' and PyTorch's per-head scores (clean − ablated logit difference). */
  agreement: Record<string, number>;
  ms: Record<string, Stats>;
  ratioToPytorch: Record<string, number>;
  /** Median ms per swept head, and the all-heads time extrapolated from it when only some layers were swept. */
  msPerHead: Record<string, number>;
  allHeadsEstimateMs?: Record<string, number>;
}

export async function sweepBench(torch: TorchRef, spec: ModelSpec, opts: SweepOptions): Promise<SweepResult> {
  log(`\n[sweep] ${spec.label}: ${opts.prompts} prompts × ${opts.promptTokens} tokens`);
  const { engine } = await loadCircuitLens(spec, 'node');
  await loadTorch(torch, spec, opts.torchThreads);
  const { layers, heads, vocab } = engine.info;
  const sweptLayers = opts.layers ?? Array.from({ length: layers }, (_, l) => l);
  const nodes: NodeId[] = sweptLayers.flatMap((l) => Array.from({ length: heads }, (_, h) => headId(l, h)));
  const prompts = inductionSuite(opts.prompts, opts.promptTokens, vocab, 29);
  const torchHeads = sweptLayers.flatMap((l) => Array.from({ length: heads }, (_, h) => [l, h]));
  const maxRows = opts.maxRows ?? 256;

  const runCircuitLens = async (e: Engine, rows: number) => {
    const ctx = await prepare(e, prompts, 'zero', { maxRows: rows });
    const [clean, ...single] = await evaluateSets(ctx, [[], ...nodes.map((n) => [n])]);
    return { clean: clean!.metrics, scores: nodes.map((n, i) => ({ id: n, score: clean!.metrics.logit_diff - single[i]!.metrics.logit_diff })) };
  };
  const runTorch = () => torch.call<{ ms: number; clean: number; scores: Record<string, number> }>({ cmd: 'sweep', key: spec.key, prompts: forTorch(prompts), heads: torchHeads });

  // Same numbers on both sides (also the warm-up).
  const cl = await runCircuitLens(engine, maxRows);
  const tr = await runTorch();
  const agreement: Record<string, number> = { 'circuitlens-native': Math.max(...cl.scores.map((s) => Math.abs(s.score - tr.scores[s.id]!))) };
  log(`  clean logit diff ${cl.clean.logit_diff.toFixed(3)} (PyTorch ${tr.clean.toFixed(3)}), accuracy ${cl.clean.accuracy.toFixed(3)}; max |Δ score| ${agreement['circuitlens-native']!.toExponential(2)}`);

  const time = (f: () => Promise<unknown>) => async () => { const t0 = performance.now(); await f(); return performance.now() - t0; };
  const contenders: Contender[] = [
    { name: 'circuitlens-native', run: time(() => runCircuitLens(engine, maxRows)) },
    { name: 'pytorch hook loop', run: async () => (await runTorch()).ms },
  ];
  // Every contender ran once above (the agreement checks): that was the warm-up.
  const ms = await alternate(contenders, opts.reps, `sweep ${spec.key}`, { warmup: false });
  const base = ms['pytorch hook loop']!.median;
  const ratioToPytorch = Object.fromEntries(Object.entries(ms).filter(([k]) => !k.startsWith('pytorch')).map(([k, v]) => [k, round(v.median / base, 3)]));
  const msPerHead = Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, round(v.median / nodes.length, 2)]));
  const all = layers * heads;
  const allHeadsEstimateMs = nodes.length < all ? Object.fromEntries(Object.entries(msPerHead).map(([k, v]) => [k, round(v * all, 0)])) : undefined;
  for (const [k, v] of Object.entries(ms)) log(`  ${k}: median ${v.median.toFixed(1)} ms${ratioToPytorch[k] !== undefined ? ` (${ratioToPytorch[k]}× the hook loop)` : ''}`);

  const layerSkipping = await engine.canSkipLayers();
  await engine.release();
  await torch.call({ cmd: 'unload', key: spec.key });
  return {
    model: spec.key, label: spec.label, prompts: prompts.length, promptTokens: opts.promptTokens, heads: nodes.length, headsInModel: all, ablation: 'zero',
    maxRows, layerSkipping, cleanLogitDiff: round(cl.clean.logit_diff, 4), cleanAccuracy: round(cl.clean.accuracy, 4), agreement, ms, ratioToPytorch, msPerHead, allHeadsEstimateMs,
  };
}
