import { groupByLength } from '../../engine/feeds';
import type { F32, Feed } from '../../engine/runtime';
import { Cancelled, UserError } from '../../errors';
import { hookName } from '../../hooks';
import { allComponentNodes } from '../../ids';
import { IN } from '../../onnx/instrument';
import type { Attribution, NodeScore } from './nodes';
import type { EvalContext } from '../evaluate';
import { meter } from '../progress';
import { meanMetrics, scorePrompt } from '../metrics';
import type { MetricName } from '../../vocabulary';
import type { ResolvedPrompt } from '../prompts';

export interface GradientOptions {
  /**
   * 1 (default): EAP, the gradient at the clean activations. k > 1: EAP-IG, the gradient averaged over k points
   * (midpoints α = (j − ½)/k) on the straight line from the clean to the ablated activations of all nodes at once.
   */
  steps?: number;
}

/** What a prompt's gradient is taken of: the metric itself, or a stand-in where the metric has no useful gradient. */
export type Surrogate = 'logit_diff' | 'prob';

/**
 * The differentiable quantity standing in for a metric on one prompt. logit_diff and prob are their own;
 * accuracy (a step function) and kl (0 with zero gradient at the clean run) use the logit difference when the
 * prompt has a foil, else the answer's probability — as does logit_diff on a prompt without a foil.
 */
export function surrogateFor(metric: MetricName, prompt: ResolvedPrompt): Surrogate {
  return metric === 'prob' || prompt.foil === undefined ? 'prob' : 'logit_diff';
}

/**
 * Node attribution by gradients (EAP; EAP-IG with `steps` > 1): the first-order estimate of each head's and
 * MLP's patching score, −Σ_positions (a_ablated − a_clean) · ∂m/∂a, averaged over prompts like the metric, so
 * scores are in the units of patchingAttribution's and positive means the node supports the behaviour.
 * a_ablated follows the context's ablation: 0 (zero), the suite mean (mean) or the corrupted prompt's (resample).
 * Costs one forward and `steps` backward runs over the prompts instead of one forward run per node.
 */
export async function eapNodeScores(ctx: EvalContext, metric: MetricName, opts: GradientOptions = {}): Promise<NodeScore[]> {
  const steps = opts.steps ?? 1;
  const calls = planNodeGradientCalls(ctx, steps);
  const nodes = allComponentNodes(ctx.engine.info);
  const N = nodes.length;
  // Per prompt and node: Σ over steps of Δ·∂m/∂a (divided by steps and negated at the end), added row by row in
  // call order, here or from the rows workers computed (the same numbers, added in the same order).
  const acc = ctx.prompts.map(() => new Float64Array(N));
  const add = (call: NodeGradientRow[], rows: Float64Array) => call.forEach((r, i) => {
    const out = acc[r.prompt]!;
    for (let n = 0; n < N; n++) out[n] += rows[i * N + n]!;
  });
  const what = steps === 1 ? 'gradients (EAP)' : `gradients (EAP-IG, ${steps} steps)`;
  if (ctx.remote) {
    const values = await ctx.remote.run(ctx, { kind: 'node-gradient', steps, metric, calls }, calls.map((c) => c.length), N, what);
    let at = 0;
    for (const call of calls) { add(call, values.subarray(at, at + call.length * N) as Float64Array); at += call.length * N; }
  } else {
    const m = meter(ctx, what, ctx.prompts.length * steps);
    const clean = cleanDeltas(ctx, steps);
    for (const call of calls) {
      if (ctx.signal?.aborted) throw new Cancelled();
      add(call, await runNodeGradientCall(ctx, metric, call, clean));
      m?.tick(call.length);
    }
  }
  return nodes.map((id, n) => ({ id, score: -acc.reduce((s, a) => s + a[n]!, 0) / (steps * ctx.prompts.length) }));
}

/** A row of node gradients: a prompt (index in the context) at α on the line from clean to ablated (0: EAP). */
export interface NodeGradientRow { prompt: number; alpha: number }

/**
 * The calls of eapNodeScores: per prompt-length group, its prompts × the steps' α (prompt-major), cut into runs of
 * the context's batch size, fewer where the engine's memory budget says so.
 */
export function planNodeGradientCalls(ctx: EvalContext, steps: number): NodeGradientRow[][] {
  if (!Number.isInteger(steps) || steps < 1 || steps > 1024) throw new UserError(`--steps must be a whole number from 1 to 1024 (got ${steps})`);
  const alphas = steps === 1 ? [0] : Array.from({ length: steps }, (_, j) => (j + 0.5) / steps);
  const calls: NodeGradientRow[][] = [];
  for (const group of groupByLength(ctx.prompts.map((p) => p.ids))) {
    const rows: NodeGradientRow[] = [];
    group.forEach((g) => alphas.forEach((alpha) => rows.push({ prompt: g.index, alpha })));
    const perRun = Math.max(1, Math.min(ctx.maxRows, ctx.engine.gradientRowsThatFit(group[0]!.ids.length)));
    for (let start = 0; start < rows.length; start += perRun) calls.push(rows.slice(start, start + perRun));
  }
  return calls;
}

/** Per prompt, ablated − clean activations of every head and MLP: heads [T, H*Dh], MLPs [T, D] (or the last positions). */
type Deltas = { z: Float32Array[]; mlp: Float32Array[] };

/**
 * The deltas EAP-IG needs from a clean forward of each prompt-length group (the group run as one batch); undefined
 * for EAP, whose gradient run itself runs the clean model. Only the group last asked for is kept: the planned calls
 * take the groups in order (planNodeGradientCalls), so each is made once and memory holds one group's deltas.
 */
export function cleanDeltas(ctx: EvalContext, steps: number): ((prompt: number) => Promise<Deltas>) | undefined {
  if (steps === 1) return undefined;
  const groups = groupByLength(ctx.prompts.map((p) => p.ids));
  const at = new Map(groups.flatMap((g, k) => g.map((m, r) => [m.index, { k, r }] as const)));
  let held: { k: number; ds: Promise<Deltas[]> } | undefined;
  return async (prompt) => {
    const { k, r } = at.get(prompt)!;
    if (held?.k !== k) {
      const group = groups[k]!;
      const T = group[0]!.ids.length;
      held = {
        k, ds: ctx.engine.run({ ids: group.map((g) => g.ids), hooks: nodeHooks(ctx), lastOnly: true })
          .then((clean) => group.map((g, i) => deltaOf(ctx, clean.activations, i, g.index, T))),
      };
    }
    return (await held.ds)[r]!;
  };
}

const nodeHooks = (ctx: EvalContext) => [
  ...Array.from({ length: ctx.engine.info.layers }, (_, l) => hookName('z', l)),
  ...Array.from({ length: ctx.engine.info.layers }, (_, l) => hookName('mlp_out', l)),
];

/** Row r of a run's activations, as the ablated value minus it, for prompt `prompt` of length T. */
function deltaOf(ctx: EvalContext, acts: Record<string, F32>, r: number, prompt: number, T: number): Deltas {
  const { layers, heads, dHead, dModel } = ctx.engine.info;
  return {
    z: Array.from({ length: layers }, (_, l) => delta(acts[hookName('z', l)]!, r, T, heads * dHead, ablatedZ(ctx, prompt, l, T))),
    mlp: Array.from({ length: layers }, (_, l) => delta(acts[hookName('mlp_out', l)]!, r, T, dModel, ablatedMlp(ctx, prompt, l, T))),
  };
}

/**
 * One planned call (rows of one prompt length): per row, each node's Σ_positions Δ·∂m/∂a, [rows × nodes] in
 * allComponentNodes' order. `clean`: cleanDeltas (EAP-IG), else the gradient run's own activations serve.
 */
export async function runNodeGradientCall(ctx: EvalContext, metric: MetricName, call: NodeGradientRow[], clean?: (prompt: number) => Promise<Deltas>): Promise<Float64Array> {
  const { engine, prompts } = ctx;
  const { layers, heads, dHead, dModel, vocab: V } = engine.info;
  const N = layers * (heads + 1);
  const T = prompts[call[0]!.prompt]!.ids.length;
  if (call.some((r) => prompts[r.prompt]!.ids.length !== T)) throw new Error('internal: a node-gradient call mixes prompt lengths');
  const callPrompts = call.map((r) => prompts[r.prompt]!);
  const kinds = callPrompts.map((p) => surrogateFor(metric, p));
  const seed = kinds.every((k) => k === 'logit_diff')
    ? gradientSeed(callPrompts, kinds, V)
    : (logits: F32) => gradientSeed(callPrompts, kinds, V, logits.data);
  const patch = call.some((r) => r.alpha !== 0) ? interpolation(ctx, call, T) : undefined;
  const res = await engine.gradients({ ids: callPrompts.map((p) => p.ids), seed, patch, hooks: clean ? [] : nodeHooks(ctx) });
  const out = new Float64Array(call.length * N);
  for (const [i, r] of call.entries()) {
    const d = clean ? await clean(r.prompt) : deltaOf(ctx, res.activations, i, r.prompt, T);
    for (let l = 0; l < layers; l++) {
      const gz = res.z[l]!.data; // [rows, H, T, Dh]
      const dz = d.z[l]!; // [T, H*Dh]
      for (let h = 0; h < heads; h++) {
        let s = 0;
        for (let t = 0; t < T; t++) {
          const g0 = ((i * heads + h) * T + t) * dHead;
          const d0 = t * heads * dHead + h * dHead;
          for (let k = 0; k < dHead; k++) s += dz[d0 + k]! * gz[g0 + k]!;
        }
        out[i * N + l * (heads + 1) + h] = s;
      }
      // [rows, T, D], or [rows, 1, D] for a last layer whose MLP the gradient run takes at the last position only.
      const Tg = res.mlp[l]!.dims[1]!;
      const gm = res.mlp[l]!.data;
      const dm = d.mlp[l]!; // [T or Tg, D]: its last Tg positions meet the gradient's
      const d0 = dm.length - Tg * dModel;
      let s = 0;
      const g0 = i * Tg * dModel;
      for (let j = 0; j < Tg * dModel; j++) s += dm[d0 + j]! * gm[g0 + j]!;
      out[i * N + l * (heads + 1) + heads] = s;
    }
  }
  return out;
}

/** eapNodeScores as an Attribution (the shape `attribute` prints), with the clean metrics. */
export async function gradientAttribution(ctx: EvalContext, metric: MetricName, opts: GradientOptions = {}): Promise<Attribution> {
  const nodes = await eapNodeScores(ctx, metric, opts);
  // The clean metrics from the clean log-probabilities `prepare` kept (log-softmax leaves every metric unchanged).
  const clean = meanMetrics(ctx.prompts.map((p, i) => scorePrompt(Float32Array.from(ctx.cleanLogProbs[i]!), p.answer, p.foil, ctx.cleanLogProbs[i])));
  return { metric, method: 'gradient', nodes, edges: [], clean };
}

/** dm/d(last logits) per row, [rows × V]: one-hot(answer) − one-hot(foil), or p_a (one-hot(answer) − p). */
export function gradientSeed(prompts: ResolvedPrompt[], kinds: Surrogate[], V: number, logits?: Float32Array): Float32Array {
  const seed = new Float32Array(prompts.length * V);
  prompts.forEach((p, r) => {
    const o = r * V;
    if (kinds[r] === 'logit_diff') {
      seed[o + p.answer] += 1;
      seed[o + p.foil!] -= 1;
      return;
    }
    const row = logits!.subarray(o, o + V);
    let max = -Infinity;
    for (const v of row) if (v > max) max = v;
    let z = 0;
    for (const v of row) z += Math.exp(v - max);
    const pa = Math.exp(row[p.answer]! - max) / z;
    for (let v = 0; v < V; v++) seed[o + v] = -pa * (Math.exp(row[v]! - max) / z);
    seed[o + p.answer] += pa;
  });
  return seed;
}

/** The ablated value of layer l's heads ([T or 1, H*Dh]; undefined for zero) for a prompt. */
function ablatedZ(ctx: EvalContext, prompt: number, l: number, T: number): Float32Array | undefined {
  if (ctx.ablation === 'zero') return undefined;
  if (ctx.ablation === 'mean') return ctx.means!.z[l]!;
  return corruptedRows(ctx.corrupted![prompt]!.z[l]!, T, prompt);
}

function ablatedMlp(ctx: EvalContext, prompt: number, l: number, T: number): Float32Array | undefined {
  if (ctx.ablation === 'zero') return undefined;
  if (ctx.ablation === 'mean') return ctx.means!.mlp[l]!;
  return corruptedRows(ctx.corrupted![prompt]!.mlp[l]!, T, prompt);
}

function corruptedRows(t: F32, T: number, prompt: number): Float32Array {
  if (t.dims[1] !== T) throw new UserError(`corrupted prompt ${prompt + 1} has ${t.dims[1]} tokens but the prompt has ${T}; resample ablation needs equal lengths`);
  return t.data;
}

/**
 * ablated − clean for batch row r of a [B, T, width] activation, or of [B, Tc, width] holding the last Tc
 * positions only; `ablated` is [T, width], [width] (every position) or undefined (0).
 */
function delta(clean: F32, r: number, T: number, width: number, ablated: Float32Array | undefined): Float32Array {
  const Tc = clean.dims[1]!;
  const out = new Float32Array(Tc * width);
  const c = clean.data.subarray(r * Tc * width, (r + 1) * Tc * width);
  const shift = (T - Tc) * width;
  for (let i = 0; i < Tc * width; i++) {
    const a = ablated === undefined ? 0 : ablated.length === width ? ablated[i % width]! : ablated[shift + i]!;
    out[i] = a - c[i]!;
  }
  return out;
}

/**
 * Ablation inputs putting every head and MLP of each row at (1 − α)·a + α·a_ablated: mask 1 − α, additive
 * α·a_ablated, through the same per-row inputs that ablation uses.
 */
function interpolation(ctx: EvalContext, rows: { prompt: number; alpha: number }[], T: number): Record<string, Feed> {
  const { layers, heads, dHead, dModel } = ctx.engine.info;
  const R = rows.length;
  const feeds: Record<string, Feed> = {};
  const f32 = (dims: number[], data: Float32Array): Feed => ({ type: 'float32', dims, data });
  const Tp = ctx.ablation === 'resample' ? T : 1;
  for (let l = 0; l < layers; l++) {
    feeds[IN.zMask(l)] = f32([R, heads], Float32Array.from({ length: R * heads }, (_, i) => 1 - rows[Math.floor(i / heads)]!.alpha));
    feeds[IN.mlpMask(l)] = f32([R], Float32Array.from(rows, (r) => 1 - r.alpha));
    if (ctx.ablation === 'zero') {
      feeds[IN.zAdd(l)] = f32([1, 1, 1, 1], new Float32Array(1));
      feeds[IN.mlpAdd(l)] = f32([1, 1, 1], new Float32Array(1));
      continue;
    }
    const zAdd = new Float32Array(R * Tp * heads * dHead);
    const mAdd = new Float32Array(R * Tp * dModel);
    rows.forEach((r, i) => {
      const z = ablatedZ(ctx, r.prompt, l, T)!;
      const m = ablatedMlp(ctx, r.prompt, l, T)!;
      for (let j = 0; j < Tp * heads * dHead; j++) zAdd[i * Tp * heads * dHead + j] = r.alpha * z[j]!;
      for (let j = 0; j < Tp * dModel; j++) mAdd[i * Tp * dModel + j] = r.alpha * m[j]!;
    });
    feeds[IN.zAdd(l)] = f32([R, Tp, heads, dHead], zAdd);
    feeds[IN.mlpAdd(l)] = f32([R, Tp, dModel], mAdd);
  }
  return feeds;
}
