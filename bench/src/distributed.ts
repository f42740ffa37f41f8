// Bench 8 (issue 18, "Past one machine" 6): `attribute --broker` with 1, 2 and 4 single-threaded worker processes
// (`circuitlens worker --threads 1`) on this machine against the local run with one thread, on a model where
// compute dominates (bench/models/dist-gpt2-4x8: 4 layers × 8 heads, d 256, 1,519 edges; written by
// scripts/make_dist_bench_model.py). Exact edge patching and a node-level head sweep (patching); every distributed
// result must equal the local run's --json output byte for byte (asserted). The per-chunk overhead: one worker,
// the demo model's edge patching cut into one-call chunks against one chunk. The projection: GPT-2-small's full
// exact edge patching with N workers, from the one-thread cost of an edge set on the GPT-2-small-shaped bench
// model (timed on 2 edges, as bench 3b does) — an estimate, with its assumptions written down beside it. And
// `sweep --broker` (the demo sweep suite's 1,152 prompts on the bench model) with 1 and 2 workers.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { attribute } from '../../core/analysis/attribute/attribute';
import { edgeRowsPerCall, evaluateEdgeSets, prepareEdges } from '../../core/analysis/edge-context';
import { prepare } from '../../core/analysis/evaluate';
import { round6 } from '../../core/analysis/records';
import { runSweep } from '../../core/analysis/sweep/sweep';
import { planChunks } from '../../core/analysis/distributed/plan';
import { prepareSuite } from '../../core/analysis/open-suite';
import { createRuntime, loadEngine } from '../../core/nodejs/load';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { loadSuiteAndModel } from '../../cli/common';
import { cluster, until } from '../../test/cli/broker-harness';
import { log, PYTHON, round, ROOT, stats, type Stats } from './harness';
import { GPT2_SMALL, nodeRuntimeOptions } from './models';
import { inductionSuite } from './suite';

export const DIST_MODEL = path.join(ROOT, 'bench', 'models', 'dist-gpt2-4x8', 'model.onnx');
const EDGE_SUITE = path.join(ROOT, 'bench', 'suites', 'distributed.suite.yaml');
const NODE_SUITE = path.join(ROOT, 'bench', 'suites', 'distributed-sweep.suite.yaml');
const DEMO_SUITE = path.join(ROOT, 'examples', 'induction.suite.yaml');
const SWEEP_SUITE = path.join(ROOT, 'examples', 'induction-sweep.suite.yaml');
const DEMO_MODEL = path.join(ROOT, 'examples', 'induction-gpt2.onnx');
const BIN = path.join(ROOT, 'bin', 'circuitlens.js');

export interface DistributedOptions { workers: number[]; edgeReps: number; nodeReps: number; sweepReps: number; overheadReps: number; gpt2Small: boolean; projectWorkers: number[] }

export interface DistRun {
  analysis: string;
  /** 0: the local run (one process, one onnxruntime thread). */
  workers: number;
  /** Spawn to exit of the coordinator (or the local process): node start, model load, clean pass, attribution. */
  wallMs: number;
  /** The attribution itself: from the coordinator's first "on workers" line (or the local attribute() call) to exit. */
  attributionMs: number;
  chunks?: number;
  /** Per chunk, as each worker logged it (model load and preparation included in a worker's first). */
  chunkMs?: number[];
  /** Worker idle time between finishing a chunk and starting its next one (broker dispatch), per gap. */
  gapMs?: number[];
  /** The --json output equals the local run's byte for byte. */
  equal?: boolean;
  loadavg: number[];
}

export interface DistributedResult {
  cores: number;
  model: { file: string; layers: number; heads: number; dModel: number; edges: number };
  edge: { suite: string; prompts: number; rows: number };
  node: { suite: string; prompts: number; rows: number };
  runs: DistRun[];
  /**
   * Medians per analysis and worker count (0: local): wall time and its speed-up vs 1 worker and vs local; the
   * attribution phase's speed-up vs 1 worker, and its parallel efficiency (1 worker's time / (N × N workers' time)).
   */
  summary: { analysis: string; workers: number; wallMs: Stats; attributionMs: Stats; speedupVs1: number; speedupVsLocal: number; attributionSpeedupVs1: number; efficiency: number | null }[];
  overhead: { calls: number; oneChunkMs: Stats; manyChunksMs: Stats; perChunkMs: number; workerPerChunkMs: number; gapMedianMs: number; localPerCallMs: number };
  allEqual: boolean;
  gpt2Small?: GptProjection | { skipped: string };
}

export interface GptProjection {
  prompts: number;
  promptTokens: number;
  edges: number;
  sets: number;
  rowsPerCall: number;
  chunks: number;
  /** One edge set (all prompts, one edge ablated) at 1 and 2 onnxruntime threads: medians of timed calls on 2 edges. */
  msPerSet: Record<string, Stats>;
  coordinatorSetupMs: number;
  efficiency: number;
  overheadPerChunkMs: number;
  latencyPerChunkMs: number;
  projection: { workers: number; hours: number; idealHours: number }[];
  oneMachineHours: number;
  assumptions: string[];
}

/** Writes the bench model with scripts/make_dist_bench_model.py unless it exists. */
export function ensureDistModel(): void {
  if (fs.existsSync(DIST_MODEL)) return;
  log('bench/models/dist-gpt2-4x8 missing: running scripts/make_dist_bench_model.py');
  const r = spawnSync(PYTHON, [path.join(ROOT, 'scripts', 'make_dist_bench_model.py')], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error('scripts/make_dist_bench_model.py failed');
}

interface Proc { child: ChildProcess; out: string; lines: { t: number; s: string }[]; t0: number; exit: Promise<{ code: number; t: number }> }

function start(args: string[], env: Record<string, string>): Proc {
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { child, out: '', lines: [], t0, exit: new Promise((r) => child.on('exit', (code, sig) => r({ code: code ?? (sig ? 128 : -1), t: performance.now() }))) };
  child.stdout!.on('data', (d) => { p.out += d; });
  let partial = '';
  child.stderr!.on('data', (d) => {
    const t = performance.now();
    const parts = (partial + d).split('\n');
    partial = parts.pop()!;
    for (const s of parts) p.lines.push({ t, s });
  });
  return p;
}

let queueSeq = 0;

/** One distributed run: `n` fresh workers (--threads 1), the coordinator, the workers stopped. */
async function onWorkers(url: string, n: number, args: string[], env: Record<string, string> = {}): Promise<{ run: Omit<DistRun, 'analysis' | 'equal'>; out: string }> {
  const queue = `bench-${process.pid}-${queueSeq++}`;
  const ws = Array.from({ length: n }, () => start([BIN, 'worker', '--broker', url, '--threads', '1'], { CIRCUITLENS_QUEUE: queue, ...env }));
  await until('workers ready', () => ws.every((w) => w.lines.some((l) => /waiting for chunks/.test(l.s))), 120_000);
  const loadavg = os.loadavg().map((x) => round(x, 2));
  const c = start([BIN, ...args, '--broker', url], { CIRCUITLENS_QUEUE: queue, CIRCUITLENS_PROGRESS: 'always', ...env });
  const { code, t } = await c.exit;
  for (const w of ws) w.child.kill('SIGTERM');
  await Promise.all(ws.map((w) => w.exit));
  if (code !== 0) throw new Error(`attribute --broker exited ${code}: ${c.lines.map((l) => l.s).join('\n')}`);
  const queued = c.lines.find((l) => /on workers, \d+ chunks/.test(l.s));
  const chunks = queued ? Number(/on workers, (\d+) chunks/.exec(queued.s)![1]) : undefined;
  const chunkMs: number[] = [];
  const gapMs: number[] = [];
  for (const w of ws) {
    let lastDone: number | undefined;
    for (const l of w.lines) {
      const done = /done: \d+ rows in (\d+) ms/.exec(l.s);
      if (done) { chunkMs.push(Number(done[1])); lastDone = l.t; }
      else if (/ started$/.test(l.s) && lastDone !== undefined) gapMs.push(round(l.t - lastDone, 1));
    }
  }
  return { run: { workers: n, wallMs: round(t - c.t0, 0), attributionMs: round(t - (queued?.t ?? c.t0), 0), chunks, chunkMs, gapMs, loadavg }, out: c.out };
}

/** The local run as `attribute --json` (or `sweep --json`) does it, with one onnxruntime thread, in a child process (main.js --dist-child). */
async function local(args: { suite: string; model: string; level: 'node' | 'edge' } | { sweep: string; model: string; ablate: string[] }): Promise<{ run: Omit<DistRun, 'analysis' | 'equal'>; out: string }> {
  const loadavg = os.loadavg().map((x) => round(x, 2));
  const p = start(['--enable-source-maps', path.join(__dirname, 'main.js'), '--dist-child', JSON.stringify(args)], {});
  const { code, t } = await p.exit;
  if (code !== 0) throw new Error(`local run exited ${code}: ${p.lines.map((l) => l.s).join('\n')}`);
  const r = JSON.parse(p.out) as { json: string; attributeMs: number };
  return { run: { workers: 0, wallMs: round(t - p.t0, 0), attributionMs: round(r.attributeMs, 0), loadavg }, out: r.json + '\n' };
}

/** main.js --dist-child ARGS: the local baseline (cli/commands/attribute.ts's --json output, one thread). */
export async function distChild(argv: string[]): Promise<void> {
  const a = JSON.parse(argv[0]!) as { suite: string; model: string; level: 'node' | 'edge'; threads?: number } | { sweep: string; model: string; ablate: string[] };
  const ws = new NodeWorkspace(ROOT, createRuntime('node', { ...nodeRuntimeOptions, flushDenormals: true, threads: 'threads' in a ? a.threads ?? 1 : 1 }));
  if ('sweep' in a) {
    // cli/commands/sweep.ts's --json output (--resamples 0).
    const opened = await loadSuiteAndModel(ws, a.sweep, a.model);
    const t0 = performance.now();
    const { suite: name, ...rest } = await runSweep(opened, { ablate: a.ablate as never[], resamples: 0 });
    const attributeMs = performance.now() - t0;
    const json = JSON.stringify({ suite: ws.display(opened.suite.file), name, model: ws.display(opened.modelPath), ...rest }, null, 2);
    await ws.dispose();
    process.stdout.write(JSON.stringify({ json, attributeMs }));
    return;
  }
  const opened = await loadSuiteAndModel(ws, a.suite, a.model);
  const ctx = await prepareSuite(opened, {});
  const t0 = performance.now();
  const method = 'patching';
  const attr = await attribute(ctx.task, opened.all, opened.suite.metric, { level: a.level, method, steps: 1 });
  const attributeMs = performance.now() - t0;
  const P = ctx.task.prompts.length;
  const result = a.level === 'edge'
    ? { nodes: [], edges: attr.edges.map((e) => ({ ...e, score: round6(e.score) })), metric: attr.metric, method, level: a.level, ablation: opened.ablation, prompts: P }
    : { nodes: attr.nodes, edges: [], metric: attr.metric, method, level: a.level, ablation: opened.ablation, prompts: P, clean: attr.clean };
  await ws.dispose();
  process.stdout.write(JSON.stringify({ json: JSON.stringify(result, null, 2), attributeMs }));
}

export async function distributedBench(opts: DistributedOptions): Promise<DistributedResult> {
  ensureDistModel();
  if (!fs.existsSync(path.join(ROOT, 'dist', 'cli.js'))) throw new Error('dist/cli.js missing: run `node esbuild.js` first');
  const cores = os.cpus().length;
  log(`\n[distributed] attribute --broker with ${opts.workers.join(', ')} workers (--threads 1 each) vs the local run (1 thread); ${cores} cores${Math.max(...opts.workers) > cores ? ` (${Math.max(...opts.workers)} workers oversubscribe them)` : ''}, load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  // A redis-server of the bench's own: a temp dir, a free port, no persistence (the CLI tests' harness).
  const redis = await cluster(fs.mkdtempSync(path.join(os.tmpdir(), 'cl-bench-redis-')));
  const runs: DistRun[] = [];
  const summary: DistributedResult['summary'] = [];
  let edges = 0;
  const shape: { edge?: { prompts: number; rows: number }; node?: { prompts: number; rows: number } } = {};
  try {
    for (const [analysis, level, suite, reps] of [['edge patching', 'edge', EDGE_SUITE, opts.edgeReps], ['node patching (head sweep)', 'node', NODE_SUITE, opts.nodeReps]] as const) {
      if (!reps) continue;
      const args = ['attribute', suite, '--model', DIST_MODEL, '--level', level, '--method', 'patching', '--json'];
      const mine: DistRun[] = [];
      for (let rep = 0; rep < reps; rep++) {
        // The order rotates every round, as the other sections alternate.
        const order = [0, ...opts.workers];
        for (let i = 0; i < rep % order.length; i++) order.push(order.shift()!);

        const outs = new Map<number, string>();
        for (const n of order) {
          const r = n === 0 ? await local({ suite, model: DIST_MODEL, level }) : await onWorkers(redis.url, n, args);
          outs.set(n, r.out);
          const run: DistRun = { analysis, ...r.run };
          mine.push(run);
          runs.push(run);
          log(`  ${analysis}, ${n === 0 ? 'local, 1 thread' : `${n} worker${n > 1 ? 's' : ''}`}: ${(run.wallMs / 1e3).toFixed(1)} s (attribution ${(run.attributionMs / 1e3).toFixed(1)} s${run.chunks ? `, ${run.chunks} chunks` : ''}; load ${run.loadavg[0]})`);
        }
        const reference = outs.get(0)!;
        const parsed = JSON.parse(reference) as { edges: unknown[]; prompts: number };
        if (level === 'edge') edges = parsed.edges.length;
        for (const run of mine.slice(-order.length)) {
          if (run.workers === 0) continue;
          run.equal = outs.get(run.workers) === reference;
          if (!run.equal) throw new Error(`${analysis} on ${run.workers} workers differs from the local run's --json output`);
        }
        log(`  ${analysis}: ${order.length - 1} distributed results equal the local one byte for byte`);
        const sets = level === 'edge' ? edges + 1 : (JSON.parse(reference) as { nodes: unknown[] }).nodes.length;
        shape[level] = { prompts: parsed.prompts, rows: sets * parsed.prompts };
      }
      const med = (n: number) => stats(mine.filter((r) => r.workers === n).map((r) => r.wallMs));
      const attr = (n: number) => stats(mine.filter((r) => r.workers === n).map((r) => r.attributionMs));
      const one = med(1).median;
      for (const n of [0, ...opts.workers]) {
        const w = med(n);
        const a = attr(n);
        summary.push({
          analysis, workers: n, wallMs: w, attributionMs: a, speedupVs1: round(one / w.median, 2), speedupVsLocal: round(med(0).median / w.median, 2),
          attributionSpeedupVs1: round(attr(1).median / a.median, 2), efficiency: n ? round(attr(1).median / (n * a.median), 2) : null,
        });
      }
    }

    // sweep --broker: the clean run of 1,152 prompts (and a mean-ablated head's), with 1 and 2 workers.
    const sweepWorkers = opts.workers.filter((n) => n <= 2);
    for (const [analysis, ablate] of [['sweep', []], ['sweep --ablate a1.h0 (mean)', ['a1.h0']]] as const) {
      if (!opts.sweepReps || !sweepWorkers.length) break;
      const args = ['sweep', SWEEP_SUITE, '--model', DIST_MODEL, ...(ablate.length ? ['--ablate', ablate.join(',')] : []), '--resamples', '0', '--json'];
      const mine: DistRun[] = [];
      for (let rep = 0; rep < opts.sweepReps; rep++) {
        const order = [0, ...sweepWorkers];
        for (let i = 0; i < rep % order.length; i++) order.push(order.shift()!);
        const outs = new Map<number, string>();
        for (const n of order) {
          const r = n === 0 ? await local({ sweep: SWEEP_SUITE, model: DIST_MODEL, ablate: [...ablate] }) : await onWorkers(redis.url, n, args);
          outs.set(n, r.out);
          mine.push({ analysis, ...r.run });
          log(`  ${analysis}, ${n === 0 ? 'local, 1 thread' : `${n} worker${n > 1 ? 's' : ''}`}: ${(r.run.wallMs / 1e3).toFixed(1)} s (the prompts ${(r.run.attributionMs / 1e3).toFixed(1)} s${r.run.chunks ? `, ${r.run.chunks} chunks` : ''}; load ${r.run.loadavg[0]})`);
        }
        for (const run of mine.slice(-order.length)) {
          if (run.workers === 0) continue;
          run.equal = outs.get(run.workers) === outs.get(0);
          if (!run.equal) throw new Error(`${analysis} on ${run.workers} workers differs from the local run's --json output`);
        }
      }
      runs.push(...mine);
      const med = (n: number) => stats(mine.filter((r) => r.workers === n).map((r) => r.wallMs));
      const attr = (n: number) => stats(mine.filter((r) => r.workers === n).map((r) => r.attributionMs));
      for (const n of [0, ...sweepWorkers]) {
        summary.push({
          analysis, workers: n, wallMs: med(n), attributionMs: attr(n), speedupVs1: round(med(1).median / med(n).median, 2), speedupVsLocal: round(med(0).median / med(n).median, 2),
          attributionSpeedupVs1: round(attr(1).median / attr(n).median, 2), efficiency: n ? round(attr(1).median / (n * attr(n).median), 2) : null,
        });
      }
    }

    // Overhead per chunk: the demo model's edge patching (36 engine calls), one worker; one-call chunks vs one chunk.
    log('  overhead: demo induction-gpt2 edge patching on 1 worker, one call per chunk vs one chunk');
    const demoArgs = ['attribute', DEMO_SUITE, '--model', DEMO_MODEL, '--level', 'edge', '--method', 'patching', '--json'];
    const many: DistRun[] = [];
    const single: DistRun[] = [];
    for (let rep = 0; rep < opts.overheadReps; rep++) {
      for (const tiny of rep % 2 ? [false, true] : [true, false]) {
        const r = await onWorkers(redis.url, 1, demoArgs, { CIRCUITLENS_CHUNK_ROWS: tiny ? '1' : '1000000000' });
        (tiny ? many : single).push({ analysis: 'overhead', ...r.run });
      }
    }
    const localDemo = await local({ suite: DEMO_SUITE, model: DEMO_MODEL, level: 'edge' });
    const calls = many[0]!.chunks!;
    const manyMs = stats(many.map((r) => r.attributionMs));
    const oneMs = stats(single.map((r) => r.attributionMs));
    // A worker's first chunk also loads the model and prepares the run: left out of both sums.
    const workerSum = (r: DistRun) => r.chunkMs!.slice(1).reduce((a, b) => a + b, 0);
    const workerPerChunk = stats(many.map((r) => workerSum(r) / (r.chunkMs!.length - 1))).median;
    const gaps = many.flatMap((r) => r.gapMs ?? []);
    const overhead = {
      calls, oneChunkMs: oneMs, manyChunksMs: manyMs,
      perChunkMs: round((manyMs.median - oneMs.median) / (calls - 1), 1),
      workerPerChunkMs: round(workerPerChunk, 1),
      gapMedianMs: round(stats(gaps).median, 1),
      localPerCallMs: round(localDemo.run.attributionMs / calls, 1),
    };
    runs.push(...many, ...single);
    log(`  ${calls} one-call chunks ${(manyMs.median / 1e3).toFixed(2)} s vs one chunk ${(oneMs.median / 1e3).toFixed(2)} s (medians of ${many.length}): ${overhead.perChunkMs} ms per chunk; a worker's chunk ${overhead.workerPerChunkMs} ms vs ${overhead.localPerCallMs} ms per call locally; dispatch gap median ${overhead.gapMedianMs} ms`);

    const result: DistributedResult = {
      cores,
      model: { file: path.relative(ROOT, DIST_MODEL), layers: 4, heads: 8, dModel: 256, edges },
      edge: { suite: path.relative(ROOT, EDGE_SUITE), ...(shape.edge ?? { prompts: 0, rows: 0 }) },
      node: { suite: path.relative(ROOT, NODE_SUITE), ...(shape.node ?? { prompts: 0, rows: 0 }) },
      runs, summary, overhead, allEqual: runs.every((r) => r.equal !== false),
    };
    if (opts.gpt2Small) {
      const eff = summary.find((s) => s.analysis === 'edge patching' && s.workers === 2)?.efficiency ?? 1;
      result.gpt2Small = fs.existsSync(GPT2_SMALL.file) ? await projectGpt2Small(eff, overhead.perChunkMs, opts.projectWorkers) : { skipped: `${path.relative(ROOT, GPT2_SMALL.file)} missing (npm run bench -- --only edges writes it)` };
    }
    return result;
  } finally {
    await redis.close();
  }
}

/**
 * GPT-2-small's full exact edge patching with N workers: bench 3b's estimate (64 prompts × 16 tokens, every edge
 * set one ablated run of every prompt, timed on 2 edges and multiplied by the 32,492 sets) at one thread, divided
 * over N workers at the efficiency measured with 2 workers here, plus the measured overhead and an assumed network
 * latency per chunk, plus the coordinator's own load and clean pass.
 */
async function projectGpt2Small(efficiency: number, overheadPerChunkMs: number, workers: number[]): Promise<GptProjection> {
  const prompts = 64, promptTokens = 16, patchRows = 64, reps = 2, latencyPerChunkMs = 4;
  log(`  GPT-2-small: the cost of one edge set (${prompts} prompts × ${promptTokens} tokens) at 1 and 2 threads`);
  const msPerSet: Record<string, Stats> = {};
  let edges = 0, rowsPerCall = 0, coordinatorSetupMs = 0;
  for (const threads of [1, 2]) {
    const t0 = performance.now();
    const engine = await loadEngine(GPT2_SMALL.file, createRuntime('node', { ...nodeRuntimeOptions, threads }));
    const ps = inductionSuite(prompts, promptTokens, engine.info.vocab, 31);
    const ctx = await prepare(engine, ps, 'zero', { maxRows: patchRows });
    const ec = await prepareEdges(ctx);
    if (threads === 1) coordinatorSetupMs = performance.now() - t0;
    edges = ec.ids.length;
    const E = edges;
    const sets = [Math.floor(0.25 * E), Math.floor(0.75 * E)].map((e) => { const w = new Float32Array(E); w[e] = 1; return w; });
    await evaluateEdgeSets(ec, sets); // builds the edge forward session
    const samples: number[] = [];
    for (let i = 0; i < reps; i++) { const t = performance.now(); await evaluateEdgeSets(ec, sets); samples.push((performance.now() - t) / sets.length); }
    msPerSet[`${threads} thread${threads > 1 ? 's' : ''}`] = stats(samples);
    rowsPerCall = Math.min(patchRows, edgeRowsPerCall(ec, promptTokens, 'forward'));
    await engine.release();
    log(`    ${threads} thread${threads > 1 ? 's' : ''}: ${(stats(samples).median / 1e3).toFixed(2)} s per edge set (load ${os.loadavg()[0]!.toFixed(2)})`);
  }
  const sets = edges + 1;
  const rows = sets * prompts;
  const callRows = Array.from({ length: Math.ceil(rows / rowsPerCall) }, (_, i) => Math.min(rowsPerCall, rows - i * rowsPerCall));
  const chunks = planChunks('x', callRows).length;
  const per1 = msPerSet['1 thread']!.median;
  const hours = (ms: number) => round(ms / 3.6e6, 2);
  const projection = workers.map((n) => {
    const compute = (sets * per1) / n;
    const perWorkerChunks = Math.ceil(chunks / n);
    return {
      workers: n,
      // One worker is the reference the efficiency is measured against: no loss applied there.
      // A negative measured overhead is noise (the many-chunk run was the faster one): counted as none.
      hours: hours(coordinatorSetupMs + compute / (n === 1 ? 1 : efficiency) + perWorkerChunks * (Math.max(0, overheadPerChunkMs) + latencyPerChunkMs) + (sets * per1) / chunks),
      idealHours: hours(compute),
    };
  });
  const oneMachineHours = hours(sets * msPerSet['2 threads']!.median);
  const assumptions = [
    `one core per worker (--threads 1), each as fast as one core of this machine (${os.cpus()[0]?.model ?? 'unknown CPU'}) at this load`,
    'the model file at the same path on every worker machine (as the broker requires), loaded once per worker',
    `the ${efficiency} parallel efficiency measured with 2 workers on this machine's 2 cores holds for N ≥ 2 workers on N cores (edge patching chunks are independent; the coordinator only waits)`,
    `per chunk: the ${overheadPerChunkMs} ms overhead measured here (one worker, localhost Redis; counted as 0 when negative, i.e. within the noise) plus ${latencyPerChunkMs} ms of network latency (about four round trips of 1 ms: take, lock, complete, the coordinator's poll)`,
    `${chunks} chunks of ~512 rows (${rowsPerCall} rows per engine call, as the engine's memory budget gives on this 24 GiB machine); the last chunk's time added once for the tail`,
    'the coordinator\'s wait with thousands of chunks is measured apart (bench/broker-wait.js: it follows the queue\'s events); not measured: machines with other CPUs',
  ];
  log(`    projection (${sets} sets, ${chunks} chunks): ${projection.map((p) => `${p.workers} worker${p.workers > 1 ? 's' : ''} ${p.hours} h`).join(', ')}; one machine, 2 threads: ${oneMachineHours} h`);
  return { prompts, promptTokens, edges, sets, rowsPerCall, chunks, msPerSet, coordinatorSetupMs: round(coordinatorSetupMs, 0), efficiency, overheadPerChunkMs, latencyPerChunkMs, projection, oneMachineHours, assumptions };
}
