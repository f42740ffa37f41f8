// The `attention` use case: per head, the entropy of its attention at each position over a suite's prompts, and
// the suite's metrics when its softmax temperature changes (core/analysis/attention/temperature.ts).
import { groupByLength } from '../../engine/feeds';
import { hookName } from '../../hooks';
import { parseNodeId, type NodeId } from '../../ids';
import type { SuiteMetrics } from '../metrics';
import type { EvalContext } from '../evaluate';
import { entropyPerPosition, EntropyByPosition, maxEntropyAt } from './stats';
import { evaluateTemperatures, headSweep } from './temperature';

export interface HeadStatistics {
  id: NodeId;
  /** Mean over every prompt and position of the query's attention entropy (nats). */
  meanEntropy: number;
  /** Per position q: the mean over the prompts that reach q (nats; at most ln(q + 1)). */
  entropy: number[];
  /** The suite's metrics with this head's scores divided by each temperature (τ = 1: the model as it is). */
  byTemperature: { temperature: number; metrics: SuiteMetrics }[];
}

export interface AttentionStatistics {
  temperatures: number[];
  /** Per position: how many prompts reach it. */
  positions: number[];
  /** Per position q: ln(q + 1), the entropy of uniform attention there. */
  maxEntropy: number[];
  heads: HeadStatistics[];
}

/**
 * Entropy per head and position (clean runs, hook_pattern of the heads' layers) and metrics versus temperature
 * (one sweep per head, every head's rows batched) over the context's prompts.
 */
export async function attentionStatistics(ctx: EvalContext, heads: NodeId[], temperatures: number[], progress?: (rows: number, total: number) => void): Promise<AttentionStatistics> {
  const { engine, prompts } = ctx;
  const H = engine.info.heads;
  const parsed = heads.map((id) => ({ id, ...(parseNodeId(id) as { layer: number; head: number }) }));
  const layers = [...new Set(parsed.map((p) => p.layer))].sort((a, b) => a - b);
  const byLayer = new Map(layers.map((l) => [l, new EntropyByPosition(H)]));
  const sums = new Map(layers.map((l) => [l, new Float64Array(H)]));
  let count = 0;
  for (const group of groupByLength(prompts.map((p) => p.ids))) {
    const T = group[0]!.ids.length;
    for (let start = 0; start < group.length; start += ctx.maxRows) {
      const chunk = group.slice(start, start + ctx.maxRows);
      const res = await engine.run({ ids: chunk.map((g) => g.ids), hooks: layers.map((l) => hookName('pattern', l)) });
      for (const l of layers) {
        const data = res.activations[hookName('pattern', l)]!.data;
        chunk.forEach((_, r) => {
          const e = entropyPerPosition(data, H, T, r * H * T * T);
          byLayer.get(l)!.add(e, T);
          const s = sums.get(l)!;
          for (let h = 0; h < H; h++) for (let q = 0; q < T; q++) s[h]! += e[h * T + q]!;
        });
      }
      count += chunk.length * T;
    }
  }
  const results = await evaluateTemperatures(ctx, heads.flatMap((id) => headSweep(id, temperatures)), progress);
  const first = byLayer.get(layers[0]!)!;
  return {
    temperatures,
    positions: first.positions,
    maxEntropy: first.positions.map((_, q) => maxEntropyAt(q)),
    heads: parsed.map((p, i) => ({
      id: p.id,
      meanEntropy: sums.get(p.layer)![p.head]! / count,
      entropy: byLayer.get(p.layer)!.means()[p.head]!,
      byTemperature: temperatures.map((t, j) => ({ temperature: t, metrics: results[i * temperatures.length + j]!.metrics })),
    })),
  };
}
