// What an end-to-end `--broker` run needs, in one place for the CLI tests (broker, broker-url, broker-variants),
// the integration step's worker and bench 8: a redis-server of its own (in a temp dir, on a free port; AOF on
// where a test restarts it), CLI processes (coordinators, `circuitlens worker`s) whose output is followed as it
// comes, a look at the queue, and everything stopped at the end. Needs redis-server (CI installs Debian's).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Redis from 'ioredis';
import { freePort, ROOT } from '../helpers';

const BIN = path.join(ROOT, 'bin', 'circuitlens.js');

export interface Proc { child: ChildProcess; out: string; err: string; exit: Promise<number> }

export async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!(await ok())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** freePort lives in test/helpers.ts (the unit tests use it too); here as well for the broker tests. */
export { freePort };

/** Chunk ids a worker finished, in order (a chunk twice would show twice). */
export const doneBy = (w: Proc): string[] => [...w.err.matchAll(/chunk (cl-\S+) done/g)].map((m) => m[1]!);

/** The work kinds the workers' logs name for the chunks they started (`sets`, `edge-patching`, `variant`, …), sorted. */
export const workKinds = (ws: { err: string }[]): string[] => [...new Set(ws.flatMap((w) => [...w.err.matchAll(/chunk cl-\S+ \((\S+), calls/g)].map((m) => m[1]!)))].sort();

function redisBinary(): string {
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const bin = r.stdout.trim();
  if (r.status !== 0 || !bin) throw new Error('redis-server is not installed: these tests start their own Redis. Install it (Debian/Ubuntu: apt-get install redis-server; CI installs it in .ci/run)');
  return bin;
}

export interface Cluster {
  url: string;
  /** A CLI process (`args` after `circuitlens`) with `env` added (to the cluster's `base` env). */
  start(args: string[], env?: Record<string, string>): Proc;
  /** `n` workers on a queue (`args`: more worker flags); resolves when each waits for chunks, throws if one exits. */
  workers(queue: string, n: number, env?: Record<string, string>, args?: string[]): Promise<Proc[]>;
  /** SIGTERM to each (the chunk at hand is finished), and their exit. */
  stop(ws: Proc[]): Promise<void>;
  /** Jobs of a queue: waiting, and all kept (cl-* ids). */
  queued(queue: string): Promise<{ wait: number; all: number }>;
  /** Stops redis-server (SIGTERM); with `aof` what it held is in `dir` for startRedis(). */
  stopRedis(): Promise<void>;
  /** Starts redis-server again, on the same port and dir. */
  startRedis(): Promise<void>;
  /** Kills what is still running, stops Redis, removes `dir`. */
  close(): Promise<void>;
}

/**
 * A redis-server in `dir` (no persistence, or with `aof` an append-only file synced at every write, so that a
 * restart keeps the queue), and the processes started on it with `base` added to their env.
 */
export async function cluster(dir: string, base: Record<string, string> = {}, opts: { aof?: boolean } = {}): Promise<Cluster> {
  const bin = redisBinary();
  fs.mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const persistence = opts.aof ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'];
  let redis: ChildProcess | undefined;
  const startRedis = async (): Promise<void> => {
    redis = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', ...persistence], { stdio: 'ignore' });
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    client.on('error', () => undefined);
    await until('redis-server to answer', async () => { try { await client.connect(); return (await client.ping()) === 'PONG'; } catch { return false; } }, 15_000);
    client.disconnect();
  };
  const stopRedis = async (): Promise<void> => {
    const r = redis;
    if (!r || r.exitCode !== null || r.signalCode !== null) return;
    const gone = new Promise((res) => r.on('exit', res));
    r.kill('SIGTERM');
    await gone;
  };
  await startRedis();
  const started: Proc[] = [];
  const start = (args: string[], env: Record<string, string> = {}): Proc => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const p: Proc = { child, out: '', err: '', exit: new Promise((res) => child.on('exit', (code, sig) => res(code ?? (sig ? 128 : -1)))) };
    child.stdout!.on('data', (d) => { p.out += d; });
    child.stderr!.on('data', (d) => { p.err += d; });
    started.push(p);
    return p;
  };
  return {
    url, start, stopRedis, startRedis,
    async workers(queue, n, env = {}, args = []) {
      const ws = Array.from({ length: n }, () => start(['worker', '--broker', url, '--threads', '1', ...args], { CIRCUITLENS_QUEUE: queue, ...env }));
      await until('workers ready', () => ws.every((w) => /waiting for chunks/.test(w.err) || w.child.exitCode !== null));
      for (const w of ws) if (w.child.exitCode !== null) throw new Error(`a worker exited: ${w.err}`);
      return ws;
    },
    async stop(ws) {
      for (const w of ws) if (w.child.exitCode === null) w.child.kill('SIGTERM');
      await Promise.all(ws.map((w) => w.exit));
    },
    async queued(queue) {
      const c = new Redis({ port, host: '127.0.0.1' });
      try {
        return { wait: await c.llen(`bull:${queue}:wait`), all: (await c.keys(`bull:${queue}:cl-*`)).length };
      } finally {
        c.disconnect();
      }
    },
    async close() {
      for (const p of started) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
      await stopRedis();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
