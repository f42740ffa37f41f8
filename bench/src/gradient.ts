// Bench 3: gradient node attribution (EAP, core/analysis/attribute/gradient.ts) relative to one forward pass over the
// same prompts; PyTorch's hook-based EAP (forward + backward) relative to its forward, for context.
// Edge-level attribution is timed by bench/src/edges.ts (the `edges` section).
import { prepare } from '../../core/analysis/evaluate';
import { eapNodeScores } from '../../core/analysis/attribute/gradient';
import { alternate, log, round, timed, type Contender, type Stats, type TorchRef } from './harness';
import { loadCircuitLens, loadTorch, type ModelSpec } from './models';
import { forTorch, inductionSuite } from './suite';

export interface GradientResult {
  model: string;
  label: string;
  prompts: number;
  promptTokens: number;
  /** First eapNodeScores call: builds the backward graph's session (autodiff + onnxruntime load), then runs. */
  firstCallMs: number;
  ms: Record<string, Stats>;
  /** EAP time / forward time, each side against its own forward. */
  ratioToForward: Record<string, number>;
  /** Max |Δ| of node scores, CircuitLens vs PyTorch EAP, and the largest |score| for scale. */
  agreement: { maxAbsDiff: number; maxAbsScore: number };
}

export async function gradientBench(torch: TorchRef, spec: ModelSpec, opts: { reps: number; prompts: number; promptTokens: number; torchThreads: number }): Promise<GradientResult> {
  log(`\n[gradient] ${spec.label}: EAP over ${opts.prompts} prompts × ${opts.promptTokens} tokens`);
  const { engine } = await loadCircuitLens(spec, 'node');
  await loadTorch(torch, spec, opts.torchThreads);
  const prompts = inductionSuite(opts.prompts, opts.promptTokens, engine.info.vocab, 31);
  const ctx = await prepare(engine, prompts, 'zero');
  const ids = prompts.map((p) => p.ids);

  const first = await timed(() => eapNodeScores(ctx, 'logit_diff'));
  const ref = await torch.call<{ ms: number; scores: Record<string, number> }>({ cmd: 'eap', key: spec.key, prompts: forTorch(prompts) });
  const maxAbsDiff = Math.max(...first.value.map((n) => Math.abs(n.score - (ref.scores[n.id] ?? NaN))));
  const maxAbsScore = Math.max(...first.value.map((n) => Math.abs(n.score)));
  log(`  first call (builds the backward session) ${(first.ms / 1e3).toFixed(1)} s; max |Δ score| vs PyTorch ${maxAbsDiff.toExponential(2)} (max |score| ${maxAbsScore.toFixed(3)})`);

  const time = (f: () => Promise<unknown>) => async () => { const t0 = performance.now(); await f(); return performance.now() - t0; };
  const contenders: Contender[] = [
    { name: 'circuitlens eap', run: time(() => eapNodeScores(ctx, 'logit_diff')) },
    { name: 'circuitlens forward', run: time(() => engine.run({ ids, lastOnly: true })) },
    { name: 'pytorch eap', run: async () => (await torch.call<{ ms: number }>({ cmd: 'eap', key: spec.key, prompts: forTorch(prompts) })).ms },
    { name: 'pytorch forward', run: async () => (await torch.call<{ ms: number }>({ cmd: 'forward', key: spec.key, ids, mode: 'logits' })).ms },
  ];
  const ms = await alternate(contenders, opts.reps, `gradient ${spec.key}`);
  const ratioToForward: Record<string, number> = {
    circuitlens: round(ms['circuitlens eap']!.median / ms['circuitlens forward']!.median, 3),
    pytorch: round(ms['pytorch eap']!.median / ms['pytorch forward']!.median, 3),
  };
  log(`  EAP / forward: CircuitLens ${ratioToForward.circuitlens}×, PyTorch ${ratioToForward.pytorch}×`);
  await engine.release();
  await torch.call({ cmd: 'unload', key: spec.key });
  return {
    model: spec.key, label: spec.label, prompts: prompts.length, promptTokens: opts.promptTokens, firstCallMs: round(first.ms, 1), ms, ratioToForward,
    agreement: { maxAbsDiff, maxAbsScore },
  };
}
