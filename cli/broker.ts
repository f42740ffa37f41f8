// The broker adapter: chunks of a distributed run (core/analysis/distributed/) as BullMQ jobs on Redis. The
// coordinator (attribute --broker) adds its chunks under their ids (adding again is a no-op, so a restarted
// coordinator finds the chunks already done), waits for their results, removes its queued chunks when cancelled
// and every chunk after a successful run. Workers (`circuitlens worker`, cli/commands/worker.ts) take them.
import * as crypto from 'node:crypto';
import * as path from 'node:path';
import { Job, Queue, type ConnectionOptions } from 'bullmq';
import Redis from 'ioredis';
import type { AttributeOptions, AttributeResult } from '../core/analysis/attribute/attribute';
import { CHUNK_ROWS, identityText, type Chunk, type DistributedAnalysis, type PackedRows, type RunIdentity } from '../core/analysis/distributed/plan';
import { attributeOnWorkers, distributedAnalysis, type ChunkRunner } from '../core/analysis/distributed/run';
import { Cancelled } from '../core/analysis/evaluate';
import { UserError } from '../core/errors';
import type { AblationKind, MetricName } from '../core/vocabulary';
import { VERSION, type Loaded } from './common';

/** The queue every worker takes from; CIRCUITLENS_QUEUE names another (one cluster sharing a Redis with another). */
export function queueName(): string {
  const q = process.env.CIRCUITLENS_QUEUE || 'circuitlens';
  if (!/^[A-Za-z0-9_.-]+$/.test(q)) throw new UserError(`CIRCUITLENS_QUEUE=${q}: use letters, digits, '_', '.' and '-'`);
  return q;
}

/** What a worker needs to compute a chunk: everything the run's key is made from, and the chunk. */
export interface ChunkJob {
  format: 1;
  version: string;
  runKey: string;
  model: { path: string; sha256: string };
  suite: { path: string; text: string };
  ablation: AblationKind;
  runtime: 'node' | 'wasm';
  metric: MetricName;
  maxRows: number;
  analysis: DistributedAnalysis;
  chunk: { from: number; to: number; rows: number };
}

export interface ChunkResult {
  rows: PackedRows;
  /** host:pid of the worker that computed it. */
  worker: string;
  /** Milliseconds the worker spent on it, loading included. */
  ms: number;
}

/** Tries per chunk (a worker that dies or refuses the model counts one; BullMQ retries it, on any worker). */
export const ATTEMPTS = 5;
/** Finished chunks are kept this long when their run does not clean them up (a coordinator that never came back). */
const KEEP_SECONDS = 7 * 24 * 3600;
const POLL_MS = 200;
/** A coordinator waits this long for a broker that went away (a restart) before it gives up. */
const LOST_MS = Number(process.env.CIRCUITLENS_BROKER_WAIT_S ?? 120) * 1000;

/** --broker redis://[user:password@]host:port[/db] (rediss:// for TLS) as connection options. */
export function brokerConnection(url: string): { host: string; port: number; db: number; username?: string; password?: string; tls?: object } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UserError(`--broker ${url}: not a URL; expected redis://HOST:PORT`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new UserError(`--broker ${url}: expected redis://HOST:PORT or rediss://HOST:PORT (got ${u.protocol}//)`);
  if (!u.hostname) throw new UserError(`--broker ${url}: no host; expected redis://HOST:PORT`);
  const port = u.port ? Number(u.port) : 6379;
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new UserError(`--broker ${url}: the path must be a database number (redis://HOST:PORT/0)`);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''), port, db,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** Connects once, with no retries, and pings: a bad or unreachable broker is a clear error within seconds (exit 2). */
export async function checkBroker(url: string): Promise<void> {
  const client = new Redis({ ...brokerConnection(url), lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  let cause: Error | undefined;
  client.on('error', (e: Error) => { cause ??= e; });
  try {
    await client.connect();
    await client.ping();
  } catch (e) {
    throw new UserError(`cannot reach the broker at ${url}: ${(cause ?? (e as Error)).message || e} (is redis-server running there?)`);
  } finally {
    client.disconnect();
  }
}

/** Connection options for BullMQ: retries forever in the background (a restarting Redis), each command fails fast. */
export function bullConnection(url: string, blocking: boolean): ConnectionOptions {
  return { ...brokerConnection(url), maxRetriesPerRequest: blocking ? null : 3, retryStrategy: (times: number) => Math.min(100 * times, 2000) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The coordinator's side: adds the chunks as jobs (their ids as job ids), waits for each one's result, and gives
 * them back in the order asked. `signal`: cancel (Ctrl-C), which removes the chunks still queued. `warn`: retries
 * and refusals seen on the way, in words.
 */
export function brokerRunner(url: string, job: Omit<ChunkJob, 'chunk'>, o: { signal?: AbortSignal; warn: (s: string) => void }): ChunkRunner {
  return {
    async run(chunks: Chunk[], done: (rows: number) => void): Promise<PackedRows[]> {
      const queue = new Queue<ChunkJob, ChunkResult>(queueName(), { connection: bullConnection(url, false) });
      queue.on('error', () => undefined);
      const results = new Map<string, PackedRows>();
      const seen = new Map<string, string>();
      let lostSince: number | undefined;
      const add = (c: Chunk) => ({
        name: job.analysis.kind, data: { ...job, chunk: { from: c.from, to: c.to, rows: c.rows } },
        opts: { jobId: c.id, attempts: ATTEMPTS, backoff: { type: 'fixed', delay: 300 }, removeOnComplete: { age: KEEP_SECONDS }, removeOnFail: { age: KEEP_SECONDS } },
      });
      /** Runs a broker call, riding out a broker that is away (restarting) for up to LOST_MS. */
      const retrying = async <T>(f: () => Promise<T>): Promise<T> => {
        for (;;) {
          if (o.signal?.aborted) throw new Cancelled();
          try {
            const r = await f();
            lostSince = undefined;
            return r;
          } catch (e) {
            if (e instanceof UserError || e instanceof Cancelled) throw e;
            lostSince ??= Date.now();
            if (Date.now() - lostSince > LOST_MS) throw new UserError(`lost the broker at ${url} for ${Math.round(LOST_MS / 1000)} s: ${(e as Error).message}; run again to resume (finished chunks are kept)`);
            await sleep(500);
          }
        }
      };
      try {
        await retrying(() => queue.addBulk(chunks.map(add)));
        // Chunks that failed in an earlier run (a refused model since replaced, say) are tried again.
        for (const c of chunks) {
          const j = await retrying(() => queue.getJob(c.id));
          if (j && (await retrying(() => j.getState())) === 'failed') await retrying(() => j.retry('failed'));
        }
        while (results.size < chunks.length) {
          if (o.signal?.aborted) throw new Cancelled();
          const pending = chunks.filter((c) => !results.has(c.id));
          await retrying(async () => {
            const jobs = await Promise.all(pending.map((c) => Job.fromId<ChunkJob, ChunkResult>(queue, c.id)));
            for (let i = 0; i < pending.length; i++) {
              const c = pending[i]!;
              const j = jobs[i];
              if (!j) { await queue.addBulk([add(c)]); continue; } // lost (a broker restarted without its data): again
              // A return value is set when a chunk completes, and only then.
              if (j.finishedOn && j.returnvalue) {
                results.set(c.id, checkResult(j.returnvalue, c));
                done(c.rows);
                continue;
              }
              if (j.failedReason && seen.get(c.id) !== `${j.attemptsMade}:${j.failedReason}`) {
                seen.set(c.id, `${j.attemptsMade}:${j.failedReason}`);
                if ((await j.getState()) === 'failed') throw new UserError(`chunk ${c.id} failed ${j.attemptsMade} times; the last: ${j.failedReason}`);
                o.warn(`chunk ${c.id}, try ${j.attemptsMade} of ${ATTEMPTS}: ${j.failedReason}`);
              }
            }
          });
          if (results.size < chunks.length) await sleep(POLL_MS);
        }
        // Done: the run's jobs and their results are no longer needed.
        await retrying(() => Promise.all(chunks.map((c) => queue.remove(c.id))));
        return chunks.map((c) => results.get(c.id)!);
      } catch (e) {
        if (e instanceof Cancelled) {
          // Cancelled: take back what no worker has started (a started chunk finishes and is kept for a rerun).
          let removed = 0;
          for (const c of chunks.filter((x) => !results.has(x.id))) {
            try {
              const j = await queue.getJob(c.id);
              const state = j ? await j.getState() : undefined;
              if (j && (state === 'waiting' || state === 'delayed' || state === 'prioritized' || state === 'failed')) { await j.remove(); removed++; }
            } catch { /* a chunk being taken as we look: left to finish */ }
          }
          o.warn(`cancelled: removed ${removed} queued chunk${removed === 1 ? '' : 's'} from the broker`);
        }
        throw e;
      } finally {
        await queue.close().catch(() => undefined);
      }
    },
  };
}

function checkResult(r: ChunkResult, c: Chunk): PackedRows {
  if (!r || !r.rows || typeof r.rows.data !== 'string') throw new UserError(`chunk ${c.id}: the worker's result is not a CircuitLens chunk result`);
  return r.rows;
}

/**
 * `attribute --broker URL`: the attribution with its engine calls computed by workers. The run's key hashes the
 * model's sha256, the suite's text and everything else the rows depend on (core/analysis/distributed/plan.ts),
 * so the same command run again (after a crash, a Ctrl-C) plans the same chunk ids and finds the finished ones.
 */
export async function attributeOnBroker(url: string, L: Loaded, suitePath: string, options: AttributeOptions, runtime: 'node' | 'wasm', signal: AbortSignal): Promise<AttributeResult & { chunks: number }> {
  const analysis = distributedAnalysis(options);
  const sha256 = await L.ws.sha256(L.modelPath);
  const suiteText = await L.ws.readText(path.resolve(suitePath));
  const targetRows = process.env.CIRCUITLENS_CHUNK_ROWS ? Number(process.env.CIRCUITLENS_CHUNK_ROWS) : CHUNK_ROWS;
  if (!Number.isInteger(targetRows) || targetRows < 1) throw new UserError(`CIRCUITLENS_CHUNK_ROWS=${process.env.CIRCUITLENS_CHUNK_ROWS}: expected a whole number of rows`);
  const identity: RunIdentity = { format: 1, version: VERSION, modelSha256: sha256, suiteText, analysis, ablation: L.ablation, runtime, maxRows: L.task.maxRows, targetRows };
  const runKey = crypto.createHash('sha256').update(identityText(identity)).digest('hex').slice(0, 32);
  const job: Omit<ChunkJob, 'chunk'> = {
    format: 1, version: VERSION, runKey, model: { path: path.resolve(L.modelPath), sha256 }, suite: { path: path.resolve(suitePath), text: suiteText },
    ablation: L.ablation, runtime, metric: L.suite.metric, maxRows: L.task.maxRows, analysis,
  };
  const runner = brokerRunner(url, job, { signal, warn: (s) => process.stderr.write(`circuitlens attribute: ${s}\n`) });
  return attributeOnWorkers(L.task, L.all, L.suite.metric, analysis, runner, runKey, targetRows);
}
