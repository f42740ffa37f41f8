// Distributed runs, the use case: the same engine calls as the local run (planSetCalls, planEdgeCalls,
// planGradientCalls), computed in chunks by workers and merged in call order, so the result equals the local
// one bit for bit. Rows come back as what the local run keeps of them: each row's scores (patching) or its
// gradients (float32, summed here in the local order). The coordinator reaches the workers through a ChunkRunner
// (cli/broker.ts: BullMQ on Redis).
import { UserError } from '../../errors';
import type { MetricName } from '../../vocabulary';
import type { AttributeOptions, AttributeResult } from '../attribute/attribute';
import { addGradients, edgePatchingResult, edgePatchingSets, gradientEdgeScores, planGradientCalls, runGradientCall } from '../attribute/edges';
import { patchingResult, patchingSets } from '../attribute/nodes';
import { checkEdgeWork, edgeSetMetrics, planEdgeCalls, prepareEdges, runEdgeCall, type EdgeContext } from '../edge-context';
import { planSetCalls, runSetCall, scoreRow, setResults, type EvalContext } from '../evaluate';
import type { PromptScore } from '../metrics';
import type { OpenedSuite } from '../open-suite';
import { prepareSuite } from '../open-suite';
import { meter } from '../progress';
import type { ResolvedPrompt } from '../prompts';
import { planChunks, packRows, unpackRows, type Chunk, type DistributedAnalysis, type PackedRows } from './plan';

/** What chunks run on: the task prompts' context and, for edge work, its edge context. */
export interface Prepared {
  task: EvalContext;
  ec?: EdgeContext;
}

/** Where the coordinator sends chunks: each chunk's rows, in the order given; `done(rows)` as each finishes. */
export interface ChunkRunner {
  run(chunks: Chunk[], done: (rows: number) => void): Promise<PackedRows[]>;
}

/** The analysis an attribute request fans out, or a UserError naming what runs on workers. */
export function distributedAnalysis(o: AttributeOptions): DistributedAnalysis {
  if (o.method === 'patching') return { kind: o.level === 'edge' ? 'edge-patching' : 'node-patching', steps: 1 };
  if (o.method === 'gradient' && o.level === 'edge') return { kind: 'edge-gradient', steps: o.steps ?? 1 };
  throw new UserError('--broker runs attribute --method patching (node or edge level) and --level edge --method gradient; node-level gradients run locally (one backward pass per prompt group: run without --broker)');
}

/** A worker's context for an analysis, prepared as the CLI prepares it (prepareSuite, then prepareEdges). */
export async function prepareForChunks(opened: OpenedSuite, a: DistributedAnalysis): Promise<Prepared> {
  const { task } = await prepareSuite(opened, { control: false });
  return { task, ec: a.kind === 'node-patching' ? undefined : await prepareEdges(task, opened.all) };
}

/** The engine calls of an analysis: rows of each, values per row, and how to run one. */
interface Work {
  rows: number[];
  width: number;
  run(k: number): Promise<Float64Array | Float32Array>;
}

const SCORE_WIDTH = 5;

function packScore(out: Float64Array, at: number, s: PromptScore): void {
  out[at] = s.logitDiff; out[at + 1] = s.prob; out[at + 2] = s.correct ? 1 : 0; out[at + 3] = s.kl; out[at + 4] = s.top1;
}

function unpackScore(v: ArrayLike<number>, at: number): PromptScore {
  return { logitDiff: v[at]!, prob: v[at + 1]!, correct: v[at + 2] === 1, kl: v[at + 3]!, top1: v[at + 4]! };
}

function needEdges(p: Prepared): EdgeContext {
  if (!p.ec) throw new Error('edge work needs an edge context');
  return p.ec;
}

/** The planned calls of the analysis with a way to run each; one plan for the coordinator and every worker. */
async function planWork(p: Prepared, a: DistributedAnalysis, metric: MetricName): Promise<Work> {
  if (a.kind === 'node-patching') {
    const sets = patchingSets(p.task);
    const calls = await planSetCalls(p.task, sets);
    return {
      rows: calls.map((c) => c.length), width: SCORE_WIDTH,
      run: async (k) => {
        const call = calls[k]!;
        const res = await runSetCall(p.task, sets, call);
        const out = new Float64Array(call.length * SCORE_WIDTH);
        call.forEach((r, i) => packScore(out, i * SCORE_WIDTH, scoreRow(p.task, r.prompt, res.logits[i]!, res.stats[i])));
        return out;
      },
    };
  }
  const ec = needEdges(p);
  if (a.kind === 'edge-patching') {
    checkEdgeWork(ec, 'exact edge attribution', 'Use gradient scores (--method gradient, EAP or EAP-IG with --steps), or fewer prompts.');
    const sets = edgePatchingSets(ec);
    const calls = planEdgeCalls(ec, sets.length);
    return {
      rows: calls.map((c) => c.length), width: SCORE_WIDTH,
      run: async (k) => {
        const call = calls[k]!;
        const logits = await runEdgeCall(ec, sets, call);
        const out = new Float64Array(call.length * SCORE_WIDTH);
        call.forEach((r, i) => packScore(out, i * SCORE_WIDTH, scoreRow(ec.ctx, r.prompt, logits[i]!)));
        return out;
      },
    };
  }
  const calls = planGradientCalls(ec, a.steps);
  return { rows: calls.map((c) => c.length), width: ec.ids.length, run: (k) => runGradientCall(ec, metric, calls[k]!) };
}

/** The per-call rows of a plan: the same on every side, so a worker checks the chunk it was sent against it. */
export async function planCallRows(p: Prepared, a: DistributedAnalysis, metric: MetricName): Promise<number[]> {
  return (await planWork(p, a, metric)).rows;
}

/** A worker's part: calls [from, to) of the plan, their rows packed in call order. */
export async function computeChunk(p: Prepared, a: DistributedAnalysis, metric: MetricName, chunk: { from: number; to: number; rows: number }): Promise<PackedRows> {
  const work = await planWork(p, a, metric);
  if (chunk.to > work.rows.length || chunk.from < 0 || chunk.from >= chunk.to) throw new Error(`chunk [${chunk.from}, ${chunk.to}) is outside this plan of ${work.rows.length} calls`);
  const rows = work.rows.slice(chunk.from, chunk.to).reduce((x, y) => x + y, 0);
  if (rows !== chunk.rows) throw new Error(`chunk [${chunk.from}, ${chunk.to}) has ${rows} rows here, ${chunk.rows} on the coordinator: the plans differ`);
  const parts: (Float64Array | Float32Array)[] = [];
  for (let k = chunk.from; k < chunk.to; k++) parts.push(await work.run(k));
  const out = a.kind === 'edge-gradient' ? new Float32Array(rows * work.width) : new Float64Array(rows * work.width);
  let at = 0;
  for (const part of parts) { out.set(part, at); at += part.length; }
  return packRows(out, work.width);
}

/**
 * Attribution with its engine calls run by workers: the coordinator plans the calls, cuts them into chunks
 * (ids from `runKey`), hands them to `runner`, and merges the rows in call order as the local run does.
 */
export async function attributeOnWorkers(task: EvalContext, all: ResolvedPrompt[], metric: MetricName, a: DistributedAnalysis, runner: ChunkRunner, runKey: string, targetRows?: number): Promise<AttributeResult & { chunks: number }> {
  const p: Prepared = { task, ec: a.kind === 'node-patching' ? undefined : await prepareEdges(task, all) };
  const work = await planWork(p, a, metric);
  const chunks = planChunks(runKey, work.rows, targetRows);
  const what = a.kind === 'node-patching' ? 'ablation sets' : a.kind === 'edge-patching' ? 'edge sets' : a.steps === 1 ? 'edge gradients (EAP)' : `edge gradients (EAP-IG, ${a.steps} steps)`;
  const m = meter(task, `${what} on workers, ${chunks.length} chunks`, work.rows.reduce((x, y) => x + y, 0));
  const packed = await runner.run(chunks, (rows) => m?.tick(rows));
  const values = concatChunks(chunks, packed, work);
  const result: AttributeResult & { chunks: number } = { metric, nodes: [], edges: [], chunks: chunks.length };
  if (a.kind === 'node-patching') {
    const sets = patchingSets(task);
    const calls = await planSetCalls(task, sets);
    const remote: PromptScore[][] = sets.map(() => []);
    let row = 0;
    for (const call of calls) for (const r of call) remote[r.set]![r.prompt] = unpackScore(values, SCORE_WIDTH * row++);
    const attr = patchingResult(setResults(task, sets, (s, i) => remote[s]![i] ?? scoreRow(task, i, task.cleanLogits![i]!)), metric);
    return { ...result, nodes: attr.nodes, clean: attr.clean, nodeMethod: `exact patching (${task.ablation} ablation)` };
  }
  const ec = p.ec!;
  if (a.kind === 'edge-patching') {
    const calls = planEdgeCalls(ec, ec.ids.length + 1);
    const remote: PromptScore[][] = Array.from({ length: ec.ids.length + 1 }, () => []);
    let row = 0;
    for (const call of calls) for (const r of call) remote[r.set]![r.prompt] = unpackScore(values, SCORE_WIDTH * row++);
    const { edges } = edgePatchingResult(ec, edgeSetMetrics(ec, ec.ids.length + 1, (s, i) => remote[s]![i]!), metric);
    return { ...result, edges, edgeMethod: 'exact path patching (one edge at a time)' };
  }
  const total = new Float64Array(ec.ids.length);
  let at = 0;
  for (const rows of work.rows) {
    addGradients(total, values.subarray(at, at + rows * work.width), rows);
    at += rows * work.width;
  }
  return { ...result, edges: gradientEdgeScores(ec, total, a.steps), edgeMethod: `gradients on edge weights (${a.steps > 1 ? `EAP-IG, ${a.steps} steps` : 'EAP'})` };
}

/** The chunks' rows as one array in call order, each chunk checked for its size. */
function concatChunks(chunks: Chunk[], packed: PackedRows[], work: Work): Float64Array | Float32Array {
  const total = work.rows.reduce((x, y) => x + y, 0) * work.width;
  const parts = packed.map((pk, i) => {
    const v = unpackRows(pk);
    if (pk.width !== work.width || v.length !== chunks[i]!.rows * work.width) throw new Error(`chunk ${chunks[i]!.id} came back with ${v.length / Math.max(1, pk.width)} rows of ${pk.width}, expected ${chunks[i]!.rows} of ${work.width}`);
    return v;
  });
  const out = parts.every((v) => v instanceof Float32Array) ? new Float32Array(total) : new Float64Array(total);
  let at = 0;
  for (const v of parts) { out.set(v, at); at += v.length; }
  return out;
}
