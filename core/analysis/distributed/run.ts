// Distributed runs, the use case: an analysis whose evaluation contexts carry a `remote` (EvalContext.remote) hands
// its batched engine calls to workers — the ablation sets of evaluateSets (attribution, discovery, verification
// and whatever else batches node ablations), exact edge patching, edge gradients and the sweep's prompts (its clean
// run and one set, evaluate.ts singleSetRemotely) — as chunks of the local run's own calls, merged in call order,
// so the result equals the local one bit for bit. The coordinator reaches the workers through a JobRunner
// (core/nodejs/broker.ts: BullMQ on Redis); a worker (`circuitlens worker`) prepares the same context from the
// suite and the model, and computes chunks with computeChunk.
import { UserError } from '../../errors';
import type { AblationKind } from '../../vocabulary';
import { edgePatchingSet, planGradientCalls, runGradientCall } from '../attribute/edges';
import { cleanDeltas, runNodeGradientCall } from '../attribute/gradient';
import { edgeCallPlan, prepareEdges, runEdgeCall, type CallPlan, type EdgeContext } from '../edge-context';
import { planCleanCalls, prepare, runSetCall, scoreRow, singleSetCall, type EvalContext, type RemoteCalls } from '../evaluate';
import { taskPrompts, type OpenedSuite } from '../open-suite';
import { meter } from '../progress';
import { sweepPrompts } from '../sweep/sweep';
import type { NodeId } from '../../ids';
import { identityText, packRows, packScore, planChunks, SCORE_WIDTH, unpackRows, type Chunk, type ContextIdentity, type PackedRows, type PromptSelection, type RemoteKind, type RemoteWork, type VariantWork } from './plan';

/**
 * What a chunk computes: the calls themselves (node sets), or the analysis a worker plans again (edge work), or one
 * variant of the weights measured whole (distributed/variants.ts).
 */
export type ChunkWork = RemoteWork | VariantWork;

/**
 * The model a chunk runs on: the coordinator's path and the file's sha256 (a worker uses its file at that path when
 * it has those bytes); with `url` (--model-url), where a worker that lacks it fetches it, and `files`, every file it
 * loads with (the model file first, then its tokenizer, sidecar and external data; names relative to its folder),
 * each checked by size and sha256. Not part of the ContextIdentity: where the bytes come from changes no row.
 */
export interface ModelSpec {
  path: string;
  sha256: string;
  url?: string;
  files?: { name: string; size: number; sha256: string }[];
}

/** The context a chunk runs in: the model, the suite (path and text), and how it was prepared. */
export interface ContextSpec {
  /** The hash of its ContextIdentity: workers keep prepared contexts by it. */
  key: string;
  model: ModelSpec;
  suite: { path: string; text: string };
  prompts: PromptSelection;
  ablation: AblationKind;
  runtime: 'node' | 'wasm';
  maxRows: number;
}

/** One job: a chunk of calls [from, to) of a batch, with everything a worker needs to compute it. */
export interface ChunkJob {
  format: 2;
  version: string;
  context: ContextSpec;
  work: ChunkWork;
  chunk: { from: number; to: number; rows: number };
}

/** What a worker answers: the chunk's rows, in call order. */
export interface ChunkResult {
  rows: PackedRows;
  /** host:pid of the worker that computed it. */
  worker: string;
  /** Milliseconds the worker spent on it, loading included. */
  ms: number;
}

/**
 * The coordinator's port to the workers: adds the jobs (adding an id again is a no-op), waits for all, and gives
 * their results back in the order given; `done(rows, id, result)` as each finishes. Cancelled by `signal`: throws
 * Cancelled (core/errors) after taking back the jobs no worker has started.
 */
export interface JobRunner {
  run(jobs: { id: string; name: string; data: ChunkJob; rows: number }[], done: (rows: number, id?: string, result?: unknown) => void, signal?: AbortSignal): Promise<unknown[]>;
}

/** The run as the front end knows it: the files, the runtime and the version everything is computed with. */
export interface RunSource {
  version: string;
  model: ModelSpec;
  suite: { path: string; text: string };
  runtime: 'node' | 'wasm';
}

export interface Broker {
  jobs: JobRunner;
  /** sha256 of a text, lower-case hex. */
  hash(text: string): string;
  /** Rows per chunk (CHUNK_ROWS when not given). */
  targetRows?: number;
}

/**
 * Sends the batched work of these contexts to workers from now on. The contexts must be the suite's own, as
 * prepareSuite made them (task prompts, control prompts): a worker prepares them again from the suite.
 */
export function onWorkers(contexts: { task: EvalContext; control?: EvalContext }, source: RunSource, broker: Broker): void {
  contexts.task.remote = remoteFor(contexts.task, 'task', source, broker);
  if (contexts.control) contexts.control.remote = remoteFor(contexts.control, 'control', source, broker);
}

/**
 * Binds contexts that a use case prepares itself to the workers: `prompts` says which prompts the context holds,
 * for a worker to prepare the same (the sweep's: sweep/sweep.ts runSweep with `remote`).
 */
export function workersFor(source: RunSource, broker: Broker): (ctx: EvalContext, prompts: PromptSelection) => RemoteCalls {
  return (ctx, prompts) => remoteFor(ctx, prompts, source, broker);
}

/** The context a worker prepares again for these prompts (the suite's task or control prompts, a sweep's), with its key. */
export function contextSpec(source: RunSource, broker: Pick<Broker, 'hash'>, prompts: PromptSelection, ablation: AblationKind, maxRows: number): ContextSpec {
  const identity: ContextIdentity = {
    format: 2, version: source.version, modelSha256: source.model.sha256, suiteText: source.suite.text, prompts,
    ablation, runtime: source.runtime, maxRows,
  };
  return { key: broker.hash(identityText(identity)).slice(0, 32), model: source.model, suite: source.suite, prompts, ablation, runtime: source.runtime, maxRows };
}

function remoteFor(ctx: EvalContext, prompts: PromptSelection, source: RunSource, broker: Broker): RemoteCalls {
  const context = contextSpec(source, broker, prompts, ctx.ablation, ctx.maxRows);
  const bound = ctx.prompts;
  return {
    async run(asking: Pick<EvalContext, 'prompts' | 'ablation' | 'maxRows' | 'signal' | 'progress'>, work: RemoteWork, callRows: number[], width: number, what: string) {
      // A context made from this one for other prompts (or ablation) would be computed as the suite's by the workers.
      if (asking.prompts !== bound || asking.ablation !== ctx.ablation || asking.maxRows !== ctx.maxRows) throw new Error('internal: a distributed context whose prompts, ablation or batch size changed');
      // The run key: the context, the work and the chunking; the same batch asked again gets the same chunk ids.
      const runKey = broker.hash(identityText({ context: context.key, work, targetRows: broker.targetRows ?? null })).slice(0, 32);
      const chunks = planChunks(runKey, callRows, broker.targetRows);
      const total = callRows.reduce((x, y) => x + y, 0);
      const m = meter(asking, `${what} on workers, ${chunks.length} chunk${chunks.length === 1 ? '' : 's'}`, total);
      const jobs = chunks.map((c) => ({
        id: c.id, name: work.kind, rows: c.rows,
        data: { format: 2 as const, version: source.version, context, work: chunkWork(work, c), chunk: { from: c.from, to: c.to, rows: c.rows } },
      }));
      const results = await broker.jobs.run(jobs, (rows) => m?.tick(rows), asking.signal);
      return concatChunks(chunks, results, width, total, work.kind);
    },
  };
}

/** What one chunk carries: for node sets, its calls and only the sets they use (renumbered). */
function chunkWork(work: RemoteWork, c: Chunk): ChunkWork {
  // Node gradients: the chunk's calls, numbered as in the whole plan (the worker checks it sees the same calls).
  if (work.kind === 'node-gradient') return { ...work, calls: work.calls.slice(c.from, c.to) };
  if (work.kind !== 'sets') return work;
  const calls = work.calls.slice(c.from, c.to);
  const index = new Map<number, number>();
  const sets: NodeId[][] = [];
  const renumbered = calls.map((call) => call.map((r) => {
    let s = index.get(r.set);
    if (s === undefined) { s = sets.length; index.set(r.set, s); sets.push(work.sets[r.set]!); }
    return { set: s, prompt: r.prompt, layer: r.layer };
  }));
  return { kind: 'sets', sets, calls: renumbered };
}

/** The chunks' rows as one array in call order, each chunk checked for its size. */
function concatChunks(chunks: Chunk[], results: unknown[], width: number, totalRows: number, kind: RemoteKind): Float64Array | Float32Array {
  const parts = results.map((r, i) => {
    const c = chunks[i]!;
    const rows = (r as Partial<ChunkResult> | undefined)?.rows;
    if (!rows || typeof rows.data !== 'string') throw new UserError(`chunk ${c.id}: the worker's answer is not a CircuitLens chunk result`);
    const v = unpackRows(rows);
    if (rows.width !== width || v.length !== c.rows * width) throw new Error(`chunk ${c.id} came back with ${v.length / Math.max(1, rows.width)} rows of ${rows.width}, expected ${c.rows} of ${width}`);
    return v;
  });
  const out = kind === 'edge-gradient' ? new Float32Array(totalRows * width) : new Float64Array(totalRows * width);
  let at = 0;
  for (const v of parts) { out.set(v, at); at += v.length; }
  return out;
}

// ---- the worker's side ------------------------------------------------------------------------------------------

/** A worker's context for a ContextSpec: prepared as prepareSuite prepares it; the edge context when first asked. */
export interface Prepared {
  ctx: EvalContext;
  edges(): Promise<EdgeContext>;
}

/**
 * The context of a chunk's prompts, prepared as the coordinator's (prepareSuite: means over all prompts); a sweep's
 * without its clean run, which each single-set call makes for its own prompts.
 */
export async function prepareForChunks(opened: OpenedSuite, prompts: PromptSelection): Promise<Prepared> {
  if (typeof prompts === 'object') {
    if (typeof prompts.sweep !== 'string') throw new Error(`this worker does not know the prompts ${JSON.stringify(prompts)}`);
    const ctx = await prepare(opened.engine, sweepPrompts(opened, prompts.sweep), opened.ablation, { meanOver: opened.all, clean: false });
    return { ctx, edges: () => Promise.reject(new Error('internal: edge work on a sweep\'s context')) };
  }
  const ps = prompts === 'task' ? taskPrompts(opened) : opened.control;
  if (!ps.length) throw new UserError(`suite "${opened.suite.name}" has no ${prompts} prompts here`);
  const ctx = await prepare(opened.engine, ps, opened.ablation, { meanOver: opened.all });
  let ec: Promise<EdgeContext> | undefined;
  return { ctx, edges: () => (ec ??= prepareEdges(ctx, opened.all)) };
}

/** A worker's part: the chunk's calls, their rows packed in call order (scores, or float32 gradients). */
export async function computeChunk(p: Prepared, job: Pick<ChunkJob, 'work' | 'chunk'>): Promise<PackedRows> {
  const { work, chunk } = job;
  const { ctx } = p;
  if (work.kind === 'variant') throw new Error('internal: a variant is measured by computeVariant (distributed/variants.ts)');
  if (work.kind === 'single-set') {
    const out: Float64Array[] = [];
    for (const call of checkRange(planned(planCleanCalls(ctx)), chunk)) {
      const scores = await singleSetCall(ctx, work.set, call);
      const v = new Float64Array(call.length * SCORE_WIDTH);
      scores.forEach((s, i) => packScore(v, i * SCORE_WIDTH, s));
      out.push(v);
    }
    return packScores(out, chunk.rows, SCORE_WIDTH);
  }
  if (work.kind === 'sets') {
    // Rows are scored against the clean run's log-probabilities, which a sweep's context does not keep.
    if (!ctx.cleanLogits) throw new Error('internal: ablation sets on a context prepared without its clean run');
    const P = ctx.prompts.length;
    for (const call of work.calls) {
      for (const r of call) {
        if (!Number.isInteger(r.prompt) || r.prompt < 0 || r.prompt >= P || !work.sets[r.set]) throw new Error(`chunk rows name set ${r.set} and prompt ${r.prompt}; this context has ${work.sets.length} sets and ${P} prompts`);
      }
      // A call that starts at a later layer needs the clean residuals and the skipping session, as on the coordinator.
      if (call[0]!.layer > 0 && (!ctx.residPre || !(await ctx.engine.canSkipLayers()))) throw new Error('the chunk starts rows at a later layer, which this worker cannot: the plans differ');
    }
    const out: Float64Array[] = [];
    for (const call of work.calls) {
      const res = await runSetCall(ctx, work.sets, call);
      const v = new Float64Array(call.length * SCORE_WIDTH);
      call.forEach((r, i) => packScore(v, i * SCORE_WIDTH, scoreRow(ctx, r.prompt, res.logits[i]!, res.stats[i])));
      out.push(v);
    }
    return packScores(out, chunk.rows, SCORE_WIDTH);
  }
  if (work.kind === 'node-gradient') {
    const P = ctx.prompts.length;
    if (work.calls.length !== chunk.to - chunk.from) throw new Error(`chunk [${chunk.from}, ${chunk.to}) carries ${work.calls.length} calls`);
    for (const call of work.calls) {
      for (const r of call) {
        if (!Number.isInteger(r.prompt) || r.prompt < 0 || r.prompt >= P || !(r.alpha >= 0 && r.alpha < 1)) throw new Error(`chunk rows name prompt ${r.prompt} at α ${r.alpha}; this context has ${P} prompts`);
      }
    }
    const N = ctx.engine.info.layers * (ctx.engine.info.heads + 1);
    const clean = cleanDeltas(ctx, work.steps);
    const out: Float64Array[] = [];
    for (const call of work.calls) out.push(await runNodeGradientCall(ctx, work.metric, call, clean));
    return packScores(out, chunk.rows, N);
  }
  const ec = await p.edges();
  if (work.kind === 'edge-patching') {
    const calls = checkRange(edgeCallPlan(ec, ec.ids.length + 1), chunk);
    // Only the sets this chunk's rows use: all E + 1 of them are E² floats (4 GB at GPT-2-small's 32k edges).
    const sets: Float32Array[] = [];
    for (const call of calls) for (const r of call) sets[r.set] ??= edgePatchingSet(ec, r.set);
    const out: Float64Array[] = [];
    for (const call of calls) {
      const logits = await runEdgeCall(ec, sets, call);
      const v = new Float64Array(call.length * SCORE_WIDTH);
      call.forEach((r, i) => packScore(v, i * SCORE_WIDTH, scoreRow(ctx, r.prompt, logits[i]!)));
      out.push(v);
    }
    return packScores(out, chunk.rows, SCORE_WIDTH);
  }
  const calls = checkRange(planned(planGradientCalls(ec, work.steps)), chunk);
  const E = ec.ids.length;
  const out = new Float32Array(chunk.rows * E);
  let at = 0;
  for (const call of calls) { const g = await runGradientCall(ec, work.metric, call); out.set(g, at); at += g.length; }
  return packRows(out, E);
}

/** A plan built whole, as a CallPlan. */
function planned<T>(calls: T[][]): CallPlan<T> {
  return { count: calls.length, calls: (from, to) => calls.slice(from, to) };
}

/** Calls [from, to) of a plan made here, checked against the chunk's rows (the coordinator's plan). */
function checkRange<T>(plan: CallPlan<T>, chunk: { from: number; to: number; rows: number }): T[][] {
  if (!Number.isInteger(chunk.from) || !Number.isInteger(chunk.to) || chunk.to > plan.count || chunk.from < 0 || chunk.from >= chunk.to) throw new Error(`chunk [${chunk.from}, ${chunk.to}) is outside this plan of ${plan.count} calls`);
  const mine = plan.calls(chunk.from, chunk.to);
  const rows = mine.reduce((x, c) => x + c.length, 0);
  if (rows !== chunk.rows) throw new Error(`chunk [${chunk.from}, ${chunk.to}) has ${rows} rows here, ${chunk.rows} on the coordinator: the plans differ`);
  return mine;
}

function packScores(parts: Float64Array[], rows: number, width: number): PackedRows {
  const out = new Float64Array(rows * width);
  let at = 0;
  for (const v of parts) {
    if (at + v.length > out.length) throw new Error(`the chunk has more rows than the ${rows} it says`);
    out.set(v, at);
    at += v.length;
  }
  if (at !== out.length) throw new Error(`the chunk has ${at / width} rows, not the ${rows} it says`);
  return packRows(out, width);
}
