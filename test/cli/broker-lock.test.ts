// A worker's job lock while its event loop is blocked (core/nodejs/broker.ts serveJobs, JobLease.hold): loading a
// model of many GB and building its sessions is synchronous, so the lock is not renewed meanwhile. Simulated with a
// 600 ms lock and a handler that blocks the loop 2.5 s: without a hold the lock lapses and the job's first try is
// lost (taken as stalled, run again); holding it for 5 s first, the job is done once. Needs redis-server.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Queue } from 'bullmq';
import { brokerConnection, serveJobs } from '../../core/nodejs/broker';
import { cluster, until, type Cluster } from './broker-harness';

let c: Cluster;

/** Runs one job on a worker whose first call blocks the loop `blockMs` after holding its lock `holdMs`; its calls. */
async function run(queue: string, holdMs: number, blockMs: number): Promise<{ calls: number; result: unknown }> {
  let calls = 0;
  const q = new Queue(queue, { connection: brokerConnection(c.url) });
  const w = await serveJobs<{ n: number }, string>(c.url, async (_d, _id, lease) => {
    calls++;
    await lease.hold(holdMs);
    if (calls === 1) { const t0 = Date.now(); while (Date.now() - t0 < blockMs) { /* a synchronous load */ } }
    return `done after ${calls}`;
  }, { concurrency: 1, log: () => undefined, lockMs: 600, queue });
  try {
    await q.add('j', { n: 1 }, { jobId: 'j1', attempts: 3 });
    let result: unknown;
    await until('the job done', async () => { const j = await q.getJob('j1'); result = j?.returnvalue; return !!j?.finishedOn && !!result; }, 30_000);
    return { calls, result };
  } finally {
    await w.close(true);
    await q.obliterate({ force: true }).catch(() => undefined);
    await q.close();
  }
}

describe('a worker\'s job lock while the loop is blocked', { concurrency: false }, () => {
  before(async () => { c = await cluster(fs.mkdtempSync(path.join(os.tmpdir(), 'cl-broker-lock-'))); });
  after(async () => { await c.close(); });

  test('without a hold: the first try is lost (the simulation blocks long enough)', async () => {
    const r = await run('lock-a', 0, 2500);
    assert.ok(r.calls >= 2, `calls ${r.calls}`);
  });

  test('held for longer than the block: done on the first try', async () => {
    const r = await run('lock-b', 5000, 2500);
    assert.equal(r.calls, 1);
    assert.equal(r.result, 'done after 1');
  });
});
