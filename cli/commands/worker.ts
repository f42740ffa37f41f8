import * as fs from 'node:fs';
import * as os from 'node:os';
import type { VariantWork } from '../../core/analysis/distributed/plan';
import { computeChunk, prepareForChunks, type ChunkJob, type ChunkResult, type ContextSpec, type Prepared } from '../../core/analysis/distributed/run';
import { computeVariant, openVariantBench, type VariantBench, type VariantResult } from '../../core/analysis/distributed/variants';
import { openSuite } from '../../core/analysis/open-suite';
import type { Engine } from '../../core/engine/engine';
import type { WeightVariants } from '../../core/engine/variants';
import { UserError } from '../../core/errors';
import { formatDiagnostic } from '../../core/formats/diagnostics';
import { parseSuite, type Suite } from '../../core/formats/suite';
import { createRuntime, loadEngine } from '../../core/nodejs/load';
import { openModelVariants } from '../../core/nodejs/model-variants';
import { sha256File } from '../../core/nodejs/workspace';
import { JSON_OPTION, parse, usageError, type Usage } from '../args';
import { brokerConnection, checkBroker, queueName, serveJobs, sha256Text } from '../../core/nodejs/broker';
import { VERSION } from '../common';

export const WORKER_USAGE: Usage = {
  synopsis: 'circuitlens worker --broker redis://HOST:PORT [--concurrency N] [--threads T] [--json]',
  about: 'Takes chunks of batched analyses (attribute, discover, verify, redundancy, prune, sensitivity with --broker;\n'
    + 'the extension\'s circuitlens.broker) from the broker\'s queue, computes them and answers with their rows (for\n'
    + 'prune and sensitivity: one pruned or quantized model, rebuilt here from the model, and its measures), until\n'
    + 'stopped (SIGTERM or Ctrl-C: the chunk at hand is finished first; a second signal stops at once and the chunk\n'
    + 'goes to another worker). Each chunk names its model by path and sha256: the file must be at that path here,\n'
    + 'with those bytes, or the chunk is refused. Loaded models are kept for the next chunks (the last two).\n'
    + 'Queue: CIRCUITLENS_QUEUE (default circuitlens).',
  options: [
    ['--broker URL', 'the Redis that holds the queue: redis://HOST:PORT[/DB] (rediss:// for TLS)'],
    ['--concurrency N', 'chunks at a time (default 1; each uses the runtime\'s threads)'],
    ['--threads T', 'onnxruntime intra-op threads per run (default: one per core)'],
    JSON_OPTION,
  ],
  json: 'one line per chunk done: {"chunk", "analysis", "rows", "ms"} (the log lines stay on stderr)',
};

/** Engines kept loaded, newest last; each with the contexts prepared on it, by context key. */
const KEEP_ENGINES = 2;
const KEEP_CONTEXTS = 4;

interface Loaded { key: string; engine: Promise<Engine>; contexts: Map<string, Promise<Prepared>> }
/** A model's weights in memory (pruned and quantized variants are made from them), with the benches made on them. */
interface Weights { key: string; v: WeightVariants; benches: Map<string, Promise<VariantBench>> }

export async function workerCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, { broker: { type: 'string' }, concurrency: { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean' } }, WORKER_USAGE);
  if (positionals.length) throw usageError(`unexpected argument "${positionals[0]}"`, WORKER_USAGE);
  if (!values.broker) throw usageError('--broker URL is required', WORKER_USAGE);
  const concurrency = wholeNumber(values.concurrency, '--concurrency', 1);
  const threads = values.threads === undefined ? undefined : wholeNumber(values.threads, '--threads', 1);
  const url = values.broker;
  brokerConnection(url);
  await checkBroker(url);
  const me = `${os.hostname()}:${process.pid}`;
  const log = (s: string) => process.stderr.write(`circuitlens worker ${me}: ${s}\n`);
  const engines: Loaded[] = [];
  const weights: Weights[] = [];
  const hashes = new Map<string, { stamp: string; sha: Promise<string> }>();

  /** The file's sha256, hashed again only when its size or mtime changes. */
  async function sha256(p: string): Promise<string> {
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(p);
    } catch {
      // Not a UserError: another worker may have the file, so the chunk is tried again there.
      throw new Error(`worker ${me}: model file not found: ${p} (each worker needs the model at the coordinator's path)`);
    }
    const stamp = `${st.size}:${st.mtimeMs}:${st.ino}`;
    const h = hashes.get(p);
    if (h && h.stamp === stamp) return h.sha;
    const sha = sha256File(p);
    hashes.set(p, { stamp, sha });
    return sha;
  }

  function contextFor(d: ChunkJob): Promise<Prepared> {
    const c = d.context;
    const key = `${c.model.path}\0${c.model.sha256}\0${c.runtime}`;
    let entry = engines.find((e) => e.key === key);
    if (entry) engines.splice(engines.indexOf(entry), 1);
    else {
      entry = { key, engine: loadEngine(c.model.path, createRuntime(c.runtime, { flushDenormals: true, threads })), contexts: new Map() };
      while (engines.length >= KEEP_ENGINES) void engines.shift()!.engine.then((e) => e.release(), () => undefined);
    }
    engines.push(entry);
    const e = entry;
    e.engine.catch(() => { const i = engines.indexOf(e); if (i >= 0) engines.splice(i, 1); });
    let ctx = e.contexts.get(c.key);
    if (!ctx) {
      ctx = (async () => {
        const engine = await e.engine;
        const { opened, diagnostics: ds } = openSuite(suiteOf(c), engine, c.ablation);
        if (!opened) throw new UserError(`the suite ${c.suite.path} does not open on ${c.model.path} here: ${ds.map(formatDiagnostic).join('; ')}`);
        const prepared = await prepareForChunks(opened, c.prompts);
        if (prepared.ctx.maxRows !== c.maxRows) throw new UserError(`this worker batches ${prepared.ctx.maxRows} rows per call, the coordinator ${c.maxRows}: results would differ`);
        return prepared;
      })();
      const p = ctx;
      p.catch(() => { if (e.contexts.get(c.key) === p) e.contexts.delete(c.key); });
      e.contexts.set(c.key, ctx);
      while (e.contexts.size > KEEP_CONTEXTS) e.contexts.delete(e.contexts.keys().next().value!);
    }
    return ctx;
  }

  /** The variant's bench: the model's weights (kept for the next variants), the baseline of its context and circuit. */
  function benchFor(c: ContextSpec, work: VariantWork): Promise<VariantBench> {
    const key = `${c.model.path}\0${c.model.sha256}\0${c.runtime}`;
    let entry = weights.find((w) => w.key === key);
    if (entry) weights.splice(weights.indexOf(entry), 1);
    else {
      while (weights.length >= KEEP_ENGINES) weights.shift();
      entry = { key, v: openModelVariants(c.model.path, createRuntime(c.runtime, { flushDenormals: true, threads })), benches: new Map() };
    }
    weights.push(entry);
    const benches = entry.benches;
    const bkey = `${c.key}\0${work.circuit ? sha256Text(JSON.stringify(work.circuit)) : ''}`;
    let bench = benches.get(bkey);
    if (!bench) {
      bench = openVariantBench(entry.v, suiteOf(c), c, work.circuit);
      const p = bench;
      p.catch(() => { if (benches.get(bkey) === p) benches.delete(bkey); });
      benches.set(bkey, p);
      while (benches.size > KEEP_CONTEXTS) benches.delete(benches.keys().next().value!);
    }
    return bench;
  }

  const delay = Number(process.env.CIRCUITLENS_WORKER_DELAY_MS ?? 0);
  async function processChunk(d: ChunkJob, id: string): Promise<ChunkResult | VariantResult> {
    const t0 = performance.now();
    if (d.format !== 2) throw new Error(`worker ${me} (CircuitLens ${VERSION}) does not read chunk format ${d.format}`);
    if (d.version !== VERSION) throw new Error(`worker ${me} runs CircuitLens ${VERSION}, the coordinator ${d.version}: results could differ; run one version everywhere`);
    log(`chunk ${id} (${d.work.kind}, calls ${d.chunk.from}–${d.chunk.to}, ${d.chunk.rows} rows) started`);
    // For fault tests: a worker slow enough to be stopped in the middle of a chunk.
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    const m = d.context.model;
    const sha = await sha256(m.path);
    if (sha !== m.sha256) {
      throw new Error(`worker ${me} refused the chunk: ${m.path} here has sha256 ${sha}, the coordinator's model ${m.sha256} (a different file at the same path)`);
    }
    const result = d.work.kind === 'variant'
      ? { point: await computeVariant(await benchFor(d.context, d.work), d.work) }
      : { rows: await computeChunk(await contextFor(d), d) };
    const ms = Math.round(performance.now() - t0);
    log(`chunk ${id} done: ${d.chunk.rows} rows in ${ms} ms`);
    if (values.json) out(JSON.stringify({ chunk: id, analysis: d.work.kind, rows: d.chunk.rows, ms }));
    return { ...result, worker: me, ms };
  }

  const worker = await serveJobs<ChunkJob, ChunkResult | VariantResult>(url, processChunk, { concurrency, log });
  log(`waiting for chunks on ${url} (queue ${queueName()}, concurrency ${concurrency}${threads ? `, ${threads} thread${threads > 1 ? 's' : ''}` : ''})`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        log(`${signal} again: stopping now; the chunk at hand goes back to the queue`);
        void worker.close(true).finally(() => resolve(0));
        return;
      }
      stopping = true;
      log(`${signal}: finishing the chunk at hand, then stopping`);
      void worker.close().then(async () => {
        for (const e of engines) await e.engine.then((x) => x.release(), () => undefined);
        log('stopped');
        resolve(0);
      });
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

/** The suite a chunk's context names, parsed from the text the coordinator read. */
function suiteOf(c: ContextSpec): Suite {
  const { suite, diagnostics } = parseSuite(c.suite.path, c.suite.text);
  if (!suite) throw new UserError(`the suite ${c.suite.path} does not parse here: ${diagnostics.map(formatDiagnostic).join('; ')}`);
  return suite;
}

function wholeNumber(v: string | undefined, flag: string, fallback: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new UserError(`${flag} must be a whole number from 1 to 1024 (got "${v}")`);
  return n;
}
