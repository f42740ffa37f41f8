// prune and sensitivity with --broker, end to end: a redis-server of the test's own and `circuitlens worker`
// processes, each pruned or quantized model measured whole on a worker. The --json output must equal the local
// one byte for byte (but sensitivity's "seconds"), with a circuit (its faithfulness on every variant), also when a
// worker is killed in the middle of a point and when the coordinator is killed and started again (the points
// measured before are not measured again); Ctrl-C takes the queued points back; a bad broker fails fast (exit 2).
// Needs redis-server (CI installs Debian's).
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXAMPLES } from '../helpers';
import { cluster, doneBy, freePort, until, workKinds, type Cluster, type Proc } from './broker-harness';
import { cli } from './run-cli';

const SUITE = path.join(EXAMPLES, 'induction.suite.yaml');
const CIRCUIT = path.join(EXAMPLES, 'induction-gpt2.circuit.json');
// 3 strategies × 5 sparsities: 15 pruned models.
const PRUNE = ['prune', SUITE, '--circuit', CIRCUIT, '--strategy', 'magnitude,outside-circuit,layer-waves', '--json'];
const SENSITIVITY = ['sensitivity', SUITE, '--quantize', 'int4', '--group-size', '32', '--circuit', CIRCUIT, '--json'];
const SHORT_LOCKS = { CIRCUITLENS_BROKER_LOCK_MS: '2000' };
const withoutSeconds = (json: string) => json.replace(/^\s*"seconds": [^\n]*\n/m, '');
const pointsDone = (p: Proc) => Math.max(0, ...[...p.err.matchAll(/ — (\d+)\/15 pruned models in/g)].map((m) => Number(m[1])));

let c: Cluster;
const local = { prune: '', sensitivity: '' };

describe('prune and sensitivity --broker (BullMQ on Redis)', { concurrency: false }, () => {
  before(async () => {
    c = await cluster(fs.mkdtempSync(path.join(os.tmpdir(), 'cl-broker-variants-')), { CIRCUITLENS_BROKER_WAIT_S: '60' });
    for (const [k, args] of [['prune', PRUNE], ['sensitivity', SENSITIVITY]] as const) {
      const r = cli(args);
      assert.equal(r.code, 0, r.stderr);
      local[k] = r.stdout;
    }
  });

  after(async () => { await c.close(); });

  test('on 2 workers: prune and sensitivity --json (with a circuit) equal the local output', async () => {
    const ws = await c.workers('a', 2);
    const p = c.start([...PRUNE, '--broker', c.url], { CIRCUITLENS_QUEUE: 'a' });
    assert.equal(await p.exit, 0, p.err);
    assert.equal(p.out, local.prune);
    assert.match(p.err, /15 pruned models to measure on the workers/);
    assert.equal(pointsDone(p), 15, 'a progress line per point');
    const s = c.start([...SENSITIVITY, '--broker', c.url], { CIRCUITLENS_QUEUE: 'a' });
    assert.equal(await s.exit, 0, s.err);
    assert.equal(withoutSeconds(s.out), withoutSeconds(local.sensitivity));
    assert.match(s.err, /scope 6\/6: outside:induction-gpt2/);
    await c.stop(ws);
    assert.ok(ws.every((w) => doneBy(w).length > 0), 'both workers measured points');
    assert.equal(ws.flatMap(doneBy).length, 15 + 6, 'one job per point, each measured once');
    assert.deepEqual(workKinds(ws), ['variant']);
    assert.deepEqual(await c.queued('a'), { wait: 0, all: 0 }, 'finished runs leave no jobs');
  });

  test('a worker killed in the middle of a point: another measures it again, the result is unchanged', async () => {
    const victim = (await c.workers('b', 1, { ...SHORT_LOCKS, CIRCUITLENS_WORKER_DELAY_MS: '600000' }))[0]!;
    const coord = c.start([...PRUNE, '--broker', c.url], { CIRCUITLENS_QUEUE: 'b' });
    await until('the victim to start a point', () => /started/.test(victim.err));
    const point = /chunk (cl-\S+) .*started/.exec(victim.err)![1]!;
    victim.child.kill('SIGKILL');
    await victim.exit;
    const ws = await c.workers('b', 2, SHORT_LOCKS);
    assert.equal(await coord.exit, 0, coord.err);
    assert.equal(coord.out, local.prune);
    await c.stop(ws);
    assert.ok(ws.flatMap(doneBy).includes(point), `${point} was not measured again`);
  });

  test('the coordinator killed and started again: the points measured before are found, none measured twice', async () => {
    const ws = await c.workers('e', 2, { CIRCUITLENS_WORKER_DELAY_MS: '400' });
    const first = c.start([...PRUNE, '--broker', c.url], { CIRCUITLENS_QUEUE: 'e' });
    await until('some points measured', () => pointsDone(first) >= 3);
    first.child.kill('SIGKILL');
    await first.exit;
    const counts = ws.map((w) => doneBy(w).length);
    const before = new Set(ws.flatMap(doneBy));
    const again = c.start([...PRUNE, '--broker', c.url], { CIRCUITLENS_QUEUE: 'e' });
    assert.equal(await again.exit, 0, again.err);
    assert.equal(again.out, local.prune);
    await c.stop(ws);
    const done = ws.flatMap(doneBy);
    assert.equal(new Set(done).size, 15);
    assert.deepEqual(ws.flatMap((w, k) => doneBy(w).slice(counts[k])).filter((id) => before.has(id)), [], 'points finished before the restart were measured again');
    assert.ok(before.size >= 3 && before.size < 15, `${before.size} points measured when the coordinator was killed`);
  });

  test('Ctrl-C on the coordinator removes its queued points (exit 130)', async () => {
    const coord = c.start([...PRUNE, '--broker', c.url], { CIRCUITLENS_QUEUE: 'g' });
    await until('the 15 points queued', async () => (await c.queued('g')).wait === 15);
    coord.child.kill('SIGINT');
    assert.equal(await coord.exit, 130, coord.err);
    assert.match(coord.err, /cancelled: removed 15 queued chunks/);
    assert.deepEqual(await c.queued('g'), { wait: 0, all: 0 });
  });

  test('a bad or unreachable broker: a clear error, exit 2, before the model is read', async () => {
    const closed = await freePort();
    for (const [args, want] of [
      [[...PRUNE, '--broker', 'http://127.0.0.1:6379'], /expected redis:\/\/HOST:PORT/],
      [[...PRUNE, '--broker', `redis://127.0.0.1:${closed}`], /cannot reach the broker at redis:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/],
      [[...SENSITIVITY, '--broker', `redis://127.0.0.1:${closed}`], /cannot reach the broker/],
    ] as [string[], RegExp][]) {
      const r = c.start(args);
      assert.equal(await r.exit, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, want);
      assert.doesNotMatch(r.err, /reading|baseline/);
    }
  });
});
