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
import { cacheDir } from '../../core/nodejs/model-cache';
import { readModelVariants } from '../../core/nodejs/model-variants';
import { VERSION } from '../../core/nodejs/version';
import { WorkerModels } from '../../core/nodejs/worker-model';
import { JSON_OPTION, parse, usageError, type Usage } from '../args';
import { checkBroker, lockAllowanceMs, queueName, serveJobs, sha256Text, type JobLease } from '../../core/nodejs/broker';

export const WORKER_USAGE: Usage = {
  synopsis: 'circuitlens worker --broker redis://HOST:PORT [--cache DIR] [--concurrency N] [--threads T] [--json]',
  about: 'Takes chunks of batched analyses (attribute, discover, verify, redundancy, sweep, prune, sensitivity with\n'
    + '--broker; the extension\'s circuitlens.broker) from the broker\'s queue, computes them and answers with their\n'
    + 'rows (for prune and sensitivity: one pruned or quantized model, rebuilt here from the model, and its measures),\n'
    + 'until stopped (SIGTERM or Ctrl-C: the chunk at hand is finished first; a second signal stops at once and the\n'
    + 'chunk goes to another worker). Each chunk names its model by path and sha256: a file at that path here with\n'
    + 'those bytes (and, when the chunk lists them, the files beside it with theirs) is used as it is. Else, when the coordinator gave --model-url, the model and the files beside it\n'
    + 'are fetched into the cache (a folder per sha256, each file checked against the sha256 the coordinator\n'
    + 'computed; other bytes are refused) and reused by later chunks; without a URL the chunk is refused. Loaded\n'
    + 'models are kept for the next chunks (the last two). Queue: CIRCUITLENS_QUEUE (default circuitlens).',
  options: [
    ['--broker URL', 'the Redis that holds the queue: redis://HOST:PORT[/DB] (rediss:// for TLS)'],
    ['--cache DIR', 'where models fetched from a --model-url are kept (default: $CIRCUITLENS_CACHE, else ~/.cache/circuitlens/models)'],
    ['--concurrency N', 'chunks at a time (default 1; each uses the runtime\'s threads)'],
    ['--threads T', 'onnxruntime intra-op threads per run (default: one per core)'],
    JSON_OPTION,
  ],
  json: 'one line per chunk done: {"chunk", "analysis", "rows", "ms"} (the log lines stay on stderr)',
};

/** Engines kept loaded, newest last; each with the contexts prepared on it, by context key. */
const KEEP_ENGINES = 2;
const KEEP_CONTEXTS = 4;

interface Loaded { engine: Promise<Engine>; contexts: Kept<Promise<Prepared>> }
/** A model's weights in memory (pruned and quantized variants are made from them), with the benches made on them. */
interface Weights { v: Promise<WeightVariants>; benches: Kept<Promise<VariantBench>> }

/**
 * The last `keep` values asked for, by key, newest last: `get` makes a value when its key is not kept and drops the
 * oldest beyond `keep` (`drop` is told); a value that is a promise is forgotten when it fails, to be made again.
 */
class Kept<T> {
  private readonly values = new Map<string, T>();
  constructor(private readonly keep: number, private readonly drop: (v: T) => void = () => undefined) {}

  get(key: string, make: () => T): T {
    let v = this.values.get(key);
    if (v !== undefined) this.values.delete(key);
    else {
      v = make();
      const made = v;
      if (made instanceof Promise) made.catch(() => { if (this.values.get(key) === made) this.values.delete(key); });
    }
    this.values.set(key, v);
    while (this.values.size > this.keep) {
      const [k, old] = this.values.entries().next().value!;
      this.values.delete(k);
      this.drop(old);
    }
    return v;
  }

  /** Forgets `value` if it is still the one kept under `key`. */
  forget(key: string, value: T): void { if (this.values.get(key) === value) this.values.delete(key); }

  all(): T[] { return [...this.values.values()]; }
}

export async function workerCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, { broker: { type: 'string' }, cache: { type: 'string' }, concurrency: { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean' } }, WORKER_USAGE);
  if (positionals.length) throw usageError(`unexpected argument "${positionals[0]}"`, WORKER_USAGE);
  if (!values.broker) throw usageError('--broker URL is required', WORKER_USAGE);
  const concurrency = wholeNumber(values.concurrency, '--concurrency', 1);
  const threads = values.threads === undefined ? undefined : wholeNumber(values.threads, '--threads', 1);
  const url = values.broker;
  await checkBroker(url);
  const me = `${os.hostname()}:${process.pid}`;
  const log = (s: string) => process.stderr.write(`circuitlens worker ${me}: ${s}\n`);
  // A failed load is forgotten (its contexts with it), to be tried again by the next chunk.
  const engines = new Kept<Loaded>(KEEP_ENGINES, (e) => void e.engine.then((x) => x.release(), () => undefined));
  const weights = new Kept<Weights>(KEEP_ENGINES);
  const models = new WorkerModels(cacheDir(values.cache), { me, log });
  await models.cache.removeStale();

  /** The chunk's context, on an engine kept by the model's sha256 (its copy at the path or in the cache loads once). */
  function contextFor(d: ChunkJob, file: string): Promise<Prepared> {
    const c = d.context;
    const key = `${c.model.sha256}\0${c.runtime}`;
    const e = engines.get(key, () => {
      const loaded: Loaded = { engine: loadEngine(file, createRuntime(c.runtime, { flushDenormals: true, threads })), contexts: new Kept<Promise<Prepared>>(KEEP_CONTEXTS) };
      loaded.engine.catch(() => engines.forget(key, loaded));
      return loaded;
    });
    return e.contexts.get(c.key, async () => {
      const engine = await e.engine;
      const { opened, diagnostics: ds } = openSuite(suiteOf(c), engine, c.ablation);
      if (!opened) throw new UserError(`the suite ${c.suite.path} does not open on ${c.model.path} here: ${ds.map(formatDiagnostic).join('; ')}`);
      const prepared = await prepareForChunks(opened, c.prompts);
      if (prepared.ctx.maxRows !== c.maxRows) throw new UserError(`this worker batches ${prepared.ctx.maxRows} rows per call, the coordinator ${c.maxRows}: results would differ`);
      return prepared;
    });
  }

  /**
   * The variant's bench: the model's weights (read asynchronously, kept for the next variants, by sha256), the
   * baseline of its context and circuit.
   */
  async function benchFor(c: ContextSpec, work: VariantWork, file: string): Promise<VariantBench> {
    const key = `${c.model.sha256}\0${c.runtime}`;
    const w = weights.get(key, () => {
      const made: Weights = { v: readModelVariants(file, createRuntime(c.runtime, { flushDenormals: true, threads })), benches: new Kept<Promise<VariantBench>>(KEEP_CONTEXTS) };
      made.v.catch(() => weights.forget(key, made));
      return made;
    });
    const v = await w.v;
    return w.benches.get(`${c.key}\0${work.circuit ? sha256Text(JSON.stringify(work.circuit)) : ''}`, () => openVariantBench(v, suiteOf(c), c, work.circuit));
  }

  const delay = Number(process.env.CIRCUITLENS_WORKER_DELAY_MS ?? 0);
  async function processChunk(d: ChunkJob, id: string, lease: JobLease): Promise<ChunkResult | VariantResult> {
    const t0 = performance.now();
    if (d.format !== 2) throw new Error(`worker ${me} (CircuitLens ${VERSION}) does not read chunk format ${d.format}`);
    if (d.version !== VERSION) throw new Error(`worker ${me} runs CircuitLens ${VERSION}, the coordinator ${d.version}: results could differ; run one version everywhere`);
    log(`chunk ${id} (${d.work.kind}, calls ${d.chunk.from}–${d.chunk.to}, ${d.chunk.rows} rows) started`);
    // For fault tests: a worker slow enough to be stopped in the middle of a chunk.
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    const file = await models.modelPath(d.context.model);
    // Loading a model, building a variant's session: synchronous work as long as the model is big, during which the
    // lock is not renewed; held long enough for it.
    await lease.hold(lockAllowanceMs(await models.bytes(file)));
    const result = d.work.kind === 'variant'
      ? { point: await computeVariant(await benchFor(d.context, d.work, file), d.work) }
      : { rows: await computeChunk(await contextFor(d, file), d) };
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
        for (const e of engines.all()) await e.engine.then((x) => x.release(), () => undefined);
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
