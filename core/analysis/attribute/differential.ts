import type { Engine } from '../../engine/engine';
import { groupByLength } from '../../engine/feeds';
import { allComponentNodes, headId, mlpId, type NodeId } from '../../ids';
import type { ResolvedPrompt } from '../prompts';

export interface DifferentialRow {
  id: NodeId;
  /** Mean output norm at the last position (head: its z slice; MLP: its output). */
  taskNorm: number;
  controlNorm: number;
  /** Cohen's d of the per-prompt norms, task vs control (pooled standard deviation). */
  effectSize: number;
  /** Heads: mean attention entropy (nats) at the last position. */
  taskEntropy?: number;
  controlEntropy?: number;
}

/**
 * Differential activation: how much more active each head and MLP is on task prompts than on control
 * prompts. A cheap first ranking of candidates before any ablation; correlation, not causation.
 */
export async function differentialActivation(engine: Engine, task: ResolvedPrompt[], control: ResolvedPrompt[]): Promise<DifferentialRow[]> {
  const stats = async (prompts: ResolvedPrompt[]) => {
    const { layers, heads, dHead, dModel } = engine.info;
    const norms = new Map<string, number[]>();
    const entropy = new Map<string, number[]>();
    const push = (m: Map<string, number[]>, k: string, v: number) => { const a = m.get(k); if (a) a.push(v); else m.set(k, [v]); };
    const hooks = Array.from({ length: layers }, (_, l) => [`blocks.${l}.attn.hook_z`, `blocks.${l}.hook_mlp_out`, `blocks.${l}.attn.hook_pattern`]).flat();
    for (const group of groupByLength(prompts.map((p) => p.ids))) {
      const T = group[0]!.ids.length;
      const res = await engine.run({ ids: group.map((g) => g.ids), hooks });
      group.forEach((_, b) => {
        for (let l = 0; l < layers; l++) {
          const z = res.activations[`blocks.${l}.attn.hook_z`]!.data;
          const pat = res.activations[`blocks.${l}.attn.hook_pattern`]!.data;
          for (let h = 0; h < heads; h++) {
            const off = ((b * T + T - 1) * heads + h) * dHead;
            let ss = 0;
            for (let d = 0; d < dHead; d++) ss += z[off + d]! ** 2;
            push(norms, headId(l, h), Math.sqrt(ss));
            const row = ((b * heads + h) * T + T - 1) * T;
            let e = 0;
            for (let k = 0; k < T; k++) { const p = pat[row + k]!; if (p > 0) e -= p * Math.log(p); }
            push(entropy, headId(l, h), e);
          }
          const mo = res.activations[`blocks.${l}.hook_mlp_out`]!.data;
          const off = (b * T + T - 1) * dModel;
          let ss = 0;
          for (let d = 0; d < dModel; d++) ss += mo[off + d]! ** 2;
          push(norms, mlpId(l), Math.sqrt(ss));
        }
      });
    }
    return { norms, entropy };
  };
  const t = await stats(task);
  const c = await stats(control);
  const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
  const variance = (a: number[]) => { const m = mean(a); return a.reduce((s, x) => s + (x - m) ** 2, 0) / Math.max(1, a.length - 1); };
  return allComponentNodes(engine.info).map((id) => {
    const a = t.norms.get(id)!;
    const b = c.norms.get(id)!;
    const pooled = Math.sqrt(((a.length - 1) * variance(a) + (b.length - 1) * variance(b)) / Math.max(1, a.length + b.length - 2));
    const row: DifferentialRow = { id, taskNorm: mean(a), controlNorm: mean(b), effectSize: pooled > 0 ? (mean(a) - mean(b)) / pooled : 0 };
    if (t.entropy.has(id)) { row.taskEntropy = mean(t.entropy.get(id)!); row.controlEntropy = mean(c.entropy.get(id)!); }
    return row;
  }).sort((x, y) => Math.abs(y.effectSize) - Math.abs(x.effectSize));
}
