// Prototype (bench only): EAP node scores from the gradient run alone. core/analysis/gradient.ts runs a clean
// forward for the activations and then the gradient graph (which runs the forward again); at α = 0 (EAP, one
// step) the gradient run's own activations are the clean ones, so asking engine.gradients for hook_z and
// hook_mlp_out saves that first forward. Zero ablation and the logit-difference metric only (the benchmark's).
import type { EvalContext } from '../../core/analysis/evaluate';
import type { NodeScore } from '../../core/analysis/attribution';
import { groupByLength } from '../../core/engine/engine';
import { allComponentNodes } from '../../core/ids';

export async function eapFromGradientRun(ctx: EvalContext): Promise<NodeScore[]> {
  const { engine, prompts } = ctx;
  const { layers, heads, dHead, dModel, vocab: V } = engine.info;
  if (ctx.ablation !== 'zero') throw new Error('prototype: zero ablation only');
  const zHooks = Array.from({ length: layers }, (_, l) => `blocks.${l}.attn.hook_z`);
  const mlpHooks = Array.from({ length: layers }, (_, l) => `blocks.${l}.hook_mlp_out`);
  const nodes = allComponentNodes(engine.info);
  const total = new Float64Array(nodes.length);
  for (const group of groupByLength(prompts.map((p) => p.ids))) {
    const T = group[0]!.ids.length;
    for (let start = 0; start < group.length; start += ctx.maxRows) {
      const chunk = group.slice(start, start + ctx.maxRows);
      const seed = new Float32Array(chunk.length * V);
      chunk.forEach((g, r) => { const p = prompts[g.index]!; seed[r * V + p.answer] += 1; seed[r * V + p.foil!] -= 1; });
      const res = await engine.gradients({ ids: chunk.map((g) => g.ids), seed, hooks: [...zHooks, ...mlpHooks] });
      // Zero ablation: Δ = 0 − a, score = −Σ Δ·g = Σ a·g (summed here, averaged over prompts at the end).
      for (let l = 0; l < layers; l++) {
        const a = res.activations[zHooks[l]!]!.data; // [R, T, H, Dh]
        const g = res.z[l]!.data; // [R, H, T, Dh]
        for (let r = 0; r < chunk.length; r++) {
          for (let h = 0; h < heads; h++) {
            let s = 0;
            for (let t = 0; t < T; t++) {
              const a0 = ((r * T + t) * heads + h) * dHead;
              const g0 = ((r * heads + h) * T + t) * dHead;
              for (let k = 0; k < dHead; k++) s += a[a0 + k]! * g[g0 + k]!;
            }
            total[l * (heads + 1) + h] += s;
          }
        }
        const am = res.activations[mlpHooks[l]!]!.data;
        const gm = res.mlp[l]!.data;
        let s = 0;
        for (let i = 0; i < chunk.length * T * dModel; i++) s += am[i]! * gm[i]!;
        total[l * (heads + 1) + heads] += s;
      }
    }
  }
  return nodes.map((id, n) => ({ id, score: total[n]! / prompts.length }));
}
