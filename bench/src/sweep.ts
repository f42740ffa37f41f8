// Bench 2: single-node zero-ablation sweep over attention heads on a 64-prompt induction suite.
// CircuitLens: core/analysis/evaluate.ts (prepare + evaluateSets, one set per head, rows batched).
// PyTorch: a hook loop, one forward of all prompts per ablated head (bench/torch_ref.py sweep).
import type { Engine } from '../../core/engine/engine';
import { evaluateSets, prepare, runSets, type EvalContext } from '../../core/analysis/evaluate';
import { logSoftmax, meanMetrics } from '../../core/analysis/metrics';
import { headId, type NodeId } from '../../core/ids';
import { alternate, log, round, type Contender, type Stats, type TorchRef } from './harness';
import { fastScore, leanEngine, SuffixSweeper } from './lean';
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
  prototypes: boolean;
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
  const releases: (() => Promise<void>)[] = [];
  if (opts.prototypes) {
    const lean = await leanEngine(engine, { hooks: [], lastBeforeUnembed: true });
    releases.push(() => lean.session.release());
    const check = await runCircuitLens(lean.engine, 256);
    agreement['proto native lean lastOnly'] = Math.max(...check.scores.map((s) => Math.abs(s.score - tr.scores[s.id]!)));
    contenders.push({ name: 'proto native lean lastOnly', run: time(() => runCircuitLens(lean.engine, 256)) });

    // Prototypes 2 + 3: layers before the ablated head's are not recomputed (sessions cut at resid_pre), and
    // prompts are scored with plain loops (bench/src/lean.ts fastScore) instead of metrics.ts scorePrompt.
    const sweeper = await SuffixSweeper.create(engine, sweptLayers);
    releases.push(() => sweeper.release());
    const runSuffix = async () => {
      const clean = await sweeper.cacheClean(prompts.map((p) => p.ids));
      const row = (i: number) => clean.data.subarray(i * vocab, (i + 1) * vocab);
      const cleanLogProbs = prompts.map((_, i) => logSoftmax(row(i)));
      const cleanRef = cleanLogProbs.map((lp) => ({ logProbs: lp, probs: Float64Array.from(lp, Math.exp) }));
      const ctx: EvalContext = { engine, prompts, ablation: 'zero', cleanLogProbs, maxRows: 256 };
      const cleanLd = meanMetrics(prompts.map((p, i) => fastScore(row(i), p.answer, p.foil, cleanRef[i]))).logit_diff;
      const scores: { id: NodeId; score: number }[] = [];
      for (const l of sweptLayers) {
        const sets = nodes.filter((n) => n.startsWith(`a${l}.`));
        const logits = await runSets({ ...ctx, engine: sweeper.engineFor(l) }, sets.map((n) => [n]));
        logits.forEach((perPrompt, i) => {
          const metrics = meanMetrics(prompts.map((p, j) => fastScore(perPrompt[j]!, p.answer, p.foil, cleanRef[j])));
          scores.push({ id: sets[i]!, score: cleanLd - metrics.logit_diff });
        });
      }
      return scores;
    };
    const check2 = await runSuffix();
    agreement['proto suffix sessions + lastOnly + fast scoring'] = Math.max(...check2.map((s) => Math.abs(s.score - tr.scores[s.id]!)));
    contenders.push({ name: 'proto suffix sessions + lastOnly + fast scoring', run: time(runSuffix) });
  }
  // Every contender ran once above (the agreement checks): that was the warm-up.
  const ms = await alternate(contenders, opts.reps, `sweep ${spec.key}`, { warmup: false });
  const base = ms['pytorch hook loop']!.median;
  const ratioToPytorch = Object.fromEntries(Object.entries(ms).filter(([k]) => !k.startsWith('pytorch')).map(([k, v]) => [k, round(v.median / base, 3)]));
  const msPerHead = Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, round(v.median / nodes.length, 2)]));
  const all = layers * heads;
  const allHeadsEstimateMs = nodes.length < all ? Object.fromEntries(Object.entries(msPerHead).map(([k, v]) => [k, round(v * all, 0)])) : undefined;
  for (const [k, v] of Object.entries(ms)) log(`  ${k}: median ${v.median.toFixed(1)} ms${ratioToPytorch[k] !== undefined ? ` (${ratioToPytorch[k]}× the hook loop)` : ''}`);

  for (const r of releases) await r();
  await engine.release();
  await torch.call({ cmd: 'unload', key: spec.key });
  return {
    model: spec.key, label: spec.label, prompts: prompts.length, promptTokens: opts.promptTokens, heads: nodes.length, headsInModel: all, ablation: 'zero',
    maxRows, cleanLogitDiff: round(cl.clean.logit_diff, 4), cleanAccuracy: round(cl.clean.accuracy, 4), agreement, ms, ratioToPytorch, msPerHead, allHeadsEstimateMs,
  };
}
