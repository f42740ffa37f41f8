// Metrics with heads' softmax temperatures changed (core/onnx/temperature.ts: a head's attention scores divided by
// τ before the Softmax), every (setting, prompt) a row of batched engine calls, as evaluate.ts runs ablation sets.
import type { Engine } from '../../engine/engine';
import { groupByLength } from '../../engine/feeds';
import type { F32 } from '../../engine/runtime';
import type { HeadTemperature } from '../../engine/types';
import { Cancelled, UserError } from '../../errors';
import { hookName } from '../../hooks';
import { parseNodeId, type NodeId } from '../../ids';
import type { EvalContext } from '../evaluate';
import { argmax, logSoftmax, meanMetrics, scorePrompt, type PromptScore, type SuiteMetrics } from '../metrics';

export interface TemperatureResult {
  temperatures: HeadTemperature[];
  scores: PromptScore[];
  metrics: SuiteMetrics;
}

/** A temperature must be positive and finite; the message names where it came from. */
export function checkTemperature(t: number, what: string): number {
  if (!Number.isFinite(t) || t <= 0) throw new UserError(`${what}: a softmax temperature must be a positive number (got ${t})`);
  return t;
}

/**
 * Scores of each setting (heads and their temperatures) on every prompt of the context; [] is the model as it is
 * (the clean run kept from prepare). KL is to the clean run. The context's ablation plays no part.
 */
export async function evaluateTemperatures(ctx: EvalContext, settings: HeadTemperature[][], progress?: (rows: number, total: number) => void): Promise<TemperatureResult[]> {
  const { engine, prompts } = ctx;
  const V = engine.info.vocab;
  const logits: Float32Array[][] = settings.map(() => new Array(prompts.length));
  const run = settings.map((_, s) => s).filter((s) => settings[s]!.length > 0 || !ctx.cleanLogits);
  for (let s = 0; s < settings.length; s++) if (!settings[s]!.length && ctx.cleanLogits) logits[s] = ctx.cleanLogits.map((l) => l.slice());
  const total = run.length * prompts.length;
  let done = 0;
  for (const group of groupByLength(prompts.map((p) => p.ids))) {
    const rows = run.flatMap((s) => group.map((g) => ({ setting: s, prompt: g.index })));
    for (let start = 0; start < rows.length; start += ctx.maxRows) {
      if (ctx.signal?.aborted) throw new Cancelled();
      const chunk = rows.slice(start, start + ctx.maxRows);
      const res = await engine.run({ ids: chunk.map((r) => prompts[r.prompt]!.ids), lastOnly: true, temperatures: chunk.map((r) => settings[r.setting]) });
      chunk.forEach((r, i) => { logits[r.setting]![r.prompt] = res.logits.data.slice(i * V, (i + 1) * V); });
      progress?.(done += chunk.length, total);
    }
  }
  return settings.map((temperatures, s) => {
    const scores = prompts.map((p, i) => scorePrompt(logits[s]![i]!, p.answer, p.foil, ctx.cleanLogProbs[i]));
    return { temperatures, scores, metrics: meanMetrics(scores) };
  });
}

/** One head at each temperature: the settings evaluateTemperatures takes (τ = 1 is the model itself, []). */
export function headSweep(head: NodeId, temperatures: number[]): HeadTemperature[][] {
  return temperatures.map((t) => (t === 1 ? [] : [{ head, temperature: t }]));
}

export interface PromptSweep {
  /** The head's pattern at each temperature, [n, T, T]. */
  patterns: F32;
  /** Scores at each temperature; KL is to τ = 1 (the model as it is). */
  scores: PromptScore[];
  /** The token the scores' prob and accuracy are about: the prompt's answer, else the model's own top-1 at τ = 1. */
  target: number;
}

/**
 * One prompt, one head at each temperature, in one engine call (the attention view): the head's pattern and the
 * next-token scores at each τ. Without an answer the model's own prediction (its top-1 at τ = 1) is the target.
 */
export async function sweepPrompt(engine: Engine, ids: number[], head: NodeId, temperatures: number[], answer?: number, foil?: number): Promise<PromptSweep> {
  const n = parseNodeId(head);
  if (n.kind !== 'head') throw new UserError(`"${head}" is not an attention head (a<L>.h<H>)`);
  temperatures.forEach((t) => checkTemperature(t, `temperature of ${head}`));
  const taus = [1, ...temperatures];
  const hook = hookName('pattern', n.layer);
  const res = await engine.run({ ids: taus.map(() => ids), hooks: [hook], lastOnly: true, temperatures: taus.map((t) => [{ head, temperature: t }]) });
  const { heads, vocab: V } = engine.info;
  const T = ids.length;
  const pattern = res.activations[hook]!;
  const patterns = new Float32Array(temperatures.length * T * T);
  temperatures.forEach((_, i) => patterns.set(pattern.data.subarray(((i + 1) * heads + n.head) * T * T, ((i + 1) * heads + n.head + 1) * T * T), i * T * T));
  const row = (i: number) => res.logits.data.subarray(i * V, (i + 1) * V);
  const target = answer ?? argmax(row(0));
  const clean = logSoftmax(row(0));
  const scores = temperatures.map((_, i) => scorePrompt(row(i + 1), target, foil, clean));
  return { patterns: { dims: [temperatures.length, T, T], data: patterns }, scores, target };
}
