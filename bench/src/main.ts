// `npm run bench` (bench/run.js builds this file to bench/.build/main.js and runs it). Not part of `npm test`;
// nothing here asserts a time: targets are reported as met or missed.
//
//   node bench/run.js [--only forward,sweep,gradient,edges,peak,graph,memory,profile,big,distributed] [--quick] [--full] [--reps N]
//                     [--no-wasm] [--no-prototypes] [--torch-threads N] [--threads N] [--spinning during-run|always|never] [--models induction-gpt2,induction-llama,gpt2-small]
//   (--no-prototypes: leave out the memory benchmark's bench-only prototype rows)
//                     [--report-only]   (only rewrite README-numbers.md from latest.json)
//                     [--make-big] [--big-rss-limit GiB] [--big-prompts N] [--big-layer L] [--big-phases trace,sweep,eap,eap-lean]
//   (big: the TinyLlama-1.1B-shaped model, bench/src/big.ts; only with --only big or --full; --make-big writes the
//   model with scripts/make_big_llama.py when it is missing)
//                     [--graph-baseline DIR] [--graph-screenshot FILE] [--graphs gpt2,1k,10k]
//   (graph: DIR holds an older build's dist/webview/graph.js, measured alternately with the current one; FILE gets
//   a screenshot of GPT-2-small's edge graph as first drawn)
//                     [--dist-workers 1,2,4] [--dist-edge-reps N] [--dist-node-reps N] [--dist-sweep-reps N] [--dist-project 1,4,16,64] [--dist-no-gpt2]
//   (distributed: attribute --broker on worker processes, bench/src/distributed.ts; only with --only distributed or
//   --full; needs redis-server and `node esbuild.js`'s dist/cli.js)
import { execSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIG_MODEL, BIG_PHASES, BIG_PHASES_ALL, bigBench, bigChild, type BigPhase, type BigResult } from './big';
import { forwardBench, type ForwardResult } from './forward';
import { DIST_MODEL, distChild, distributedBench, type DistributedResult } from './distributed';
import { edgeBench, type EdgeResult } from './edges';
import { gradientBench, type GradientResult } from './gradient';
import { CHROMIUM, graphViewBench, type GraphViewResult } from './graph-view';
import { log, PYTHON, ROOT, TORCH_PACKAGES, torchMissing, TorchRef } from './harness';
import { memoryBench, type MemoryResult } from './memory';
import { benchModelReady, DEMO_GPT2, DEMO_LLAMA, ensureBenchModel, GPT2_SMALL, nodeRuntimeOptions } from './models';
import type { Spinning } from '../../core/nodejs/ort-node';
import { gemmPeak, type GemmResult } from './peak';
import { profileForward, profileScoring, profileSweep, type ForwardProfile, type ScoringProfile, type SweepProfile } from './profile';
import { keepOtherSections, renderSummary } from './report';
import { sweepBench, type SweepResult } from './sweep';

export interface Section<T> { date: string; data: T; notes?: string[] }
export interface Results {
  meta: Record<string, unknown>;
  forward?: Section<ForwardResult[]>;
  sweep?: Section<SweepResult[]>;
  gradient?: Section<GradientResult[] | { skipped: string }>;
  edges?: Section<EdgeResult[]>;
  peak?: Section<{ gemm: GemmResult[]; config: Record<string, number> }>;
  graph?: Section<GraphViewResult | { skipped: string }>;
  memory?: Section<MemoryResult>;
  profile?: Section<{ forward: ForwardProfile[]; sweep: SweepProfile[]; scoring?: ScoringProfile[] }>;
  big?: Section<BigResult | { skipped: string }>;
  distributed?: Section<DistributedResult>;
}

const ALL = ['forward', 'sweep', 'gradient', 'edges', 'peak', 'graph', 'memory', 'profile', 'big', 'distributed'] as const;
/**
 * Sections a run without --only runs: all but `big` (minutes and ~10 GiB) and `distributed` (minutes, and a
 * redis-server), which run with --only or --full.
 */
const DEFAULT = ALL.filter((b) => b !== 'big' && b !== 'distributed');
type Bench = (typeof ALL)[number];

function parseArgs(argv: string[]) {
  const get = (name: string) => {
    const i = argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
    if (i < 0) return undefined;
    return argv[i]!.includes('=') ? argv[i]!.split('=').slice(1).join('=') : argv[i + 1];
  };
  const has = (name: string) => argv.includes(`--${name}`);
  const only = (get('only')?.split(',') ?? (has('full') ? [...ALL] : [...DEFAULT])) as Bench[];
  for (const b of only) if (!ALL.includes(b)) throw new Error(`unknown benchmark "${b}" (choose from ${ALL.join(', ')})`);
  const reps = get('reps') ? Number(get('reps')) : undefined;
  return {
    only: new Set(only), quick: has('quick'), full: has('full'), reps, wasm: !has('no-wasm'), prototypes: !has('no-prototypes'),
    torchThreads: Number(get('torch-threads') ?? os.cpus().length),
    models: get('models')?.split(','),
    reportOnly: has('report-only'),
    flushDenormals: !has('no-flush-denormals'),
    threads: get('threads') ? Number(get('threads')) : undefined,
    spinning: get('spinning') as Spinning | undefined,
    graphBaseline: get('graph-baseline'),
    graphScreenshot: get('graph-screenshot'),
    graphs: get('graphs')?.split(','),
    big: {
      make: has('make-big'), rssLimitGiB: Number(get('big-rss-limit') ?? 14), prompts: Number(get('big-prompts') ?? 4), promptTokens: 16,
      layer: get('big-layer') !== undefined ? Number(get('big-layer')) : undefined,
      phases: (get('big-phases')?.split(',') ?? [...BIG_PHASES]) as BigPhase[],
    },
    dist: {
      workers: (get('dist-workers') ?? '1,2,4').split(',').map(Number), edgeReps: Number(get('dist-edge-reps') ?? 1), nodeReps: Number(get('dist-node-reps') ?? 3),
      sweepReps: Number(get('dist-sweep-reps') ?? 3),
      overheadReps: Number(get('dist-overhead-reps') ?? 3), gpt2Small: !has('dist-no-gpt2'), projectWorkers: (get('dist-project') ?? '1,4,16,64').split(',').map(Number),
    },
  };
}

function meta(torchThreads: number): Record<string, unknown> {
  const sh = (c: string) => { try { return execSync(c, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return undefined; } };
  const pkg = (p: string) => (JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', p, 'package.json'), 'utf8')) as { version: string }).version;
  return {
    date: new Date().toISOString(), commit: sh('git rev-parse --short HEAD'), dirty: !!sh('git status --porcelain'),
    cpu: os.cpus()[0]?.model, cores: os.cpus().length, memGiB: Math.round(os.totalmem() / 2 ** 30), loadavgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
    node: process.version, onnxruntimeNode: pkg('onnxruntime-node'), onnxruntimeWeb: pkg('onnxruntime-web'),
    torch: sh(`${PYTHON} -c "import torch; print(torch.__version__)"`), torchThreads, torchOmpWaitPolicy: process.env.OMP_WAIT_POLICY ?? 'PASSIVE', python: PYTHON,
    onnxruntimeNodeOptions: { ...nodeRuntimeOptions },
    note: 'Timings are medians of alternating runs on a shared 2-core machine; other processes add noise.',
  };
}

/** Whether a section runs PyTorch: the reference it is timed against, or a script that writes a model it needs. */
function usesTorch(b: Bench, makeBig: boolean): boolean {
  if (['forward', 'sweep', 'gradient', 'edges', 'peak', 'memory'].includes(b)) return true;
  if (b === 'profile') return !benchModelReady();
  if (b === 'big') return makeBig && !fs.existsSync(BIG_MODEL);
  if (b === 'distributed') return !fs.existsSync(DIST_MODEL);
  return false;
}

async function main(): Promise<void> {
  // A child of the big section (bench/src/big.ts) runs one phase in its own process.
  if (process.argv[2] === '--big-child') return bigChild(process.argv.slice(3));
  // The distributed section's local baseline runs in its own process, as the coordinator does.
  if (process.argv[2] === '--dist-child') return distChild(process.argv.slice(3));
  const args = parseArgs(process.argv.slice(2));
  nodeRuntimeOptions.flushDenormals = args.flushDenormals;
  nodeRuntimeOptions.threads = args.threads;
  if (args.spinning && !['during-run', 'always', 'never'].includes(args.spinning)) throw new Error(`--spinning: during-run, always or never, not "${args.spinning}"`);
  nodeRuntimeOptions.spinning = args.spinning;
  const resultsDir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const latest = path.join(resultsDir, 'latest.json');
  // A run of some benchmarks keeps the other sections of the previous run (each section has its own date).
  const prev: Results = fs.existsSync(latest) ? (JSON.parse(fs.readFileSync(latest, 'utf8')) as Results) : { meta: {} };
  if (args.reportOnly) {
    fs.writeFileSync(path.join(resultsDir, 'README-numbers.md'), renderSummary(prev));
    log('rewrote bench/results/README-numbers.md from latest.json');
    return;
  }
  const results: Results = { ...prev, meta: meta(args.torchThreads) };
  const date = () => new Date().toISOString();
  const R = (full: number, quick: number) => args.reps ?? (args.quick ? quick : full);
  const want = (spec: { key: string }) => !args.models || args.models.includes(spec.key);
  const save = () => {
    results.meta.loadavgAtEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
    fs.writeFileSync(latest, `${JSON.stringify(results, null, 1)}\n`);
    const summary = path.join(resultsDir, 'README-numbers.md');
    const before = fs.existsSync(summary) ? fs.readFileSync(summary, 'utf8') : undefined;
    fs.writeFileSync(summary, keepOtherSections(renderSummary(results), before));
  };

  // Sections that run PyTorch (the reference, or a script writing a model they need): without it, say what to
  // install before anything runs, rather than fail in the middle with a stack trace.
  const torchSections = [...args.only].filter((b) => usesTorch(b, args.big.make));
  const missing = torchSections.length ? torchMissing() : undefined;
  if (missing) {
    const without = ALL.filter((b) => b !== 'big' && !usesTorch(b, false));
    process.stderr.write(`npm run bench: ${torchSections.join(', ')} need${torchSections.length === 1 ? 's' : ''} PyTorch, and ${PYTHON} cannot import torch and onnx (${missing}).\n`
      + `Install them (Debian, Ubuntu): sudo apt-get install ${TORCH_PACKAGES}\n`
      + `or set BENCH_PYTHON to a Python that has torch and onnx${without.length ? `, or run only what needs neither: npm run bench -- --only ${without.join(',')}` : ''}.\n`);
    process.exitCode = 2;
    return;
  }

  const needsBigModel = ['forward', 'sweep', 'gradient', 'edges', 'memory', 'profile'].some((b) => args.only.has(b as Bench));
  if (needsBigModel) ensureBenchModel();
  const needsTorch = ['forward', 'sweep', 'gradient', 'edges', 'peak'].some((b) => args.only.has(b as Bench));
  const torch = needsTorch ? new TorchRef(args.torchThreads) : undefined;
  try {
    if (args.only.has('peak')) {
      log('\n[peak] float32 GEMM, onnxruntime-node (one-node MatMul model) vs torch.matmul');
      const gemm = await gemmPeak(torch!, [[2048, 2048, 2048], [1024, 768, 3072], [1024, 3072, 768], [1024, 768, 50257]], R(7, 3));
      const cfg = JSON.parse(fs.readFileSync(GPT2_SMALL.file.replace(/\.onnx$/, '.json'), 'utf8')) as { config: Record<string, number> };
      results.peak = { date: date(), data: { gemm, config: cfg.config } };
      save();
    }
    if (args.only.has('forward')) {
      const data: ForwardResult[] = [];
      const base = { wasm: args.wasm, torchThreads: args.torchThreads };
      if (want(DEMO_GPT2)) data.push(await forwardBench(torch!, DEMO_GPT2, { ...base, reps: R(101, 15), cache: true }));
      if (want(DEMO_LLAMA)) data.push(await forwardBench(torch!, DEMO_LLAMA, { ...base, reps: R(101, 15), cache: false }));
      if (want(GPT2_SMALL)) data.push(await forwardBench(torch!, GPT2_SMALL, { ...base, reps: R(5, 2), cache: true }));
      results.forward = { date: date(), data };
      save();
    }
    if (args.only.has('sweep')) {
      const data: SweepResult[] = [];
      const base = { prompts: 64, promptTokens: 16, torchThreads: args.torchThreads };
      if (want(DEMO_GPT2)) data.push(await sweepBench(torch!, DEMO_GPT2, { ...base, reps: R(31, 5) }));
      if (want(DEMO_LLAMA)) data.push(await sweepBench(torch!, DEMO_LLAMA, { ...base, reps: R(31, 5) }));
      if (!args.quick && want(GPT2_SMALL)) {
        // Layers 0 and 11: a head's sweep row costs the same in every layer for the hook loop, and (layer
        // skipping: rows start at the ablated layer) a fixed part plus a part linear in (layers − l) for
        // CircuitLens, so the mean over the first and last layer is the mean over all layers; --full sweeps all 144.
        data.push(await sweepBench(torch!, GPT2_SMALL, { ...base, reps: R(3, 1), layers: args.full ? undefined : [0, 11] }));
      }
      results.sweep = { date: date(), data };
      save();
    }
    if (args.only.has('gradient')) {
      const data: GradientResult[] = [];
      const base = { prompts: 64, promptTokens: 16, torchThreads: args.torchThreads };
      if (want(DEMO_GPT2)) data.push(await gradientBench(torch!, DEMO_GPT2, { ...base, reps: R(31, 5) }));
      if (!args.quick && want(GPT2_SMALL)) data.push(await gradientBench(torch!, GPT2_SMALL, { ...base, reps: R(3, 1) }));
      results.gradient = { date: date(), data };
      save();
    }
    if (args.only.has('edges')) {
      const data: EdgeResult[] = [];
      const base = { prompts: 64, promptTokens: 16 };
      // The demo model: exact patching over all of its edges; GPT-2-small: on 2 edges (128 rows, ~1 min a
      // round), extrapolated to all of them (every edge costs the same ablated run of every prompt). Rows per call:
      // the engine's default (256) on the demo; on GPT-2-small at most 32 for EAP (the engine's own limit is lower:
      // ~90 MiB per row) and 64 for patching. PyTorch's hook-based edge EAP (bench/torch_ref.py edge_eap) runs in
      // the EAP rounds.
      if (want(DEMO_GPT2)) data.push(await edgeBench(torch!, DEMO_GPT2, { ...base, torchThreads: args.torchThreads, reps: R(9, 3), patching: 'all', eapRows: 256, patchRows: 256 }));
      if (!args.quick && want(GPT2_SMALL)) data.push(await edgeBench(torch!, GPT2_SMALL, { ...base, torchThreads: args.torchThreads, reps: R(3, 1), patching: 2, eapRows: 32, patchRows: 64 }));
      results.edges = { date: date(), data };
      save();
    }
    if (args.only.has('memory')) {
      results.memory = { date: date(), data: memoryBench(GPT2_SMALL, { reps: R(3, 1), tokens: 128, prototypes: args.prototypes, torchThreads: args.torchThreads }) };
      save();
    }
    if (args.only.has('profile')) {
      const forward: ForwardProfile[] = [];
      const sweep: SweepProfile[] = [];
      if (want(DEMO_GPT2)) {
        forward.push(await profileForward(DEMO_GPT2, 8, 64, false));
        sweep.push(await profileSweep(DEMO_GPT2, { prompts: 64, promptTokens: 16, maxRows: 256 }));
      }
      if (want(GPT2_SMALL)) {
        forward.push(await profileForward(GPT2_SMALL, 8, 128, false));
        // One call of the GPT-2-small sweep: 256 rows × 16 tokens, last-position logits.
        forward.push(await profileForward(GPT2_SMALL, 256, 16, true));
        if (!args.quick) sweep.push(await profileSweep(GPT2_SMALL, { prompts: 64, promptTokens: 16, layers: [11], maxRows: 256 }));
      }
      log('\n[profile] scoring prompts in JavaScript');
      const scoring = [await profileScoring(217, 2000), await profileScoring(50257, 200)];
      results.profile = { date: date(), data: { forward, sweep, scoring } };
      save();
    }
    if (args.only.has('big')) {
      for (const p of args.big.phases) if (!BIG_PHASES_ALL.includes(p)) throw new Error(`--big-phases: ${BIG_PHASES_ALL.join(', ')}, not "${p}"`);
      results.big = { date: date(), data: await bigBench(args.big) };
      save();
    }
    if (args.only.has('distributed')) {
      results.distributed = { date: date(), data: await distributedBench(args.dist) };
      save();
    }
    if (args.only.has('graph')) {
      if (!fs.existsSync(CHROMIUM)) {
        results.graph = { date: date(), data: { skipped: `Chromium not found at ${CHROMIUM}` } };
      } else {
        results.graph = { date: date(), data: await graphViewBench({ reps: R(3, 2), interactions: 6, baseline: args.graphBaseline, screenshot: args.graphScreenshot, graphs: args.graphs }) };
      }
      save();
    }
  } finally {
    await torch?.close();
  }
  save();
  log(`\nwrote ${path.relative(ROOT, latest)} and bench/results/README-numbers.md`);
}

main().catch((e) => { console.error(e); process.exit(1); });
