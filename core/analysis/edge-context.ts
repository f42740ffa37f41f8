// Edge-level evaluation, shared by edge attribution, discovery and verification: an evaluation context with the
// model's edges and their ablated values, and batched runs of edge-weight sets on the engine's per-destination
// inputs (core/onnx/edges.ts). Edge ablation replaces what flows along an edge by the source's ablated output: 0
// (zero), its mean over the suite's prompts and positions (mean), or its output on the corrupted prompt
// (resample). The engine is reached only through its edge runs (EdgeRunner).
import { groupByLength } from '../engine/feeds';
import type { F32 } from '../engine/runtime';
import type { EdgeRunner, EdgeValues } from '../engine/types';
import { Cancelled, UserError } from '../errors';
import { formatEdgeId } from '../ids';
import { concatRows, scoreRow, sliceRow, type EvalContext } from './evaluate';
import { meanMetrics, type PromptScore, type SuiteMetrics } from './metrics';
import { meter } from './progress';
import type { ResolvedPrompt } from './prompts';

/** What edge analysis reads of an evaluation context: the engine only through its edge runs (EdgeRunner). */
export type EdgeEvalContext = Pick<EvalContext, 'prompts' | 'ablation' | 'cleanLogProbs' | 'maxRows' | 'signal' | 'progress' | 'remote'> & { engine: EdgeRunner };

/** An evaluation context with the edge ids and ablated values; `C`: the context it was prepared from. */
export interface EdgeContext<C extends EdgeEvalContext = EdgeEvalContext> {
  ctx: C;
  /** Edge ids `SRC->DST` in the engine's order. */
  ids: string[];
  /** Shared ablated values (zero: undefined; mean: means), or per prompt (resample). */
  shared?: EdgeValues;
  perPrompt?: EdgeValues[];
}

/** Ablated values for the context's ablation kind; `meanOver`: the prompts means are taken over (DESIGN §4). */
export async function prepareEdges<C extends EdgeEvalContext>(ctx: C, meanOver?: ResolvedPrompt[]): Promise<EdgeContext<C>> {
  const { engine } = ctx;
  const ids = engine.edges.edges.map(formatEdgeId);
  if (ctx.ablation === 'zero') return { ctx, ids };
  if (ctx.ablation === 'mean') {
    const prompts = (meanOver ?? ctx.prompts).map((p) => p.ids);
    let sum: EdgeValues | undefined;
    let count = 0;
    for (const group of groupByLength(prompts)) {
      for (const chunk of chunks(group, edgeRowsPerCall({ ctx, ids }, group[0]!.ids.length, 'forward'))) {
        const r = await engine.runEdges({ ids: chunk.map((g) => g.ids), outputs: true });
        const o = r.outputs!;
        sum = sum ? addValues(sum, sumRows(o)) : sumRows(o);
        count += chunk.length * chunk[0]!.ids.length;
      }
    }
    const scale = (t: F32): F32 => ({ dims: t.dims, data: t.data.map((x) => x / count) });
    return { ctx, ids, shared: { input: scale(sum!.input), heads: sum!.heads.map(scale), mlp: sum!.mlp.map(scale) } };
  }
  const perPrompt: EdgeValues[] = new Array(ctx.prompts.length);
  for (const group of groupByLength(ctx.prompts.map((p) => p.corruptedIds!))) {
    for (const chunk of chunks(group, edgeRowsPerCall({ ctx, ids }, group[0]!.ids.length, 'forward'))) {
      const r = await engine.runEdges({ ids: chunk.map((g) => g.ids), outputs: true });
      chunk.forEach((g, row) => { perPrompt[g.index] = mapValues(r.outputs!, (t) => sliceRow(t, row)); });
    }
  }
  return { ctx, ids, perPrompt };
}

/**
 * Rows per engine call for edge work: the edge graphs hold, per row, every upstream output for every later
 * layer's destinations (and the backward graph more), so a large model gets far fewer rows than maxRows.
 * Measured on GPT-2-small at 16 tokens, per row: ~500 MiB for gradients away from zero (with head-sliced
 * projections; ~1 GiB with the heads folded) and ~160 MiB for forward runs, about 5.4× and 1.7× the per-row size
 * T·L·N·D·4 bytes (N upstream nodes). EAP (the graph at zero, Engine.edgeGradients) holds the N upstream outputs
 * (twice: as computed and in blocks) and the 3H per-head copies of the stream per layer with what their backward
 * pass keeps: T·D·4·(2N + 6·3HL) bytes, 143 MiB on GPT-2-small, where 45–100 MiB were measured with sliced
 * projections and ~1.6× that folded. The budget keeps a call near 3 GiB.
 */
export function edgeRowsPerCall(ec: EdgeContext, T: number, kind: 'forward' | 'gradient' | 'eap'): number {
  const { layers, dModel, heads } = ec.ctx.engine.info;
  const upstream = 1 + layers * (heads + 1);
  const perRow = kind === 'eap'
    ? T * dModel * 4 * (2 * upstream + 6 * 3 * heads * layers)
    : T * layers * upstream * dModel * 4 * (kind === 'gradient' ? 6 : 2.5);
  return Math.max(1, Math.min(ec.ctx.maxRows, Math.floor(EDGE_CALL_BYTES / perRow)));
}

const EDGE_CALL_BYTES = 3 * 1024 ** 3;

/** One row of a batched edge run: an edge-weight set on a prompt. */
export interface EdgeRow { set: number; prompt: number }

/**
 * The engine calls of runEdgeSets for `sets` weight vectors, in order: per prompt length, sets × prompts rows cut
 * at edgeRowsPerCall. A distributed run (core/analysis/distributed/) plans the same calls.
 */
export function planEdgeCalls(ec: EdgeContext, sets: number): EdgeRow[][] {
  const plan = edgeCallPlan(ec, sets);
  return plan.calls(0, plan.count);
}

/** A plan of calls: how many, and calls [from, to) alone. */
export interface CallPlan<T> { count: number; calls(from: number, to: number): T[][] }

/**
 * planEdgeCalls' calls, counted without being built: a worker builds only its chunk's rows, not the (E + 1) × P of
 * the whole plan (2 M objects at GPT-2-small's 32k edges). Row r of a prompt-length group of n prompts is set
 * ⌊r / n⌋ on its prompt r mod n.
 */
export function edgeCallPlan(ec: EdgeContext, sets: number): CallPlan<EdgeRow> {
  const groups = groupByLength(ec.ctx.prompts.map((p) => p.ids)).map((group) => {
    const per = edgeRowsPerCall(ec, group[0]!.ids.length, 'forward');
    return { prompts: group.map((g) => g.index), rows: sets * group.length, per, calls: Math.ceil((sets * group.length) / per) };
  });
  return {
    count: groups.reduce((a, g) => a + g.calls, 0),
    calls(from, to) {
      const out: EdgeRow[][] = [];
      let first = 0;
      for (const g of groups) {
        for (let c = Math.max(from - first, 0); c < Math.min(to - first, g.calls); c++) {
          const call: EdgeRow[] = [];
          const n = g.prompts.length;
          for (let r = c * g.per; r < Math.min((c + 1) * g.per, g.rows); r++) call.push({ set: Math.floor(r / n), prompt: g.prompts[r % n]! });
          out.push(call);
        }
        first += g.calls;
      }
      return out;
    },
  };
}

/** One planned call of runEdgeSets: each row's last-position logits. */
export async function runEdgeCall(ec: EdgeContext, sets: Float32Array[], chunk: EdgeRow[]): Promise<Float32Array[]> {
  const { engine, prompts } = ec.ctx;
  const V = engine.info.vocab;
  const res = await engine.runEdges({
    ids: chunk.map((r) => prompts[r.prompt]!.ids),
    weights: chunk.map((r) => sets[r.set]),
    ablated: ablatedFor(ec, chunk.map((r) => r.prompt)),
  });
  return chunk.map((_, i) => res.logits.data.slice(i * V, (i + 1) * V));
}

/** Last-position logits for every (edge weight vector, prompt); a set is a weight per edge (1 = ablated). */
export async function runEdgeSets(ec: EdgeContext, sets: Float32Array[]): Promise<Float32Array[][]> {
  const out: Float32Array[][] = sets.map(() => new Array(ec.ctx.prompts.length));
  const m = meter(ec.ctx, 'edge sets', sets.length * ec.ctx.prompts.length);
  for (const chunk of planEdgeCalls(ec, sets.length)) {
    if (ec.ctx.signal?.aborted) throw new Cancelled();
    const logits = await runEdgeCall(ec, sets, chunk);
    chunk.forEach((r, i) => { out[r.set]![r.prompt] = logits[i]!; });
    m?.tick(chunk.length);
  }
  return out;
}

export async function evaluateEdgeSets(ec: EdgeContext, sets: Float32Array[]): Promise<SuiteMetrics[]> {
  const logits = await runEdgeSets(ec, sets);
  return edgeSetMetrics(ec, sets.length, (s, i) => scoreRow(ec.ctx, i, logits[s]![i]!));
}

/** Each edge set's metrics from its rows' scores (`score(set, prompt)`). */
export function edgeSetMetrics(ec: EdgeContext, sets: number, score: (s: number, prompt: number) => PromptScore): SuiteMetrics[] {
  return Array.from({ length: sets }, (_, s) => meanMetrics(ec.ctx.prompts.map((_, i) => score(s, i))));
}

/** A weight vector with 1 on the given edges (or on all edges but them, with `invert`). */
export function edgeWeights(ec: EdgeContext, edges: Iterable<string>, invert = false): Float32Array {
  const inSet = new Set(edges);
  return Float32Array.from(ec.ids, (id) => (inSet.has(id) !== invert ? 1 : 0));
}

/** Forward rows beyond which one-edge-at-a-time work (exact edge scores, ACDC over edges) is refused with advice
 * when it would run on this machine alone. */
export const MAX_EDGE_ROWS = 1_000_000;

/**
 * Refuses one-run-per-edge work that would take hours, saying what to use instead. Work the context sends to workers
 * (`--broker`: exact edge scores) is not refused: spreading it is what workers are for; its cost is said up front.
 */
export function checkEdgeWork(ec: EdgeContext, what: string, instead: string, onWorkers = false): void {
  const rows = ec.ids.length * ec.ctx.prompts.length;
  if (rows > MAX_EDGE_ROWS && !onWorkers) {
    throw new UserError(`${what} runs every one of the model's ${ec.ids.length} edges on ${ec.ctx.prompts.length} prompts (${rows.toLocaleString('en')} forward rows); that is more than ${MAX_EDGE_ROWS.toLocaleString('en')}. ${instead}`);
  }
}

export function ablatedFor(ec: EdgeContext, prompts: number[]): EdgeValues | undefined {
  if (ec.shared) return ec.shared;
  if (!ec.perPrompt) return undefined;
  const rows = prompts.map((p) => ec.perPrompt![p]!);
  const cat = (pick: (v: EdgeValues) => F32): F32 => concatRows(rows.map(pick));
  const L = rows[0]!.heads.length;
  return { input: cat((v) => v.input), heads: Array.from({ length: L }, (_, l) => cat((v) => v.heads[l]!)), mlp: Array.from({ length: L }, (_, l) => cat((v) => v.mlp[l]!)) };
}

function chunks<T>(xs: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}

function mapValues(v: EdgeValues, fn: (t: F32) => F32): EdgeValues {
  return { input: fn(v.input), heads: v.heads.map(fn), mlp: v.mlp.map(fn) };
}

/** Sum over batch rows and positions, keeping [1, 1, ...]. */
function sumRows(v: EdgeValues): EdgeValues {
  return mapValues(v, (t) => {
    const [B, T] = t.dims as [number, number];
    const w = t.data.length / (B * T);
    const s = new Float32Array(w);
    for (let i = 0; i < B * T; i++) for (let j = 0; j < w; j++) s[j]! += t.data[i * w + j]!;
    return { dims: [1, 1, ...t.dims.slice(2)], data: s };
  });
}

function addValues(a: EdgeValues, b: EdgeValues): EdgeValues {
  const add = (x: F32, y: F32): F32 => ({ dims: x.dims, data: x.data.map((v, i) => v + y.data[i]!) });
  return { input: add(a.input, b.input), heads: a.heads.map((t, l) => add(t, b.heads[l]!)), mlp: a.mlp.map((t, l) => add(t, b.mlp[l]!)) };
}
