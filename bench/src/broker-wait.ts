// The coordinator's cost of waiting for results (issue 18): brokerJobs (core/nodejs/broker.ts) runs N chunk jobs of
// the real job shape (the demo suite's text in each) against a fake worker process (serveJobs, the real worker
// side, 50 jobs at a time, each answered with a tiny result after a sleep that spreads the N answers over about
// SPAN_S seconds, default 10: a real run's chunks come back over its whole length, so the coordinator waits with
// many jobs pending) on a redis-server of its own (no persistence). Measured per N: the coordinator's wall time
// from run() to its return and after the worker's last answer, its CPU time, the commands it sent (counted in
// ioredis, this process only; a script is one command), the commands the server ran (INFO commandstats before
// and after: worker, coordinator and the commands inside scripts) and the server's CPU time.
// Run: node bench/broker-wait.js [100,1000,4000] [--span S] [--json]   (prints a Markdown table)
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';
import { brokerJobs, serveJobs } from '../../core/nodejs/broker';

const ROOT = path.resolve(__dirname, '..', '..');
const SUITE = path.join(ROOT, 'examples', 'induction.suite.yaml');
const CONCURRENCY = 50;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const port = (s.address() as net.AddressInfo).port; s.close(() => resolve(port)); });
    s.on('error', reject);
  });
}

async function commandCount(client: Redis): Promise<number> {
  const info = await client.info('commandstats');
  return [...info.matchAll(/^cmdstat_[^:]+:calls=(\d+)/gm)].reduce((s, m) => s + Number(m[1]), 0);
}

async function serverCpuS(client: Redis): Promise<number> {
  const info = await client.info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)![1]);
}

/** The fake worker (a child process): answers each job with a tiny result, says when it has answered `n`. */
async function workerMain(url: string, n: number, spanMs: number): Promise<void> {
  let count = 0;
  const sleepMs = (spanMs * CONCURRENCY) / n;
  const w = await serveJobs(url, async () => {
    await new Promise((r) => setTimeout(r, sleepMs));
    if (++count === n) setImmediate(() => process.send!({ lastDoneAt: Date.now() }));
    return { rows: { n: 1, width: 1, data: 'AAAAAA==' }, worker: 'fake', ms: 0 };
  }, { concurrency: CONCURRENCY, log: () => undefined });
  process.send!({ ready: true });
  process.on('message', async () => { await w.close(); process.exit(0); });
}

interface Row { chunks: number; wallMs: number; lagMs: number; cpuMs: number; coordinatorCommands: number; serverCommands: number; serverCpuMs: number; byCommand: Record<string, number> }

async function measure(url: string, port: number, n: number, spanMs: number): Promise<Row> {
  const queue = `bw-${n}-${Date.now()}`;
  process.env.CIRCUITLENS_QUEUE = queue;
  const child: ChildProcess = spawn(process.execPath, [__filename, '--worker', url, String(n), String(spanMs)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, CIRCUITLENS_QUEUE: queue } });
  let lastDoneAt = 0;
  await new Promise<void>((resolve) => child.on('message', (m: { ready?: boolean; lastDoneAt?: number }) => { if (m.ready) resolve(); if (m.lastDoneAt) lastDoneAt = m.lastDoneAt; }));
  const suiteText = fs.readFileSync(SUITE, 'utf8');
  const context = { key: 'bench', model: { path: '/models/model.onnx', sha256: '0'.repeat(64) }, suite: { path: SUITE, text: suiteText }, prompts: 'task', ablation: 'mean', runtime: 'node', maxRows: 256 };
  const jobs = Array.from({ length: n }, (_, i) => ({
    id: `cl-bench${n}-${i}-${i + 1}`, name: 'edge-patching', rows: 256,
    data: { format: 2, version: 'bench', context, work: { kind: 'edge-patching' }, chunk: { from: i, to: i + 1, rows: 256 } },
  }));
  const admin = new Redis({ port, host: '127.0.0.1' });
  const server0 = await commandCount(admin);
  const serverCpu0 = await serverCpuS(admin);
  counting.clear();
  counting.on = true;
  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  const results = await brokerJobs(url, { warn: (s) => console.error(`warn: ${s}`) }).run(jobs, () => undefined);
  const t1 = Date.now();
  const cpu = process.cpuUsage(cpu0);
  counting.on = false;
  const server1 = await commandCount(admin);
  const serverCpu1 = await serverCpuS(admin);
  if (results.length !== n || results.some((r) => (r as { worker?: string })?.worker !== 'fake')) throw new Error('wrong results');
  child.send('stop');
  await new Promise((r) => child.on('exit', r));
  admin.disconnect();
  const byCommand = Object.fromEntries([...counting.byName].sort((a, b) => b[1] - a[1]));
  return { chunks: n, wallMs: t1 - t0, lagMs: t1 - lastDoneAt, cpuMs: Math.round((cpu.user + cpu.system) / 1000), serverCpuMs: Math.round((serverCpu1 - serverCpu0) * 1000), coordinatorCommands: [...counting.byName.values()].reduce((s, x) => s + x, 0), serverCommands: server1 - server0 - 2, byCommand };
}

/** Commands this process sends through ioredis while `on`, by name. */
const counting = {
  on: false, byName: new Map<string, number>(),
  clear() { this.byName.clear(); },
};

async function main(): Promise<void> {
  if (process.argv[2] === '--worker') return workerMain(process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]));
  const span = process.argv.indexOf('--span');
  const spanMs = (span > 0 ? Number(process.argv[span + 1]) : 10) * 1000;
  const sizes = (process.argv.slice(2).find((a) => /^\d/.test(a)) ?? '100,1000,4000').split(',').map(Number);
  const send = Redis.prototype.sendCommand;
  Redis.prototype.sendCommand = function (this: Redis, command: Parameters<typeof send>[0], ...rest: unknown[]) {
    if (counting.on && command) counting.byName.set(command.name, (counting.byName.get(command.name) ?? 0) + 1);
    return (send as (...a: unknown[]) => ReturnType<typeof send>).call(this, command, ...rest);
  } as typeof send;
  const bin = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim();
  if (!bin) throw new Error('redis-server is not installed');
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-broker-wait-'));
  const redis = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  try {
    const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => undefined);
    for (let i = 0; ; i++) {
      try { await probe.connect(); await probe.ping(); break; } catch { if (i > 100) throw new Error('redis-server did not start'); await new Promise((r) => setTimeout(r, 100)); }
    }
    probe.disconnect();
    const url = `redis://127.0.0.1:${port}`;
    const rows: Row[] = [];
    for (const n of sizes) {
      const r = await measure(url, port, n, spanMs);
      rows.push(r);
      console.error(`${n} chunks: ${r.wallMs} ms (cpu ${r.cpuMs} ms, redis cpu ${r.serverCpuMs} ms), ${r.coordinatorCommands} coordinator commands, ${r.serverCommands} server commands; ${JSON.stringify(r.byCommand)}`);
    }
    if (process.argv.includes('--json')) console.log(JSON.stringify(rows, null, 2));
    else {
      console.log(`| chunks | coordinator wall time (answers over ${spanMs / 1000} s) | after the last answer | coordinator CPU | commands the coordinator sent | commands Redis ran (all clients) | Redis CPU |\n|---:|---:|---:|---:|---:|---:|---:|`);
      const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
      for (const r of rows) console.log(`| ${r.chunks.toLocaleString('en-US')} | ${s(r.wallMs)} | ${s(r.lagMs)} | ${s(r.cpuMs)} | ${r.coordinatorCommands.toLocaleString('en-US')} | ${r.serverCommands.toLocaleString('en-US')} | ${s(r.serverCpuMs)} |`);
    }
  } finally {
    redis.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
