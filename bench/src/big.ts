// Bench "big": one ~1.1B-parameter Llama-shaped model (TinyLlama-1.1B's dimensions, random weights, weights in one
// external data file) on one machine: load, one forward, tracing every hook, a one-layer head sweep (mean
// ablation) and node EAP, each phase in its own child process so its peak RSS is its own. Not a test; nothing is
// asserted. The model is written by scripts/make_big_llama.py into bench/models/tinyllama-1.1b/ (git-ignored,
// ~4.4 GB); without it the section is skipped unless --make-big asks to write it.
//
// The parent watches each child's memory (every 100 ms) and kills it above --big-rss-limit GiB (default 14),
// recording where it stood: the benchmark reports a model that does not fit instead of taking the machine down
// with it. Memory is PSS (/proc/PID/smaps_rollup), not RSS: where onnxruntime memory-maps the weights file (large
// external data, no prepacking: core/nodejs/ort-node.ts) every session maps the same page-cache pages, and RSS
// counts them once per mapping (three sessions: three times 4.1 GiB) while PSS splits each page among its mappings,
// so it counts the one physical copy once. RSS is recorded beside it.
//
// Child mode (run by the parent): node --expose-gc bench/.build/main.js --big-child PHASE MODEL PROMPTS TOKENS LAYER
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { evaluateSets, prepare, type EvalContext } from '../../core/analysis/evaluate';
import { eapNodeScores } from '../../core/analysis/attribute/gradient';
import { createRuntime, loadEngine } from '../../core/nodejs/load';
import { headId } from '../../core/ids';
import { decodeF32, log, maxAbsDiff, PYTHON, round, ROOT } from './harness';
import { nodeRuntimeOptions } from './models';
import { inductionSuite } from './suite';

export const BIG_DIR = path.join(ROOT, 'bench', 'models', 'tinyllama-1.1b');
export const BIG_MODEL = path.join(BIG_DIR, 'model.onnx');

/**
 * trace: load, forward, trace every hook. sweep: prepare (mean) + the heads of one layer. eap: prepare (mean) +
 * eapNodeScores, as `circuitlens attribute --method gradient` runs it. eap-lean (bench-only, not in the default
 * list): the same EAP from a context built by hand (means from the main session, no clean run), so the lean
 * metrics session `prepare` builds never loads: one weight copy fewer (what an engine that released or shared
 * sessions would need).
 */
export type BigPhase = 'trace' | 'sweep' | 'eap' | 'eap-lean';
export const BIG_PHASES: BigPhase[] = ['trace', 'sweep', 'eap'];
export const BIG_PHASES_ALL: BigPhase[] = [...BIG_PHASES, 'eap-lean'];

/** One timed step inside a child: its wall time and the RSS figures around it. */
export interface BigStep { name: string; ms: number; rssBeforeMiB: number; rssAfterMiB: number; peakMiB: number; note?: string; pssBeforeMiB?: number; pssAfterMiB?: number; peakPssMiB?: number }

export interface BigPhaseResult {
  phase: BigPhase;
  ok: boolean;
  steps: BigStep[];
  /** The child's maximum RSS (getrusage, or the last /proc sample before it was killed), MiB. */
  processPeakMiB: number;
  /** The highest PSS seen (the child's 20 ms samples and the watchdog's), MiB: the phase's real footprint. */
  peakPssMiB?: number;
  /** The parent's watchdog: the highest PSS it saw, and whether it killed the child for crossing the limit. */
  watchedPeakMiB: number;
  killedAtLimit: boolean;
  error?: string;
  extra?: Record<string, unknown>;
}

export interface BigResult {
  model: string;
  label: string;
  file: string;
  fileBytes: { onnx: number; data: number };
  config?: Record<string, unknown>;
  prompts: number;
  promptTokens: number;
  sweepLayer: number;
  rssLimitGiB: number;
  phases: BigPhaseResult[];
  /** Headline numbers (seconds, GiB) taken from the phases: undefined where a phase failed. */
  summary: { loadS?: number; peakRssGiB?: number; peakPssGiB?: number; forwardS?: number; traceAllS?: number; sweepS?: number; eapS?: number };
}

export interface BigOptions { make: boolean; rssLimitGiB: number; prompts: number; promptTokens: number; layer?: number; phases: BigPhase[] }

/** Writes the model with scripts/make_big_llama.py (a few minutes, ~10 GiB peak RSS). */
export function ensureBigModel(make: boolean): string | undefined {
  const need = [BIG_MODEL, path.join(BIG_DIR, 'model.onnx.data'), path.join(BIG_DIR, 'config.json')];
  if (need.every((f) => fs.existsSync(f))) return undefined;
  if (!make) return `${path.relative(ROOT, BIG_MODEL)} not found; run \`/usr/bin/python3 scripts/make_big_llama.py\` (about 2 min, ~10 GiB RAM, 4.4 GB of disk) or pass --make-big`;
  log('bench/models/tinyllama-1.1b/ missing: running scripts/make_big_llama.py (a few minutes, ~10 GiB peak RSS)');
  const r = spawnSync(PYTHON, [path.join(ROOT, 'scripts', 'make_big_llama.py')], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error('scripts/make_big_llama.py failed');
  return undefined;
}

/** A process' PSS in kB (smaps_rollup), or its VmRSS where there is no smaps_rollup. */
export function pssKb(pid: number | 'self'): number | undefined {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    if (m) return Number(m[1]);
  } catch { /* older kernels */ }
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function runPhase(phase: BigPhase, opts: BigOptions & { layer: number }): Promise<BigPhaseResult> {
  const main = path.join(ROOT, 'bench', '.build', 'main.js');
  const args = ['--expose-gc', main, '--big-child', phase, BIG_MODEL, String(opts.prompts), String(opts.promptTokens), String(opts.layer),
    ...(nodeRuntimeOptions.threads ? ['--threads', String(nodeRuntimeOptions.threads)] : [])];
  const limitKb = opts.rssLimitGiB * 1024 * 1024;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const steps: BigStep[] = [];
    let final: { processPeakMiB: number; peakPssMiB?: number; extra?: Record<string, unknown> } | undefined;
    let stderr = '';
    let watched = 0;
    let killed = false;
    const timer = setInterval(() => {
      const kb = pssKb(child.pid!);
      if (kb === undefined) return;
      watched = Math.max(watched, kb);
      if (kb > limitKb && !killed) {
        killed = true;
        log(`  [big ${phase}] PSS ${(kb / 2 ** 20).toFixed(2)} GiB crossed the ${opts.rssLimitGiB} GiB limit: killing the child`);
        child.kill('SIGKILL');
      }
    }, 100);
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.startsWith('{')) continue;
        const msg = JSON.parse(line) as { step?: BigStep; done?: { processPeakMiB: number; peakPssMiB?: number; extra?: Record<string, unknown> } };
        if (msg.step) {
          steps.push(msg.step);
          const s = msg.step;
          log(`  [big ${phase}] ${s.name}: ${(s.ms / 1e3).toFixed(2)} s, PSS ${((s.pssBeforeMiB ?? 0) / 1024).toFixed(2)} → ${((s.pssAfterMiB ?? 0) / 1024).toFixed(2)} GiB, peak PSS ${((s.peakPssMiB ?? 0) / 1024).toFixed(2)} GiB (RSS ${(s.rssAfterMiB / 1024).toFixed(2)}, peak ${(s.peakMiB / 1024).toFixed(2)})${s.note ? ` (${s.note})` : ''}`);
        }
        if (msg.done) final = msg.done;
      }
    });
    child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
    child.on('close', (code, signal) => {
      clearInterval(timer);
      const ok = code === 0 && !!final;
      const error = ok ? undefined : killed ? `killed at ${(watched / 2 ** 20).toFixed(2)} GiB PSS (limit ${opts.rssLimitGiB} GiB) after ${steps.map((s) => s.name).join(', ') || 'nothing'}`
        : `exit ${code ?? signal}: ${stderr.trim().split('\n').slice(-6).join(' | ')}`;
      if (error) log(`  [big ${phase}] failed: ${error}`);
      if (final?.extra?.referenceMaxAbsDiff !== undefined) log(`  [big ${phase}] forward vs PyTorch (reference.json): max |Δ logit| ${(final.extra.referenceMaxAbsDiff as number).toExponential(2)} (max |logit| ${(final.extra.referenceMaxAbs as number).toFixed(3)})`);
      resolve({
        phase, ok, steps, processPeakMiB: final?.processPeakMiB ?? round(watched / 1024, 1), peakPssMiB: round(Math.max(final?.peakPssMiB ?? 0, watched / 1024), 1),
        watchedPeakMiB: round(watched / 1024, 1), killedAtLimit: killed, error, extra: final?.extra,
      });
    });
  });
}

export async function bigBench(opts: BigOptions): Promise<BigResult | { skipped: string }> {
  const skipped = ensureBigModel(opts.make);
  if (skipped) {
    log(`\n[big] skipped: ${skipped}`);
    return { skipped };
  }
  const cfgFile = path.join(BIG_DIR, 'config.json');
  const config = fs.existsSync(cfgFile) ? (JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as { config: Record<string, number> }).config : undefined;
  const layer = opts.layer ?? Math.floor((config?.n_layers ?? 22) / 2);
  const label = 'TinyLlama-1.1B shape (22L × 32H/4KV, d 2048, d_mlp 5632, V 32000, random, external data)';
  log(`\n[big] ${label}: ${opts.prompts} prompts × ${opts.promptTokens} tokens; sweep of layer ${layer}; RSS limit ${opts.rssLimitGiB} GiB; phases ${opts.phases.join(', ')}, one child each`);
  const phases: BigPhaseResult[] = [];
  for (const p of opts.phases) phases.push(await runPhase(p, { ...opts, layer }));
  const step = (phase: BigPhase, name: string) => phases.find((p) => p.phase === phase)?.steps.find((s) => s.name === name);
  const s = (x?: BigStep) => (x ? round(x.ms / 1e3, 2) : undefined);
  const peaks = phases.map((p) => p.processPeakMiB).filter((x) => Number.isFinite(x));
  const pss = phases.map((p) => p.peakPssMiB ?? NaN).filter((x) => Number.isFinite(x));
  const summary = {
    loadS: s(step('trace', 'load') ?? phases.flatMap((p) => p.steps).find((x) => x.name === 'load')),
    peakRssGiB: peaks.length ? round(Math.max(...peaks) / 1024, 2) : undefined,
    peakPssGiB: pss.length ? round(Math.max(...pss) / 1024, 2) : undefined,
    forwardS: s(step('trace', 'forward')),
    traceAllS: s(step('trace', 'trace all hooks')),
    sweepS: s(step('sweep', 'sweep')),
    eapS: s(step('eap', 'eap') ?? step('eap-lean', 'eap')),
  };
  log(`  [big] load ${summary.loadS ?? '—'} s, peak PSS ${summary.peakPssGiB ?? '—'} GiB (RSS ${summary.peakRssGiB ?? '—'}), forward ${summary.forwardS ?? '—'} s, trace all ${summary.traceAllS ?? '—'} s, sweep ${summary.sweepS ?? '—'} s, EAP ${summary.eapS ?? '—'} s`);
  return {
    model: 'tinyllama-1.1b', label, file: path.relative(ROOT, BIG_MODEL),
    fileBytes: { onnx: fs.statSync(BIG_MODEL).size, data: fs.statSync(path.join(BIG_DIR, 'model.onnx.data')).size },
    config, prompts: opts.prompts, promptTokens: opts.promptTokens, sweepLayer: layer, rssLimitGiB: opts.rssLimitGiB, phases, summary,
  };
}

// ---- child side --------------------------------------------------------------------------------------------

const rssMiB = () => process.memoryUsage.rss() / 2 ** 20;
const pssMiB = () => (pssKb('self') ?? 0) / 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs one phase in this process and prints one JSON line per step, then `{"done": ...}`. */
export async function bigChild(argv: string[]): Promise<void> {
  const [phase, file, promptsArg, tokensArg, layerArg, ...rest] = argv as [BigPhase, string, string, string, string, ...string[]];
  const ti = rest.indexOf('--threads');
  if (ti >= 0) nodeRuntimeOptions.threads = Number(rest[ti + 1]);
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
  const P = Number(promptsArg);
  const T = Number(tokensArg);
  const layer = Number(layerArg);
  const extra: Record<string, unknown> = {};
  let peak = rssMiB();
  let peakPss = pssMiB();
  let processPeakPss = peakPss;
  const sampler = setInterval(() => { peak = Math.max(peak, rssMiB()); }, 5);
  const pssSampler = setInterval(() => { const p = pssMiB(); peakPss = Math.max(peakPss, p); processPeakPss = Math.max(processPeakPss, p); }, 20);
  const step = async <T>(name: string, f: () => Promise<T>, note?: (v: T) => string): Promise<T> => {
    gc();
    const before = rssMiB();
    const pssBefore = pssMiB();
    peak = before;
    peakPss = pssBefore;
    const t0 = performance.now();
    const v = await f();
    const ms = performance.now() - t0;
    const after = rssMiB();
    const pssAfter = pssMiB();
    peakPss = Math.max(peakPss, pssAfter);
    processPeakPss = Math.max(processPeakPss, peakPss);
    // Loading starts the process' life: its getrusage peak is the load's peak (the 5 ms sampler misses native spikes).
    peak = Math.max(peak, after, name === 'load' ? process.resourceUsage().maxRSS / 1024 : 0);
    const s: BigStep = { name, ms: round(ms, 1), rssBeforeMiB: round(before, 1), rssAfterMiB: round(after, 1), peakMiB: round(peak, 1), note: note?.(v),
      pssBeforeMiB: round(pssBefore, 1), pssAfterMiB: round(pssAfter, 1), peakPssMiB: round(peakPss, 1) };
    process.stdout.write(`${JSON.stringify({ step: s })}\n`);
    return v;
  };

  const engine = await step('load', () => loadEngine(file, createRuntime('node', nodeRuntimeOptions)), (e) => `${e.info.layers} layers, ${e.info.heads} heads, d ${e.info.dModel}, vocab ${e.info.vocab}`);
  for (let i = 0; i < 2; i++) { gc(); await sleep(200); }
  const { vocab, heads } = engine.info;
  const prompts = inductionSuite(P, T, vocab, 37);

  if (phase === 'trace') {
    // ids 1..16: the prompt scripts/make_big_llama.py ran through PyTorch (reference.json).
    const ids = [Array.from({ length: 16 }, (_, i) => i + 1)];
    const refFile = path.join(path.dirname(file), 'reference.json');
    const fwd = await step('forward', () => engine.run({ ids }), (r) => `full logits ${r.logits.dims.join('×')}`);
    if (fs.existsSync(refFile)) {
      const ref = JSON.parse(fs.readFileSync(refFile, 'utf8')) as { last_logits: { b64: string }; max_abs: number };
      const V = engine.info.vocab;
      const last = fwd.logits.data.subarray(15 * V, 16 * V);
      extra.referenceMaxAbsDiff = maxAbsDiff(last, decodeF32(ref.last_logits.b64));
      extra.referenceMaxAbs = ref.max_abs;
      log(`  forward vs PyTorch (reference.json): max |Δ logit| ${(extra.referenceMaxAbsDiff as number).toExponential(2)} (max |logit| ${ref.max_abs.toFixed(3)})`);
    }
    await step('forward again', () => engine.run({ ids }));
    // Tracing before the lastOnly runs: its peak is the CLI's `trace --hooks '*'` (one session).
    const tr = await step('trace all hooks', () => engine.run({ ids, hooks: engine.hookNames }), (r) => {
      const bytes = Object.values(r.activations).reduce((a, t) => a + t.data.byteLength, 0);
      return `${Object.keys(r.activations).length} hooks, ${(bytes / 2 ** 20).toFixed(1)} MiB of activations`;
    });
    extra.hooks = Object.keys(tr.activations).length;
    await step('forward lastOnly (builds the metrics session)', () => engine.run({ ids, lastOnly: true }));
    await step('forward lastOnly', () => engine.run({ ids, lastOnly: true }));
  } else if (phase === 'sweep') {
    const ctx = await step('prepare (mean ablation: means + clean run)', () => prepare(engine, prompts, 'mean'));
    const nodes = Array.from({ length: heads }, (_, h) => headId(layer, h));
    const res = await step('sweep', () => evaluateSets(ctx, [[], ...nodes.map((n) => [n])]), () => `${nodes.length} heads of layer ${layer}, ${P} prompts, skip layers: ${engine.maySkipLayers}`);
    const clean = res[0]!.metrics.logit_diff;
    extra.scores = nodes.map((n, i) => ({ id: n, score: round(clean - res[i + 1]!.metrics.logit_diff, 6) }));
    extra.layerSkipping = await engine.canSkipLayers();
    await step('sweep again', () => evaluateSets(ctx, [[], ...nodes.map((n) => [n])]));
  } else if (phase === 'eap') {
    const ctx = await step('prepare (mean ablation: means + clean run)', () => prepare(engine, prompts, 'mean'));
    const scores = await step('eap', () => eapNodeScores(ctx, 'logit_diff'), (s) => `${s.length} nodes (first call: builds the backward session)`);
    extra.maxAbsScore = Math.max(...scores.map((s) => Math.abs(s.score)));
    extra.finite = scores.every((s) => Number.isFinite(s.score));
    await step('eap again', () => eapNodeScores(ctx, 'logit_diff'));
    const est = engine.memoryEstimate(undefined);
    extra.memoryPlan = { weightsGiB: round(engine.weightBytes / 2 ** 30, 2), heldGiB: round(est.held / 2 ** 30, 2), budgetGiB: round(est.budget / 2 ** 30, 2), gradientRowsThatFit: engine.gradientRowsThatFit(T) };
    log(`  [big eap] memory plan: ${JSON.stringify(extra.memoryPlan)}`);
  } else if (phase === 'eap-lean') {
    const ids = prompts.map((p) => p.ids);
    const means = await step('means (main session)', () => engine.means(ids));
    const ctx: EvalContext = { engine, prompts, ablation: 'mean', means, cleanLogProbs: [], maxRows: 256 };
    const scores = await step('eap', () => eapNodeScores(ctx, 'logit_diff'), (s) => `${s.length} nodes (first call: builds the backward session; no metrics session)`);
    extra.maxAbsScore = Math.max(...scores.map((s) => Math.abs(s.score)));
    extra.finite = scores.every((s) => Number.isFinite(s.score));
    await step('eap again', () => eapNodeScores(ctx, 'logit_diff'));
  }
  clearInterval(sampler);
  clearInterval(pssSampler);
  process.stdout.write(`${JSON.stringify({ done: { processPeakMiB: round(process.resourceUsage().maxRSS / 1024, 1), peakPssMiB: round(processPeakPss, 1), extra } })}\n`);
  process.exit(0);
}
