import type { Ablation, MeanActivations } from '../engine/types';
import { Cancelled } from '../errors';
import type { AblationKind } from '../vocabulary';
import type { Engine } from '../engine/engine';
import { groupByLength } from '../engine/feeds';
import type { F32 } from '../engine/runtime';
import { hookName, type HookName } from '../hooks';
import { allComponentNodes, parseNodeId, type NodeId } from '../ids';
import { faithfulness, logSoftmax, meanMetrics, necessity, rowStats, scorePrompt, type RowStats, type PromptScore, type SuiteMetrics } from './metrics';
import { METRICS, type MetricName } from '../vocabulary';
import { meter, type ProgressSink } from './progress';
import { SCORE_WIDTH, unpackScores, type RemoteWork } from './distributed/plan';
import type { ResolvedPrompt } from './prompts';

/** Everything an ablation needs that depends only on the prompts: computed once, reused for every set. */
export interface EvalContext {
  engine: Engine;
  prompts: ResolvedPrompt[];
  ablation: AblationKind;
  means?: MeanActivations;
  /** Per prompt: hook_z and hook_mlp_out of its corrupted counterpart, per layer (resample). */
  corrupted?: { z: F32[]; mlp: F32[] }[];
  /** Per prompt: clean log-probabilities at the last position (for KL). */
  cleanLogProbs: Float64Array[];
  /** Per prompt: clean last-position logits (what the empty ablation set gives, without running it again). */
  cleanLogits?: Float32Array[];
  /** Most rows per engine call. */
  maxRows: number;
  signal?: AbortSignal;
  /** Per prompt: its clean hook_resid_pre of every layer ([1, T, D] each), for runs that start at a later layer. */
  residPre?: F32[][];
  /** Where batched work reports rows done (core/analysis/progress.ts). */
  progress?: ProgressSink;
  /** Where batched calls run when not here: workers (core/analysis/distributed/run.ts onWorkers). */
  remote?: RemoteCalls;
}

/**
 * Batched engine calls computed elsewhere, each row as the local run would compute it: `callRows` rows per call,
 * `width` numbers per row; every row of every call comes back, in call order. `ctx`: the context asking (its
 * prompts, ablation and batch size must be the ones the remote was made for; its signal cancels, its sink shows
 * progress).
 */
export interface RemoteCalls {
  run(ctx: Pick<EvalContext, 'prompts' | 'ablation' | 'maxRows' | 'signal' | 'progress'>, work: RemoteWork, callRows: number[], width: number, what: string): Promise<Float64Array | Float32Array>;
}

/** Ablation sweeps start each row at the lowest layer it ablates when the engine can; clean residuals are kept up to this size. */
const RESID_CACHE_BYTES = 1 << 30;

export interface SetResult {
  ablated: NodeId[];
  scores: PromptScore[];
  metrics: SuiteMetrics;
}

function checkCancelled(signal?: AbortSignal) {
  if (signal?.aborted) throw new Cancelled();
}

/**
 * `meanOver`: the prompts whose mean activations replace ablated nodes. DESIGN §4 says all suite prompts and
 * positions, so callers that evaluate a subset (task or control prompts) pass the whole suite here. `clean: false`:
 * without the clean run (a worker's context for singleSetCall, which runs the clean calls itself).
 */
export async function prepare(
  engine: Engine, prompts: ResolvedPrompt[], ablation: AblationKind,
  opts: { maxRows?: number; signal?: AbortSignal; meanOver?: ResolvedPrompt[]; progress?: ProgressSink; clean?: boolean } = {},
): Promise<EvalContext> {
  const ctx = bareContext(engine, prompts, ablation, opts);
  if (ablation === 'mean') ctx.means = await engine.means((opts.meanOver ?? prompts).map((p) => p.ids));
  if (ablation === 'resample') ctx.corrupted = await corruptedActivations(engine, prompts);
  if (opts.clean !== false) await cleanRun(ctx);
  return ctx;
}

/** A context with nothing run yet: enough to plan its calls (the coordinator of work that workers compute). */
export function bareContext(engine: Engine, prompts: ResolvedPrompt[], ablation: AblationKind, opts: { maxRows?: number; signal?: AbortSignal; progress?: ProgressSink } = {}): EvalContext {
  return { engine, prompts, ablation, cleanLogProbs: [], maxRows: opts.maxRows ?? 256, signal: opts.signal, progress: opts.progress };
}

/**
 * The clean run of every prompt: its last-position logits and, where layers can be skipped and they fit in
 * RESID_CACHE_BYTES, its hook_resid_pre of every layer, which the lean metrics session computes anyway.
 */
async function cleanRun(ctx: EvalContext): Promise<void> {
  const hooks = cleanHooks(ctx);
  const logits: Float32Array[] = new Array(ctx.prompts.length);
  const resid: F32[][] = new Array(ctx.prompts.length);
  const V = ctx.engine.info.vocab;
  for (const call of planCleanCalls(ctx)) {
    checkCancelled(ctx.signal);
    const res = await runCleanCall(ctx, call, hooks);
    call.forEach((p, r) => {
      logits[p] = res.logits.data.slice(r * V, (r + 1) * V);
      if (hooks.length) resid[p] = hooks.map((h) => sliceRow(res.activations[h]!, r));
    });
  }
  ctx.cleanLogits = logits;
  ctx.cleanLogProbs = logits.map((l) => logSoftmax(l));
  if (hooks.length) ctx.residPre = resid;
}

/** The clean run's engine calls: per prompt length, the prompts (their indices) cut at maxRows. */
export function planCleanCalls(ctx: Pick<EvalContext, 'prompts' | 'maxRows'>): number[][] {
  const calls: number[][] = [];
  for (const group of groupByLength(ctx.prompts.map((p) => p.ids))) {
    for (let start = 0; start < group.length; start += ctx.maxRows) calls.push(group.slice(start, start + ctx.maxRows).map((g) => g.index));
  }
  return calls;
}

/** What the clean run records besides the logits: every layer's hook_resid_pre where it is kept (the same on a worker). */
function cleanHooks(ctx: EvalContext): HookName[] {
  const { engine, prompts } = ctx;
  const { layers, dModel } = engine.info;
  const cacheBytes = prompts.reduce((a, p) => a + p.ids.length, 0) * layers * dModel * 4;
  return engine.maySkipLayers && cacheBytes <= RESID_CACHE_BYTES ? Array.from({ length: layers }, (_, l) => hookName('resid_pre', l)) : [];
}

function runCleanCall(ctx: EvalContext, call: number[], hooks: HookName[]) {
  return ctx.engine.run({ ids: call.map((p) => ctx.prompts[p]!.ids), hooks, lastOnly: true });
}

async function corruptedActivations(engine: Engine, prompts: ResolvedPrompt[]) {
  const L = engine.info.layers;
  const hooks = Array.from({ length: L }, (_, l) => [`blocks.${l}.attn.hook_z`, `blocks.${l}.hook_mlp_out`]).flat();
  const out: { z: F32[]; mlp: F32[] }[] = new Array(prompts.length);
  for (const group of groupByLength(prompts.map((p) => p.corruptedIds!))) {
    const res = await engine.run({ ids: group.map((g) => g.ids), hooks });
    group.forEach((g, r) => {
      out[g.index] = {
        z: Array.from({ length: L }, (_, l) => sliceRow(res.activations[`blocks.${l}.attn.hook_z`]!, r)),
        mlp: Array.from({ length: L }, (_, l) => sliceRow(res.activations[`blocks.${l}.hook_mlp_out`]!, r)),
      };
    });
  }
  return out;
}

/** Batch row r of a batch-first tensor, with a batch dimension of 1 (a copy). */
export function sliceRow(t: F32, r: number): F32 {
  const w = t.data.length / t.dims[0]!;
  return { dims: [1, ...t.dims.slice(1)], data: t.data.slice(r * w, (r + 1) * w) };
}

/** Rows of equal shape ([1, ...] each) stacked into one batch. */
export function concatRows(rows: F32[]): F32 {
  const w = rows[0]!.data.length;
  const data = new Float32Array(w * rows.length);
  rows.forEach((r, i) => data.set(r.data, i * w));
  return { dims: [rows.length, ...rows[0]!.dims.slice(1)], data };
}

/** One row of a batched sweep: an ablation set on a prompt, run from a layer (0: the whole model). */
export interface SetRow { set: number; prompt: number; layer: number }

/**
 * The engine calls of runSets, in order: per prompt length, the rows of every set to run (the empty set is the
 * clean run kept from prepare), sorted by the layer they start at and cut at maxRows and where that layer
 * changes. A distributed run (core/analysis/distributed/) plans the same calls, so its rows equal these bit for
 * bit (results can depend on what else is in a batch).
 */
export async function planSetCalls(ctx: EvalContext, sets: NodeId[][]): Promise<SetRow[][]> {
  const { engine, prompts } = ctx;
  const run = sets.map((_, s) => s).filter((s) => sets[s]!.length > 0 || !ctx.cleanLogits);
  // Layer skipping: a set that ablates nothing below layer l runs from the clean resid_pre of layer l, kept from
  // the clean run. Only for sweeps of several sets: the first use builds one more session.
  const firstLayer = sets.map((set) => (set.length ? Math.min(...set.map((id) => layerOf(id))) : 0));
  const skipping = ctx.residPre !== undefined && run.length >= 4 && run.some((s) => firstLayer[s]! > 0) && (await engine.canSkipLayers());
  const calls: SetRow[][] = [];
  for (const group of groupByLength(prompts.map((p) => p.ids))) {
    const rows: SetRow[] = [];
    run.forEach((s) => group.forEach((g) => rows.push({ set: s, prompt: g.index, layer: skipping ? firstLayer[s]! : 0 })));
    // Rows of one engine call share their first layer.
    rows.sort((a, b) => a.layer - b.layer);
    for (let start = 0; start < rows.length;) {
      let end = start + 1;
      while (end < rows.length && end - start < ctx.maxRows && rows[end]!.layer === rows[start]!.layer) end++;
      calls.push(rows.slice(start, end));
      start = end;
    }
  }
  return calls;
}

/** One planned call of runSets: each row's last-position logits, and its statistics where the engine has them. */
export async function runSetCall(ctx: EvalContext, sets: NodeId[][], chunk: SetRow[]): Promise<{ logits: Float32Array[]; stats: (RowStats | undefined)[] }> {
  const { engine, prompts } = ctx;
  const V = engine.info.vocab;
  const layer = chunk[0]!.layer;
  const resid = layer > 0 ? concatRows(chunk.map((r) => ctx.residPre![r.prompt]![layer]!)) : undefined;
  const ablations: (Ablation | undefined)[] = chunk.map((r) => (sets[r.set]!.length ? { nodes: sets[r.set]!, kind: ctx.ablation } : undefined));
  const resample = ctx.ablation === 'resample' && ablations.some(Boolean)
    ? {
        z: Array.from({ length: engine.info.layers }, (_, l) => concatRows(chunk.map((r) => ctx.corrupted![r.prompt]!.z[l]!))),
        mlp: Array.from({ length: engine.info.layers }, (_, l) => concatRows(chunk.map((r) => ctx.corrupted![r.prompt]!.mlp[l]!))),
      }
    : undefined;
  const res = await engine.run({
    ids: chunk.map((r) => prompts[r.prompt]!.ids), ablations, means: ctx.means, resample, lastOnly: true,
    start: resid ? { layer, resid } : undefined, stats: true,
  });
  return {
    logits: chunk.map((_, i) => res.logits.data.slice(i * V, (i + 1) * V)),
    stats: chunk.map((_, i) => (res.stats ? rowStats(res.stats.data, i) : undefined)),
  };
}

/**
 * Last-position logits for every (ablation set, prompt): sets × prompts rows, grouped by prompt length and
 * cut into engine calls of at most maxRows rows, each row with its own ablation (planSetCalls). `stats`: each
 * row's statistics where the engine computed them (RunRequest.stats; not for the clean rows kept from prepare).
 */
export async function runSets(ctx: EvalContext, sets: NodeId[][]): Promise<{ logits: Float32Array[][]; stats: (RowStats | undefined)[][] }> {
  const out: Float32Array[][] = sets.map(() => new Array(ctx.prompts.length));
  const stats: (RowStats | undefined)[][] = sets.map(() => new Array(ctx.prompts.length));
  // The empty set is the clean run, kept from prepare.
  for (let s = 0; s < sets.length; s++) if (!sets[s]!.length && ctx.cleanLogits) out[s] = ctx.cleanLogits.map((l) => l.slice());
  const calls = await planSetCalls(ctx, sets);
  const m = meter(ctx, 'ablation sets', calls.reduce((a, c) => a + c.length, 0));
  for (const chunk of calls) {
    checkCancelled(ctx.signal);
    const res = await runSetCall(ctx, sets, chunk);
    chunk.forEach((r, i) => {
      out[r.set]![r.prompt] = res.logits[i]!;
      stats[r.set]![r.prompt] = res.stats[i];
    });
    m?.tick(chunk.length);
  }
  return { logits: out, stats };
}

function layerOf(id: NodeId): number {
  const n = parseNodeId(id);
  return n.kind === 'head' || n.kind === 'mlp' ? n.layer : 0;
}

/** Scores of each ablation set (nodes to ablate) on every prompt; [] is the unablated model. */
export async function evaluateSets(ctx: EvalContext, sets: NodeId[][]): Promise<SetResult[]> {
  if (ctx.remote) return evaluateSetsRemotely(ctx, ctx.remote, sets);
  const { logits, stats } = await runSets(ctx, sets);
  return setResults(ctx, sets, (s, i) => scoreRow(ctx, i, logits[s]![i]!, stats[s]![i]));
}

/** evaluateSets with the planned calls computed by workers: each row's score comes back; the clean rows are kept. */
async function evaluateSetsRemotely(ctx: EvalContext, remote: RemoteCalls, sets: NodeId[][]): Promise<SetResult[]> {
  const calls = await planSetCalls(ctx, sets);
  const values = calls.length ? await remote.run(ctx, { kind: 'sets', sets, calls }, calls.map((c) => c.length), SCORE_WIDTH, 'ablation sets') : new Float64Array(0);
  const scores = unpackScores(values, calls, sets.length);
  return setResults(ctx, sets, (s, i) => scores[s]![i] ?? scoreRow(ctx, i, ctx.cleanLogits![i]!));
}

/**
 * One set (empty: the clean model) on every prompt of a context with nothing prepared (bareContext), computed by its
 * remote: what prepare's clean run and evaluateSets(ctx, [set]) give here, bit for bit, in the same engine calls.
 * Each call of the clean run (planCleanCalls) goes with the call of the same prompts that evaluateSets runs for the
 * set (a single set: no layer skipping, the same cut, checked below), so a worker needs no clean run of all the
 * prompts, and each row comes back as its score (5 numbers), not its logits (a vocabulary's worth).
 */
export async function singleSetRemotely(ctx: EvalContext, set: NodeId[]): Promise<PromptScore[]> {
  if (!ctx.remote) throw new Error('internal: singleSetRemotely on a context without a remote');
  const calls = planCleanCalls(ctx);
  const setCalls = await planSetCalls({ ...ctx, cleanLogits: undefined, residPre: undefined }, [set]);
  if (setCalls.length !== calls.length || setCalls.some((c, k) => c.length !== calls[k]!.length || c.some((r, j) => r.prompt !== calls[k]![j] || r.layer !== 0))) {
    throw new Error('internal: the calls of a single ablation set are not those of the clean run');
  }
  const what = set.length ? 'prompts, clean and ablated' : 'prompts';
  const values = calls.length ? await ctx.remote.run(ctx, { kind: 'single-set', set }, calls.map((c) => c.length), SCORE_WIDTH, what) : new Float64Array(0);
  return unpackScores(values, calls.map((c) => c.map((prompt) => ({ set: 0, prompt }))), 1)[0]!;
}

/** A worker's part of singleSetRemotely: one call of the clean run and, with a set, the same prompts ablated by it; their scores. */
export async function singleSetCall(ctx: EvalContext, set: NodeId[], call: number[]): Promise<PromptScore[]> {
  const V = ctx.engine.info.vocab;
  const clean = await runCleanCall(ctx, call, cleanHooks(ctx));
  const logits = call.map((_, r) => clean.logits.data.slice(r * V, (r + 1) * V));
  const cleanLogProbs: Float64Array[] = [];
  call.forEach((p, r) => { cleanLogProbs[p] = logSoftmax(logits[r]!); });
  const scoring = { prompts: ctx.prompts, cleanLogProbs };
  if (!set.length) return call.map((p, r) => scoreRow(scoring, p, logits[r]!));
  const res = await runSetCall(ctx, [set], call.map((prompt) => ({ set: 0, prompt, layer: 0 })));
  return call.map((p, r) => scoreRow(scoring, p, res.logits[r]!, res.stats[r]));
}

/** The scores of one row: prompt `i` of the context with these last-position logits. */
export function scoreRow(ctx: Pick<EvalContext, 'prompts' | 'cleanLogProbs'>, i: number, logits: Float32Array, stats?: RowStats): PromptScore {
  const p = ctx.prompts[i]!;
  return scorePrompt(logits, p.answer, p.foil, ctx.cleanLogProbs[i], stats);
}

/** Each set's scores on every prompt (`score(set, prompt)`) and their means. */
export function setResults(ctx: EvalContext, sets: NodeId[][], score: (s: number, prompt: number) => PromptScore): SetResult[] {
  return sets.map((ablated, s) => {
    const scores = ctx.prompts.map((_, i) => score(s, i));
    return { ablated, scores, metrics: meanMetrics(scores) };
  });
}

export interface CircuitEvaluation {
  /** Faithfulness under each metric (DESIGN §4: always more than one). */
  faithfulness: Record<MetricName, number>;
  necessity: Record<MetricName, number>;
  full: SuiteMetrics;
  empty: SuiteMetrics;
  circuit: SuiteMetrics;
  complement: SuiteMetrics;
  circuitScores: PromptScore[];
}

/** Faithfulness and necessity of a node circuit, with everything outside it (or it) ablated. */
export async function evaluateCircuit(ctx: EvalContext, nodes: NodeId[]): Promise<CircuitEvaluation> {
  const all = allComponentNodes(ctx.engine.info);
  const inC = new Set<string>(nodes);
  const outside = all.filter((n) => !inC.has(n));
  const inside = all.filter((n) => inC.has(n));
  const [full, empty, circuit, complement] = await evaluateSets(ctx, [[], all, outside, inside]);
  const f = {} as Record<MetricName, number>;
  const n = {} as Record<MetricName, number>;
  for (const m of METRICS) {
    f[m] = faithfulness(m, circuit!.metrics, empty!.metrics, full!.metrics);
    n[m] = necessity(m, complement!.metrics, empty!.metrics, full!.metrics);
  }
  return { faithfulness: f, necessity: n, full: full!.metrics, empty: empty!.metrics, circuit: circuit!.metrics, complement: complement!.metrics, circuitScores: circuit!.scores };
}
