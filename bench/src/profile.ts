// Where the time goes: onnxruntime's own per-node profile of one shipped forward, and a split of a sweep into
// feed construction, onnxruntime runs and the rest (scoring, slicing). Bench-only instrumentation: onnxruntime's
// InferenceSession.run is wrapped while a measurement runs (the engine runs several sessions: the full one, the
// lean metrics session, the layer-skipping one), and the engine's private ablationFeeds on the instance; core/ is
// not changed.
import { seededRandom } from '../../core/analysis/sweep/stats';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { evaluateSets, prepare } from '../../core/analysis/evaluate';
import { OrtSession } from '../../core/engine/ort';
import type { ExternalFile, Runtime, Session } from '../../core/engine/runtime';
import { headId, type NodeId } from '../../core/ids';
import { loadEngine } from '../../core/nodejs/load';
import { externalDataInMemory, OrtNodeRuntime, sessionOptions } from '../../core/nodejs/ort-node';
import { logSoftmax, rowStats, scorePrompt } from '../../core/analysis/metrics';
import { decodeModel, encodeModel, floatValueInfo, makeNode } from '../../core/onnx/model';
import { LAST_LOGITS } from '../../core/onnx/instrument';
import { LAST_STATS, withLastRowStats } from '../../core/onnx/lean';
import { log, randomIds, ROOT, round, stats } from './harness';
import { nodeRuntimeOptions, type ModelSpec } from './models';
import { inductionSuite } from './suite';

const PROFILE_DIR = path.join(ROOT, 'bench', '.build', 'ort-profiles');

/** onnxruntime-node with onnxruntime's profiler on; denormals flushed as in the other benchmarks (nodeRuntimeOptions); onnxruntime's default threads. */
class ProfilingRuntime implements Runtime {
  readonly backend = 'node' as const;
  async createSession(model: Uint8Array, external: ExternalFile[]): Promise<Session> {
    fs.mkdirSync(PROFILE_DIR, { recursive: true });
    // Weights in memory (a large model's own file, as core/nodejs/load.ts references it).
    const externalData = externalDataInMemory(external);
    // The engine's options (threads, spinning, denormals) with the profiler on.
    const s = await ort.InferenceSession.create(model, { ...sessionOptions(nodeRuntimeOptions), externalData, enableProfiling: true, profileFilePrefix: path.join(PROFILE_DIR, `p${process.pid}`) });
    return new OrtSession(ort, s);
  }
}

interface Inner { run(...a: unknown[]): Promise<unknown>; endProfiling(): void }

/**
 * Times every onnxruntime InferenceSession.run while `f` runs (all sessions of the process); returns the total,
 * the number of runs and the last session that ran.
 */
async function timeOrtRuns<T>(f: () => Promise<T>): Promise<{ value: T; ms: number; calls: number; last?: Inner }> {
  const proto = (ort.InferenceSession as unknown as { prototype: Inner }).prototype;
  const orig = proto.run;
  let ms = 0;
  let calls = 0;
  let last: Inner | undefined;
  proto.run = async function (this: Inner, ...a: unknown[]) {
    const t0 = performance.now();
    try { return await orig.apply(this, a); } finally { ms += performance.now() - t0; calls++; last = this; }
  };
  try {
    return { value: await f(), ms, calls, last };
  } finally {
    proto.run = orig;
  }
}

interface ProfileEvent { cat: string; name: string; dur: number; args?: { op_name?: string } }

export interface ForwardProfile {
  model: string;
  batch: number;
  tokens: number;
  lastOnly: boolean;
  wallMs: number;
  /** Medians / means over 3 runs after a warm-up. Time inside onnxruntime's run (the rest: building feeds, wrapping outputs). */
  ortRunMs: number;
  /** Sum of kernel times by category, from onnxruntime's profile. */
  kernelMs: Record<string, number>;
  byOpMs: Record<string, number>;
  topNodes: { name: string; op: string; ms: number }[];
}

async function readProfile(): Promise<ProfileEvent[]> {
  let files: string[] = [];
  for (let i = 0; i < 50 && files.length === 0; i++) {
    files = fs.readdirSync(PROFILE_DIR).map((f) => path.join(PROFILE_DIR, f));
    if (files.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  const newest = files.sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
  if (!newest) throw new Error('onnxruntime wrote no profile');
  const events = JSON.parse(fs.readFileSync(newest, 'utf8')) as ProfileEvent[];
  for (const f of files) fs.rmSync(f, { force: true });
  return events;
}

/**
 * Profiled forwards of the shipped engine (3, after a warm-up run): kernel time in the model itself, in
 * CircuitLens' ablation patch nodes, and (should they ever be back in the forward session) in logit-lens copies
 * of the final norm + unembedding, which onnxruntime computes whether or not they are fetched.
 */
export async function profileForward(spec: ModelSpec, B: number, T: number, lastOnly: boolean): Promise<ForwardProfile> {
  log(`\n[profile] onnxruntime profile of shipped forwards: ${spec.key} ${B}×${T}${lastOnly ? ' lastOnly' : ''}`);
  fs.rmSync(PROFILE_DIR, { recursive: true, force: true });
  fs.mkdirSync(PROFILE_DIR, { recursive: true });
  const engine = await loadEngine(spec.file, new ProfilingRuntime());
  const ids = randomIds(B, T, engine.info.vocab, 23);
  await engine.run({ ids, lastOnly });
  const runs = 3;
  const walls: number[] = [];
  const timedRuns = await timeOrtRuns(async () => {
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await engine.run({ ids, lastOnly });
      walls.push(performance.now() - t0);
    }
  });
  const ortRunMs = timedRuns.ms / runs;
  const wallMs = stats(walls).median;
  // The session these runs used (lastOnly: the lean metrics session) writes its profile now.
  timedRuns.last!.endProfiling();
  const events = await readProfile();
  // The session's profile holds every run (the load-time probe, the warm-up, the timed ones): keep the node
  // events after the model_run that ended the warm-up, averaged over the timed runs.
  const ends = events.map((e, i) => ({ e, i })).filter(({ e }) => e.cat === 'Session' && e.name === 'model_run');
  const startIdx = ends.length > runs ? ends[ends.length - runs - 1]!.i : 0;
  const nodes = events.slice(startIdx + 1).filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time')).map((e) => ({ ...e, dur: e.dur / runs }));
  const kernelMs: Record<string, number> = { model: 0, 'logit lens (unfetched outputs)': 0, 'circuitlens patch nodes': 0 };
  const byOpMs: Record<string, number> = {};
  const perNode: { name: string; op: string; ms: number }[] = [];
  for (const e of nodes) {
    const name = e.name.slice(0, -'_kernel_time'.length);
    const op = e.args?.op_name ?? '?';
    const msv = e.dur / 1e3;
    const cat = name.includes('@lens') || name.startsWith('circuitlens/lens') ? 'logit lens (unfetched outputs)' : name.startsWith('circuitlens') ? 'circuitlens patch nodes' : 'model';
    kernelMs[cat] = (kernelMs[cat] ?? 0) + msv;
    byOpMs[op] = (byOpMs[op] ?? 0) + msv;
    perNode.push({ name, op, ms: msv });
  }
  await engine.release();
  const r = (o: Record<string, number>) => Object.fromEntries(Object.entries(o).sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, round(v, 1)]));
  const res: ForwardProfile = {
    model: spec.key, batch: B, tokens: T, lastOnly, wallMs: round(wallMs, 1), ortRunMs: round(ortRunMs, 1), kernelMs: r(kernelMs), byOpMs: r(byOpMs),
    topNodes: perNode.sort((a, b) => b.ms - a.ms).slice(0, 8).map((n) => ({ ...n, ms: round(n.ms, 1) })),
  };
  log(`  wall ${res.wallMs} ms, in onnxruntime.run ${res.ortRunMs} ms; kernel ms: ${JSON.stringify(res.kernelMs)}`);
  return res;
}

export interface SweepProfile {
  model: string;
  prompts: number;
  promptTokens: number;
  heads: number;
  maxRows: number;
  calls: number;
  rows: number;
  wallMs: number;
  feedsMs: number;
  ortRunMs: number;
  /** wall − feeds − onnxruntime: tensor wrapping, slicing logits, scoring prompts. */
  otherMs: number;
}

/** A shipped sweep (prepare + evaluateSets) split into building ablation feeds, onnxruntime runs and the rest. */
export async function profileSweep(spec: ModelSpec, opts: { prompts: number; promptTokens: number; layers?: number[]; maxRows: number }): Promise<SweepProfile> {
  log(`\n[profile] shipped sweep split: ${spec.key}`);
  const engine = await loadEngine(spec.file, new OrtNodeRuntime(nodeRuntimeOptions));
  const { layers, heads, vocab } = engine.info;
  const nodes: NodeId[] = (opts.layers ?? Array.from({ length: layers }, (_, l) => l)).flatMap((l) => Array.from({ length: heads }, (_, h) => headId(l, h)));
  const prompts = inductionSuite(opts.prompts, opts.promptTokens, vocab, 29);
  const run = async () => { const ctx = await prepare(engine, prompts, 'zero', { maxRows: opts.maxRows }); await evaluateSets(ctx, [[], ...nodes.map((n) => [n])]); };
  await run();
  const priv = engine as unknown as { ablationFeeds: (...a: unknown[]) => unknown };
  const origFeeds = priv.ablationFeeds;
  let feedsMs = 0;
  priv.ablationFeeds = function (this: unknown, ...a: unknown[]) { const t0 = performance.now(); const r = origFeeds.apply(this, a); feedsMs += performance.now() - t0; return r; };
  const t0 = performance.now();
  const { ms: ortRunMs, calls } = await timeOrtRuns(run);
  const wallMs = performance.now() - t0;
  priv.ablationFeeds = origFeeds;
  await engine.release();
  const res: SweepProfile = {
    model: spec.key, prompts: prompts.length, promptTokens: opts.promptTokens, heads: nodes.length, maxRows: opts.maxRows, calls, rows: prompts.length * (nodes.length + 2),
    wallMs: round(wallMs, 1), feedsMs: round(feedsMs, 1), ortRunMs: round(ortRunMs, 1), otherMs: round(wallMs - feedsMs - ortRunMs, 1),
  };
  log(`  ${JSON.stringify(res)}`);
  return res;
}

export interface ScoringProfile {
  vocab: number; rows: number; scorePromptMsPerRow: number; plainLoopsMsPerRow?: number;
  /** scorePrompt given the engine's row stats (its JavaScript part), and the stats' nodes in onnxruntime-node per row. */
  withStatsMsPerRow?: number; statsGraphMsPerRow?: number;
}

/**
 * Cost of scoring one row of last-position logits with metrics.ts scorePrompt (KL to a clean row included): in
 * JavaScript alone, and with the row stats the engine's metrics sessions compute (withLastRowStats), whose graph
 * part is timed on a graph of those nodes alone.
 */
export async function profileScoring(vocab: number, rows: number): Promise<ScoringProfile> {
  const r = seededRandom(9);
  const data = Float32Array.from({ length: rows * vocab }, () => 10 * r());
  const cleanLogProbs = logSoftmax(data.subarray(0, vocab));
  const time = (f: (row: Float32Array, i: number) => void) => {
    const samples: number[] = [];
    for (let rep = 0; rep < 3; rep++) {
      const t0 = performance.now();
      for (let i = 0; i < rows; i++) f(data.subarray(i * vocab, (i + 1) * vocab), i);
      samples.push((performance.now() - t0) / rows);
    }
    return round(stats(samples).median, 3);
  };
  const scorePromptMsPerRow = time((row) => scorePrompt(row, 5, 7, cleanLogProbs));
  // The stats as the engine's graph computes them, on a graph of those nodes alone.
  const base = decodeModel(fs.readFileSync(path.join(ROOT, 'examples', 'induction-gpt2.onnx')), 'demo');
  const model = withLastRowStats({
    ...base,
    graph: { ...base.graph!, node: [makeNode('Identity', ['x'], [LAST_LOGITS], 'id')], input: [floatValueInfo('x', 3)], output: [floatValueInfo(LAST_LOGITS, 3)], initializer: [], valueInfo: [] },
  });
  const session = await new OrtNodeRuntime(nodeRuntimeOptions).createSession(encodeModel(model), []);
  const feeds = { x: { type: 'float32' as const, dims: [rows, 1, vocab], data } };
  await session.run(feeds, [LAST_STATS]);
  const graphMs: number[] = [];
  let out!: Float32Array;
  for (let rep = 0; rep < 3; rep++) {
    const t0 = performance.now();
    out = (await session.run(feeds, [LAST_STATS]))[LAST_STATS]!.data;
    graphMs.push((performance.now() - t0) / rows);
  }
  await session.release();
  const statsOf = Array.from({ length: rows }, (_, i) => rowStats(out, i));
  const withStatsMsPerRow = time((row, i) => scorePrompt(row, 5, 7, cleanLogProbs, statsOf[i]));
  const res = { vocab, rows, scorePromptMsPerRow, withStatsMsPerRow, statsGraphMsPerRow: round(stats(graphMs).median, 3) };
  log(`  scoring one row of ${vocab} logits: scorePrompt ${res.scorePromptMsPerRow} ms; with the engine's row stats ${withStatsMsPerRow} ms + ${res.statsGraphMsPerRow} ms in the graph`);
  return res;
}
