// Bench 6: peak memory (RSS) of tracing every hook of the GPT-2-small-shaped model at batch 1, CircuitLens
// native vs PyTorch forward hooks, each in its own process, alternating.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { log, mb, PYTHON, ROOT, stats, torchEnv, type Stats } from './harness';
import type { ModelSpec } from './models';

interface Sample {
  rssStartKb: number; rssAfterLoadKb: number; peakDuringLoadKb: number; peakDuringTraceKb: number; rssHoldingResultsKb: number; maxRssKb: number;
  hooks: number; resultBytes: number; ms: number;
}

export interface MemoryResult {
  model: string;
  tokens: number;
  /** Per contender, medians in MiB: after load (baseline), peak while tracing, peak of the whole process (load included). */
  mib: Record<string, { afterLoad: number; peakDuringTrace: number; traceGrowth: number; processPeak: number; processPeakTimeV: number; hooks: number; resultMiB: number }>;
  samples: Record<string, Sample[]>;
  processPeakStats: Record<string, Stats>;
}

function runChild(cmd: string, args: string[], threads: number): Sample & { timeVMaxRssKb: number } {
  // /usr/bin/time -v reports the child's own maximum RSS as well (a cross-check of getrusage).
  const r = spawnSync('/usr/bin/time', ['-v', cmd, ...args], { cwd: ROOT, encoding: 'utf8', env: torchEnv(threads), maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.slice(-2000)}`);
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  return { ...(JSON.parse(line!) as Sample), timeVMaxRssKb: m ? Number(m[1]) : NaN };
}

export function memoryBench(spec: ModelSpec, opts: { reps: number; tokens: number; prototypes: boolean; torchThreads: number }): MemoryResult {
  log(`\n[memory] ${spec.label}: trace every hook, batch 1 × ${opts.tokens} tokens, one process each`);
  const child = path.join(ROOT, 'bench', '.build', 'memory-child.js');
  const contenders: Record<string, () => Sample & { timeVMaxRssKb: number }> = {
    'circuitlens-native': () => runChild(process.execPath, ['--expose-gc', child, spec.file, String(opts.tokens)], opts.torchThreads),
    'pytorch hooks': () => runChild(PYTHON, [path.join(ROOT, 'bench', 'torch_ref.py'), 'memory', '--model', spec.file, '--weights', spec.weights, '--tokens', String(opts.tokens), '--threads', String(opts.torchThreads)], opts.torchThreads),
  };
  if (opts.prototypes) {
    const node = (...flags: string[]) => () => runChild(process.execPath, ['--expose-gc', child, spec.file, String(opts.tokens), ...flags], opts.torchThreads);
    contenders['proto native no prepack'] = node('--no-prepack');
  }
  const samples: Record<string, (Sample & { timeVMaxRssKb: number })[]> = Object.fromEntries(Object.keys(contenders).map((k) => [k, []]));
  const names = Object.keys(contenders);
  for (let r = 0; r < opts.reps; r++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + r) % names.length]!;
      const s = contenders[name]!();
      samples[name]!.push(s);
      log(`  ${name}: after load ${mb(s.rssAfterLoadKb)} MiB, peak while tracing ${mb(s.peakDuringTraceKb)} MiB, process peak ${mb(s.maxRssKb)} MiB (time -v ${mb(s.timeVMaxRssKb)})`);
    }
  }
  const med = (xs: number[]) => stats(xs).median;
  const mib = Object.fromEntries(Object.entries(samples).map(([k, ss]) => [k, {
    afterLoad: mb(med(ss.map((s) => s.rssAfterLoadKb))),
    peakDuringTrace: mb(med(ss.map((s) => s.peakDuringTraceKb))),
    traceGrowth: mb(med(ss.map((s) => s.peakDuringTraceKb - s.rssAfterLoadKb))),
    processPeak: mb(med(ss.map((s) => s.maxRssKb))),
    processPeakTimeV: mb(med(ss.map((s) => s.timeVMaxRssKb))),
    hooks: ss[0]!.hooks,
    resultMiB: mb(ss[0]!.resultBytes / 1024),
  }]));
  return { model: spec.key, tokens: opts.tokens, mib, samples, processPeakStats: Object.fromEntries(Object.entries(samples).map(([k, ss]) => [k, stats(ss.map((s) => s.maxRssKb))])) };
}
