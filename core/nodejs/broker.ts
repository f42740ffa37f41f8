// The broker adapter, for every front end: jobs as BullMQ jobs on Redis. The coordinator (a CLI command with
// --broker, or the extension with the circuitlens.broker setting) adds its jobs under their ids (adding again is a
// no-op, so a restarted coordinator finds the jobs already done), waits for their results, removes its queued jobs
// when cancelled and every job after a successful run. Workers (`circuitlens worker`) take them (serveJobs). What
// the jobs hold is the use case's business (core/analysis/distributed/run.ts: chunks of engine calls); this file
// knows only ids, payloads, results and rows for progress. BullMQ and ioredis load when first used (the extension
// activates without them).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ConnectionOptions } from 'bullmq';
import type { Redis as IORedis } from 'ioredis';
import { Cancelled, UserError } from '../errors';
import { checkModelUrl, modelManifest, type ModelRef } from './model-files';
import { VERSION } from './version';

/** The queue every worker takes from; CIRCUITLENS_QUEUE names another (one cluster sharing a Redis with another). */
export function queueName(): string {
  const q = process.env.CIRCUITLENS_QUEUE || 'circuitlens';
  if (!/^[A-Za-z0-9_.-]+$/.test(q)) throw new UserError(`CIRCUITLENS_QUEUE=${q}: use letters, digits, '_', '.' and '-'`);
  return q;
}

/** Rows per chunk: CIRCUITLENS_CHUNK_ROWS, or undefined for the use case's default. */
export function chunkRows(): number | undefined {
  const v = process.env.CIRCUITLENS_CHUNK_ROWS;
  if (!v) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UserError(`CIRCUITLENS_CHUNK_ROWS=${v}: expected a whole number of rows`);
  return n;
}

/** Tries per job (a worker that dies or refuses the model counts one; BullMQ retries it, on any worker). */
export const ATTEMPTS = 5;
/** Finished jobs are kept this long when their run does not clean them up (a coordinator that never came back). */
const KEEP_SECONDS = 7 * 24 * 3600;
/** The coordinator looks at the jobs the queue's events name (finished, failed a try) this long after the event. */
const POLL_MIN_MS = 10;
/** And at every pending job this often (what the events missed, a broker that lost its data). */
const RECONCILE_MS = 5000;
/** A coordinator waits this long for a broker that went away (a restart) before it gives up. */
const lostMs = () => Number(process.env.CIRCUITLENS_BROKER_WAIT_S ?? 120) * 1000;

/** A broker URL, redis://[user:password@]host:port[/db] (rediss:// for TLS), as connection options. */
export function brokerConnection(url: string): { host: string; port: number; db: number; username?: string; password?: string; tls?: object } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UserError(`broker ${url}: not a URL; expected redis://HOST:PORT`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new UserError(`broker ${url}: expected redis://HOST:PORT or rediss://HOST:PORT (got ${u.protocol}//)`);
  if (!u.hostname) throw new UserError(`broker ${url}: no host; expected redis://HOST:PORT`);
  const port = u.port ? Number(u.port) : 6379;
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new UserError(`broker ${url}: the path must be a database number (redis://HOST:PORT/0)`);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''), port, db,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** Connects once, with no retries, and pings: a bad or unreachable broker is a clear error within seconds. */
export async function checkBroker(url: string): Promise<void> {
  const { default: Redis } = await import('ioredis');
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
function bullConnection(url: string, blocking: boolean): ConnectionOptions {
  return { ...brokerConnection(url), maxRetriesPerRequest: blocking ? null : 3, retryStrategy: (times: number) => Math.min(100 * times, 2000) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface BrokerJob<D> { id: string; name: string; data: D; rows: number }

/** sha256 of a text, lower-case hex (run keys). */
export function sha256Text(text: string): string {
  return crypto.createHash('sha256').update(text).digest('hex');
}

/**
 * The model and the suite as the jobs name them: absolute paths, the model's sha256, the suite's text; with
 * `modelUrl` (checked), the URL workers fetch the model from and its manifest (model-files.ts: every file it loads
 * with, hashed here).
 */
async function runFiles(modelPath: string, suitePath: string, sha256: (p: string) => Promise<string>, modelUrl?: string): Promise<{ model: ModelRef; suite: { path: string; text: string } }> {
  const model = path.resolve(modelPath);
  const suite = path.resolve(suitePath);
  const sha = await sha256(model);
  const fetched = modelUrl === undefined ? {} : { url: checkModelUrl(modelUrl), files: await modelManifest(model, sha) };
  return { model: { path: model, sha256: sha, ...fetched }, suite: { path: suite, text: await fs.promises.readFile(suite, 'utf8') } };
}

/**
 * What a front end hands to onWorkers (core/analysis/distributed/run.ts) to run a suite's batched work on the
 * workers of the broker at `url`: the run's source (runFiles, this build's version, the runtime) and the broker's
 * port (its jobs, run keys' hash, rows per chunk). One glue for the CLI's --broker and the extension's setting.
 */
export async function brokerRun(o: {
  url: string; modelUrl?: string; modelPath: string; suitePath: string; runtime?: 'node' | 'wasm';
  sha256: (p: string) => Promise<string>; warn: (s: string) => void;
}) {
  const files = await runFiles(o.modelPath, o.suitePath, o.sha256, o.modelUrl);
  return {
    source: { version: VERSION, ...files, runtime: o.runtime ?? 'node' },
    broker: { jobs: brokerJobs(o.url, { warn: o.warn }), hash: sha256Text, targetRows: chunkRows() },
  };
}

/**
 * The coordinator's side: adds the jobs (their ids as job ids), waits for each one's result, and gives them back in
 * the order asked. `signal`: cancel (Ctrl-C, a cancelled notification), which removes the jobs still queued and
 * throws Cancelled. `warn`: retries and refusals seen on the way, and what a cancel removed, in words.
 */
export function brokerJobs(url: string, o: { warn: (s: string) => void }): { run<D>(jobs: BrokerJob<D>[], done: (rows: number, id: string, result: unknown) => void, signal?: AbortSignal): Promise<unknown[]> } {
  return {
    async run<D>(jobs: BrokerJob<D>[], done: (rows: number, id: string, result: unknown) => void, signal?: AbortSignal): Promise<unknown[]> {
      const { Job, Queue, QueueEvents } = await import('bullmq');
      const queue = new Queue(queueName(), { connection: bullConnection(url, false) });
      queue.on('error', () => undefined);
      const closing: (() => Promise<unknown>)[] = [() => queue.close()];
      const byId = new Map(jobs.map((c) => [c.id, c]));
      const results = new Map<string, unknown>();
      const seen = new Map<string, string>();
      let lostSince: number | undefined;
      let outage = false;
      const add = (c: BrokerJob<D>) => ({
        name: c.name, data: c.data,
        opts: { jobId: c.id, attempts: ATTEMPTS, backoff: { type: 'fixed', delay: 300 }, removeOnComplete: { age: KEEP_SECONDS }, removeOnFail: { age: KEEP_SECONDS } },
      });
      /** Runs a broker call, riding out a broker that is away (restarting) for up to CIRCUITLENS_BROKER_WAIT_S. */
      const retrying = async <T>(f: () => Promise<T>): Promise<T> => {
        for (;;) {
          if (signal?.aborted) throw new Cancelled();
          try {
            const r = await f();
            lostSince = undefined;
            return r;
          } catch (e) {
            if (e instanceof UserError || e instanceof Cancelled) throw e;
            lostSince ??= Date.now();
            outage = true;
            if (Date.now() - lostSince > lostMs()) throw new UserError(`lost the broker at ${url} for ${Math.round(lostMs() / 1000)} s: ${(e as Error).message}; run again to resume (finished chunks are kept)`);
            await sleep(500);
          }
        }
      };
      try {
        await retrying(() => queue.addBulk(jobs.map(add)));
        // Which jobs finished or failed a try: from the queue's event stream, read from before the first full look
        // on (nothing falls between them). A poll then looks only at those jobs; a full look at every pending job
        // every RECONCILE_MS (and after a broker outage) catches what the events miss (a trimmed stream, another
        // coordinator removing the jobs, a broker restarted without its data).
        // (The queue's connection is an ioredis client; BullMQ's interface for it has no XREVRANGE.)
        const since = await retrying(async () => (await ((await queue.getBackend().client) as unknown as IORedis).xrevrange(queue.keys.events, '+', '-', 'COUNT', 1))[0]?.[0] ?? '0-0');
        const events = new QueueEvents(queueName(), { connection: bullConnection(url, true), autorun: false, lastEventId: since });
        events.on('error', () => undefined);
        const touched = new Set<string>();
        let nudge: (() => void) | undefined;
        for (const e of ['completed', 'failed', 'delayed', 'removed'] as const) {
          events.on(e, ({ jobId }: { jobId: string }) => { if (byId.has(jobId)) { touched.add(jobId); nudge?.(); } });
        }
        closing.push(() => events.close());
        events.run().catch(() => undefined);
        let first = true;
        let lastFull = 0;
        while (results.size < jobs.length) {
          if (signal?.aborted) throw new Cancelled();
          const full = first || outage || Date.now() - lastFull >= RECONCILE_MS;
          if (full) { lastFull = Date.now(); outage = false; }
          const look = full ? jobs.filter((c) => !results.has(c.id)) : [...touched].filter((id) => !results.has(id)).map((id) => byId.get(id)!);
          touched.clear();
          await retrying(async () => {
            const found = await Promise.all(look.map((c) => Job.fromId(queue, c.id)));
            for (let i = 0; i < look.length; i++) {
              const c = look[i]!;
              const j = found[i];
              if (results.has(c.id)) continue; // taken on an earlier try of this look
              if (!j) { await queue.addBulk([add(c)]); continue; } // lost (a broker restarted without its data): again
              // Left by an earlier run of the same work (same id, same rows) that named it otherwise (no --model-url
              // then, say): its tries from now on get this run's payload.
              if (first && !j.returnvalue && JSON.stringify(j.data) !== JSON.stringify(c.data)) await j.updateData(c.data);
              // A return value is set when a job completes, and only then.
              if (j.finishedOn && j.returnvalue) {
                results.set(c.id, j.returnvalue);
                done(c.rows, c.id, j.returnvalue);
                continue;
              }
              if (j.failedReason && seen.get(c.id) !== `${j.attemptsMade}:${j.failedReason}`) {
                if ((await j.getState()) === 'failed') {
                  // Failed in an earlier run (a refused model since replaced, say): tried again.
                  if (first) { await j.retry('failed'); continue; }
                  throw new UserError(j.attemptsMade >= ATTEMPTS ? `chunk ${c.id} failed ${j.attemptsMade} times; the last: ${j.failedReason}` : `${j.failedReason} (chunk ${c.id}, on a worker)`);
                }
                seen.set(c.id, `${j.attemptsMade}:${j.failedReason}`);
                o.warn(`chunk ${c.id}, try ${j.attemptsMade} of ${ATTEMPTS}: ${j.failedReason}`);
              }
            }
          });
          first = false;
          if (results.size === jobs.length) break;
          // Until an event names one of the jobs, the next full look, or a cancel; after an event, a short pause
          // gathers the jobs finishing with it into one look.
          if (touched.size === 0) {
            await new Promise<void>((r) => {
              const t = setTimeout(wake, Math.max(0, lastFull + RECONCILE_MS - Date.now()));
              function wake(): void { clearTimeout(t); nudge = undefined; signal?.removeEventListener('abort', wake); r(); }
              nudge = wake;
              signal?.addEventListener('abort', wake);
            });
          }
          if (touched.size > 0) await sleep(POLL_MIN_MS);
        }
        // Done: the run's jobs and their results are no longer needed.
        await retrying(() => Promise.all(jobs.map((c) => queue.remove(c.id))));
        return jobs.map((c) => results.get(c.id));
      } catch (e) {
        if (e instanceof Cancelled) {
          // Cancelled: take back what no worker has started (a started job finishes and is kept for a rerun).
          let removed = 0;
          await Promise.all(jobs.filter((x) => !results.has(x.id)).map(async (c) => {
            try {
              const j = await queue.getJob(c.id);
              const state = j ? await j.getState() : undefined;
              if (j && (state === 'waiting' || state === 'delayed' || state === 'prioritized' || state === 'failed')) { await j.remove(); removed++; }
            } catch { /* a job being taken as we look: left to finish */ }
          }));
          o.warn(`cancelled: removed ${removed} queued chunk${removed === 1 ? '' : 's'} from the broker`);
        }
        throw e;
      } finally {
        for (const close of closing.reverse()) await close().catch(() => undefined);
      }
    },
  };
}

/**
 * How long a job's lock is held (JobLease.hold) for work on a model of `bytes` (the .onnx and its external data):
 * CIRCUITLENS_BROKER_LOCK_S_PER_GB seconds per GB (default 20; the lock is never shorter than usual). Building a
 * variant's session from a 0.54 GB model blocked the event loop 1.1 s (encoding it) then 2.0 s (onnxruntime's
 * session, synchronous in onnxruntime-node) on this shared 2-core machine, about 6 s per GB together (README,
 * Faults): 20 s per GB leaves a margin of three for slower machines. The cost of a long hold: a worker that dies
 * in the middle of such a job leaves it to others only when the hold runs out.
 */
export function lockAllowanceMs(bytes: number): number {
  const perGb = Number(process.env.CIRCUITLENS_BROKER_LOCK_S_PER_GB ?? 20);
  return Math.round((bytes / 1e9) * perGb * 1000);
}

/** What a job's handler may ask of its lock: hold it for at least `ms` from now on (0: back to the usual length). */
export interface JobLease { hold(ms: number): Promise<void> }

/**
 * The worker's side: takes jobs from the queue and answers each with `handle`'s result, `concurrency` at a time.
 * A UserError from `handle` is the same on every worker (the work cannot be done on this model): the job fails at
 * once, without the retries other errors get. Stop with close() (finishes the jobs at hand; `force`: at once).
 *
 * Locks: a job's lock lasts `lockMs` (CIRCUITLENS_BROKER_LOCK_MS, default 30 s) and is renewed every half of it
 * while the event loop runs. Work that blocks the loop longer (decoding a model of many GB, building its
 * onnxruntime session: synchronous) would let the lock lapse and the job be taken as stalled by another worker, so
 * the handler may `hold` its job's lock longer first: every renewal (here, not BullMQ's own, which would shorten
 * it again to `lockMs`) then sets it to the longer of the two, until the job ends. `queue`: the queue to take
 * from (default queueName()).
 */
export async function serveJobs<D, R>(url: string, handle: (data: D, id: string, lease: JobLease) => Promise<R>, o: { concurrency: number; log: (s: string) => void; lockMs?: number; queue?: string }): Promise<{ close(force?: boolean): Promise<void> }> {
  const { UnrecoverableError, Worker } = await import('bullmq');
  const lockMs = o.lockMs ?? Number(process.env.CIRCUITLENS_BROKER_LOCK_MS ?? 30000);
  type Held = { job: import('bullmq').Job<D, R>; token: string; holdMs: number };
  const active = new Set<Held>();
  const renew = (h: Held) => h.job.extendLock(h.token, Math.max(lockMs, h.holdMs)).catch((e: Error) => o.log(`chunk ${h.job.id}: could not renew its lock: ${e.message}`));
  const worker = new Worker<D, R>(o.queue ?? queueName(), async (job, token) => {
    const held: Held = { job, token: token ?? '', holdMs: 0 };
    active.add(held);
    try {
      return await handle(job.data, job.id ?? '', { hold: async (ms) => { held.holdMs = Math.max(0, ms); await renew(held); } });
    } catch (e) {
      if (e instanceof UserError) throw new UnrecoverableError(e.message);
      throw e;
    } finally {
      active.delete(held);
    }
  }, {
    connection: bullConnection(url, true), concurrency: o.concurrency, lockDuration: lockMs, stalledInterval: Math.max(500, Math.round(lockMs / 2)), maxStalledCount: 3,
    skipLockRenewal: true,
  });
  const renewing = setInterval(() => { for (const h of active) void renew(h); }, Math.max(100, Math.round(lockMs / 2)));
  worker.on('error', (e) => o.log(`broker: ${e.message}`));
  worker.on('failed', (job, e) => o.log(`chunk ${job?.id} failed: ${e.message}`));
  await worker.waitUntilReady();
  return { close: async (force) => { try { await worker.close(force); } finally { clearInterval(renewing); } } };
}
