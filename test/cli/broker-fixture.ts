// What a test of `--broker` needs: a redis-server of its own on a free port (in a temp dir), CLI processes
// (coordinators, `circuitlens worker`s) started as a user would, their output followed, all stopped at the end.
// Needs redis-server (CI installs Debian's).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import Redis from 'ioredis';
import { ROOT } from '../helpers';

const BIN = path.join(ROOT, 'bin', 'circuitlens.js');

export interface Proc { child: ChildProcess; out: string; err: string; exit: Promise<number> }

export async function until(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const port = (s.address() as net.AddressInfo).port; s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

function redisBinary(): string {
  const r = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const bin = r.stdout.trim();
  if (r.status !== 0 || !bin) throw new Error('redis-server is not installed: these tests start their own Redis. Install it (Debian/Ubuntu: apt-get install redis-server; CI installs it in .ci/run)');
  return bin;
}

export class BrokerFixture {
  url = '';
  private redis?: ChildProcess;
  private readonly started: Proc[] = [];

  /** `env`: for every process started (chunk size, progress, …). */
  constructor(private readonly dataDir: string, private readonly env: Record<string, string>) {}

  async startRedis(): Promise<void> {
    const port = await freePort();
    this.url = `redis://127.0.0.1:${port}`;
    fs.mkdirSync(this.dataDir, { recursive: true });
    this.redis = spawn(redisBinary(), ['--port', String(port), '--bind', '127.0.0.1', '--dir', this.dataDir, '--save', ''], { stdio: 'ignore' });
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    client.on('error', () => undefined);
    for (let i = 0; ; i++) {
      try { await client.connect(); await client.ping(); break; } catch { if (i > 100) throw new Error('redis-server did not start'); await new Promise((r) => setTimeout(r, 100)); }
    }
    client.disconnect();
  }

  /** A CLI process (`args` after `circuitlens`), in `cwd` (default: the repository root). */
  start(args: string[], env: Record<string, string> = {}, cwd = ROOT): Proc {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...process.env, ...this.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const p: Proc = { child, out: '', err: '', exit: new Promise((r) => child.on('exit', (code, sig) => r(code ?? (sig ? 128 : -1)))) };
    child.stdout!.on('data', (d) => { p.out += d; });
    child.stderr!.on('data', (d) => { p.err += d; });
    this.started.push(p);
    return p;
  }

  /** `n` workers on a queue (`extra`: more worker flags); resolves when each is waiting for chunks. */
  async workers(queue: string, n: number, extra: string[] = [], env: Record<string, string> = {}, cwd = ROOT): Promise<Proc[]> {
    const ws = Array.from({ length: n }, () => this.start(['worker', '--broker', this.url, '--threads', '1', ...extra], { CIRCUITLENS_QUEUE: queue, ...env }, cwd));
    await until('workers ready', () => ws.every((w) => /waiting for chunks/.test(w.err) || w.child.exitCode !== null));
    for (const w of ws) if (w.child.exitCode !== null) throw new Error(`a worker exited: ${w.err}`);
    return ws;
  }

  async stop(ws: Proc[]): Promise<void> {
    for (const w of ws) if (w.child.exitCode === null) w.child.kill('SIGTERM');
    await Promise.all(ws.map((w) => w.exit));
  }

  /** Kills what is still running, and Redis. */
  async close(): Promise<void> {
    for (const p of this.started) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    const redis = this.redis;
    if (!redis || redis.exitCode !== null) return;
    const gone = new Promise((r) => redis.on('exit', r));
    redis.kill('SIGTERM');
    await gone;
  }
}
