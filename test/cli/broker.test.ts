// attribute, discover, verify, redundancy and sweep with --broker, end to end: a redis-server of the test's own (AOF on, in a temp dir)
// and worker processes (`circuitlens worker`); the distributed result must equal the local output byte for byte
// (discover's circuit file but for its creation time), also when a
// worker is killed mid-chunk, Redis restarts mid-run, the coordinator is killed and started again; a worker
// with a different model file at the same path is refused; a bad or unreachable broker fails fast (exit 2);
// Ctrl-C on the coordinator takes its queued chunks back. Needs redis-server (CI installs Debian's).
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXAMPLES } from '../helpers';
import { cluster, doneBy, freePort, until, workKinds, type Cluster, type Proc } from './broker-harness';
import { cli } from './run-cli';

const SUITE = path.join(EXAMPLES, 'induction.suite.yaml');
const SWEEP = path.join(EXAMPLES, 'induction-sweep.suite.yaml');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-broker-'));
// One engine call per chunk (36 chunks on the demo suite); progress lines at every step, for the tests to follow.
const ENV = { CIRCUITLENS_CHUNK_ROWS: '1', CIRCUITLENS_PROGRESS: 'always', CIRCUITLENS_BROKER_WAIT_S: '60' };
// Short locks, so that a killed worker's chunk is taken again within seconds. A worker that holds its event loop
// longer than that (loading a model on a loaded machine) loses its chunk too, which is then computed twice: BullMQ
// delivers at least once, and the coordinator takes one result per chunk id.
const SHORT_LOCKS = { CIRCUITLENS_BROKER_LOCK_MS: '2000' };
const EDGE = ['attribute', SUITE, '--level', 'edge', '--json'];

let c: Cluster;
let url = '';

const rowsDone = (p: Proc) => Math.max(0, ...[...p.err.matchAll(/on workers, \d+ chunks: ([\d,]+)\//g)].map((m) => Number(m[1]!.replace(/,/g, ''))));

let local = '';

describe('attribute, discover, redundancy, verify and sweep --broker (BullMQ on Redis)', { concurrency: false }, () => {
  before(async () => {
    // AOF on: test (c) restarts Redis mid-run.
    c = await cluster(path.join(tmp, 'redis'), ENV, { aof: true });
    url = c.url;
    const r = cli(EDGE);
    assert.equal(r.code, 0, r.stderr);
    local = r.stdout;
  });

  after(async () => {
    await c.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('(a) edge patching, node patching, edge EAP-IG and node EAP / EAP-IG on 3 workers equal the local --json output exactly', async () => {
    const ws = await c.workers('a', 3);
    const edge = c.start([...EDGE, '--broker', url], { CIRCUITLENS_QUEUE: 'a' });
    assert.equal(await edge.exit, 0, edge.err);
    assert.equal(edge.out, local);
    for (const extra of [['--ablation', 'resample'], ['--level', 'edge', '--method', 'gradient', '--steps', '2'], ['--method', 'gradient', '--steps', '3'], ['--method', 'gradient']]) {
      const want = cli(['attribute', SUITE, ...extra, '--json']);
      assert.equal(want.code, 0, want.stderr);
      const got = c.start(['attribute', SUITE, ...extra, '--json', '--broker', url], { CIRCUITLENS_QUEUE: 'a' });
      assert.equal(await got.exit, 0, got.err);
      assert.equal(got.out, want.stdout, extra.join(' '));
    }
    await c.stop(ws);
    assert.ok(ws.filter((w) => / done: /.test(w.err)).length >= 2, 'the work was shared');
    assert.deepEqual(await c.queued('a'), { wait: 0, all: 0 }, 'a finished run leaves no jobs');
    const ms = ws.flatMap((w) => [...w.err.matchAll(/done: (\d+) rows in (\d+) ms/g)].map((m) => Number(m[2])));
    console.log(`# ${ms.length} chunks of one engine call (≤256 rows); worker time per chunk: median ${ms.sort((x, y) => x - y)[ms.length >> 1]} ms`);
  });

  test('(b) a worker killed mid-chunk: its chunk is taken again by another worker, the result is unchanged', async () => {
    const victim = (await c.workers('b', 1, { ...SHORT_LOCKS, CIRCUITLENS_WORKER_DELAY_MS: '600000' }))[0]!;
    const coord = c.start([...EDGE, '--broker', url], { CIRCUITLENS_QUEUE: 'b' });
    await until('the victim to start a chunk', () => /started/.test(victim.err));
    const chunk = /chunk (cl-\S+) .*started/.exec(victim.err)![1]!;
    victim.child.kill('SIGKILL');
    await victim.exit;
    const ws = await c.workers('b', 2, SHORT_LOCKS);
    assert.equal(await coord.exit, 0, coord.err);
    assert.equal(coord.out, local);
    await c.stop(ws);
    assert.ok(ws.flatMap(doneBy).includes(chunk), `${chunk} was not computed again`);
  });

  test('(c) Redis restarted (AOF) mid-run: the run resumes and completes with the same result', async () => {
    const ws = await c.workers('c', 2, { CIRCUITLENS_WORKER_DELAY_MS: '150' });
    const coord = c.start([...EDGE, '--broker', url], { CIRCUITLENS_QUEUE: 'c' });
    await until('some chunks done', () => rowsDone(coord) >= 1000);
    await c.stopRedis();
    const atRestart = rowsDone(coord);
    await new Promise((r) => setTimeout(r, 1000));
    await c.startRedis();
    assert.equal(await coord.exit, 0, coord.err);
    assert.ok(atRestart < 8991, `the run was over (${atRestart} rows) when Redis stopped`);
    assert.equal(coord.out, local);
    await c.stop(ws);
  });

  test('(d) a worker whose model file differs from the coordinator\'s (same path): refused, the coordinator says so (exit 2)', async () => {
    const dir = path.join(tmp, 'models');
    fs.mkdirSync(dir, { recursive: true });
    const model = path.join(dir, 'model.onnx');
    fs.copyFileSync(path.join(EXAMPLES, 'induction-gpt2.onnx'), model);
    fs.copyFileSync(path.join(EXAMPLES, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    const coord = c.start([...EDGE, '--model', model, '--broker', url], { CIRCUITLENS_QUEUE: 'd' });
    await until('the chunks queued', () => /on workers/.test(coord.err));
    // Another machine's file at the same path: other bytes.
    fs.copyFileSync(path.join(EXAMPLES, 'induction-llama.onnx'), model);
    const ws = await c.workers('d', 1);
    assert.equal(await coord.exit, 2, coord.err);
    assert.match(coord.err, /refused the chunk: .*model\.onnx here has sha256 [0-9a-f]{64}, the coordinator's model [0-9a-f]{64}/);
    assert.equal(coord.out, '');
    await c.stop(ws);
    assert.doesNotMatch(ws[0]!.err, / done: /);
  });

  test('(e) the coordinator killed and started again: it resumes, no chunk is computed twice, the result is equal', async () => {
    const ws = await c.workers('e', 2, { CIRCUITLENS_WORKER_DELAY_MS: '150' });
    const first = c.start([...EDGE, '--broker', url], { CIRCUITLENS_QUEUE: 'e' });
    await until('some chunks done', () => rowsDone(first) >= 1000);
    first.child.kill('SIGKILL');
    await first.exit;
    const before = new Set(ws.flatMap(doneBy));
    const counts = ws.map((w) => doneBy(w).length);
    const again = c.start([...EDGE, '--broker', url], { CIRCUITLENS_QUEUE: 'e' });
    assert.equal(await again.exit, 0, again.err);
    assert.equal(again.out, local);
    await c.stop(ws);
    const done = ws.flatMap(doneBy);
    assert.equal(new Set(done).size, 36, `chunks done: ${new Set(done).size}`);
    const recomputed = ws.flatMap((w, k) => doneBy(w).slice(counts[k])).filter((id) => before.has(id));
    assert.deepEqual(recomputed, [], 'chunks finished before the restart were computed again');
    assert.ok(before.size > 0 && before.size < 36, `${before.size} chunks done when the coordinator was killed`);
  });

  test('(f) a bad or unreachable broker: a clear error, exit 2, within seconds', async () => {
    const closed = await freePort();
    for (const [args, want] of [
      [[...EDGE, '--broker', 'http://127.0.0.1:6379'], /expected redis:\/\/HOST:PORT/],
      [[...EDGE, '--broker', `redis://127.0.0.1:${closed}`], /cannot reach the broker at redis:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/],
      [['worker', '--broker', `redis://127.0.0.1:${closed}`], /cannot reach the broker/],
      [['worker'], /--broker URL is required/],
      [['discover', SUITE, '--out', path.join(tmp, 'never.circuit.json'), '--broker', `redis://127.0.0.1:${closed}`], /cannot reach the broker/],
      [['verify', path.join(EXAMPLES, 'induction-gpt2.circuit.json'), '--broker', `redis://127.0.0.1:${closed}`], /cannot reach the broker/],
      [['sweep', SWEEP, '--broker', `redis://127.0.0.1:${closed}`], /cannot reach the broker/],
    ] as [string[], RegExp][]) {
      const t0 = Date.now();
      const r = c.start(args);
      assert.equal(await r.exit, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, want);
      assert.ok(Date.now() - t0 < 10_000, `${args.join(' ')} took ${Date.now() - t0} ms`);
    }
  });

  test('(g) discover (greedy, ACDC), redundancy and verify on 2 workers: the circuit file (but its creation time), redundancy and verify --json equal the local ones', async () => {
    const ws = await c.workers('h', 2);
    const created = /^\s*"created": "[^"]*",?\n/m;
    for (const extra of [[], ['--method', 'acdc']]) {
      const local = path.join(tmp, `local${extra.length}.circuit.json`);
      const remote = path.join(tmp, `remote${extra.length}.circuit.json`);
      const want = cli(['discover', SUITE, ...extra, '--out', local, '--json']);
      assert.equal(want.code, 0, want.stderr);
      const got = c.start(['discover', SUITE, ...extra, '--out', remote, '--json', '--broker', url], { CIRCUITLENS_QUEUE: 'h' });
      assert.equal(await got.exit, 0, got.err);
      assert.match(fs.readFileSync(local, 'utf8'), created);
      assert.equal(fs.readFileSync(remote, 'utf8').replace(created, ''), fs.readFileSync(local, 'utf8').replace(created, ''), `discover ${extra.join(' ')}: the circuit files differ`);
      const json = (out: string) => ({ ...JSON.parse(out), circuit: undefined });
      assert.deepEqual(json(got.out), json(want.stdout));
      assert.match(got.err, /ablation sets on workers, \d+ chunks/);
    }
    const circuit = path.join(EXAMPLES, 'induction-gpt2.circuit.json');
    // The pair sweep of redundancy (all pairs of the top nodes, after the single ablations that rank them).
    const want = cli(['redundancy', SUITE, '--top', '4', '--json']);
    assert.equal(want.code, 0, want.stderr);
    const pairs = c.start(['redundancy', SUITE, '--top', '4', '--json', '--broker', url], { CIRCUITLENS_QUEUE: 'h' });
    assert.equal(await pairs.exit, 0, pairs.err);
    assert.equal(pairs.out, want.stdout, 'redundancy --json');
    assert.match(pairs.err, /ablation sets on workers, \d+ chunks/);
    for (const extra of [[], ['--ablation', 'resample']]) {
      const want = cli(['verify', circuit, ...extra, '--json']);
      assert.equal(want.code, 0, want.stderr);
      const got = c.start(['verify', circuit, ...extra, '--json', '--broker', url], { CIRCUITLENS_QUEUE: 'h' });
      assert.equal(await got.exit, 0, got.err);
      assert.equal(got.out, want.stdout, `verify ${extra.join(' ')}`);
    }
    await c.stop(ws);
    assert.deepEqual(workKinds(ws), ['sets']);
    assert.ok(ws.every((w) => / done: /.test(w.err)), 'both workers took chunks');
    assert.deepEqual(await c.queued('h'), { wait: 0, all: 0 }, 'finished runs leave no jobs');
  });

  test('(h) sweep on 2 workers, nothing ablated and --ablate (mean, zero; GPT-2, Llama): --json equals the local output', async () => {
    const ws = await c.workers('s', 2);
    for (const extra of [[], ['--ablate', 'a1.h0,m0'], ['--model', path.join(EXAMPLES, 'induction-llama.onnx'), '--ablate', 'a0.h1', '--ablation', 'zero']]) {
      const args = ['sweep', SWEEP, ...extra, '--resamples', '200', '--json'];
      const want = cli(args);
      assert.equal(want.code, 0, want.stderr);
      const got = c.start([...args, '--broker', url], { CIRCUITLENS_QUEUE: 's' });
      assert.equal(await got.exit, 0, got.err);
      assert.equal(got.out, want.stdout, `sweep ${extra.join(' ')}`);
      // One chunk per engine call of the clean run: 12 lengths of 96 prompts.
      assert.match(got.err, extra.length ? /prompts, clean and ablated on workers, 12 chunks: 1,152\/1,152 rows/ : /prompts on workers, 12 chunks: 1,152\/1,152 rows/);
    }
    await c.stop(ws);
    assert.deepEqual(workKinds(ws), ['single-set']);
    assert.ok(ws.every((w) => / done: /.test(w.err)), 'both workers took chunks');
    assert.deepEqual(await c.queued('s'), { wait: 0, all: 0 }, 'finished runs leave no jobs');
  });

  test('Ctrl-C on a sweep removes its queued chunks (exit 130)', async () => {
    const coord = c.start(['sweep', SWEEP, '--json', '--broker', url], { CIRCUITLENS_QUEUE: 't' });
    await until('the sweep to queue its 12 chunks', async () => (await c.queued('t')).wait >= 12);
    coord.child.kill('SIGINT');
    assert.equal(await coord.exit, 130, coord.err);
    assert.match(coord.err, /cancelled: removed 12 queued chunks/);
    assert.equal(coord.out, '');
    assert.deepEqual(await c.queued('t'), { wait: 0, all: 0 });
  });

  test('Ctrl-C on the coordinator removes its queued chunks (exit 130)', async () => {
    const coord = c.start([...EDGE, '--broker', url], { CIRCUITLENS_QUEUE: 'g' });
    await until('the coordinator to queue its 36 chunks', async () => (await c.queued('g')).wait >= 36);
    coord.child.kill('SIGINT');
    assert.equal(await coord.exit, 130, coord.err);
    assert.match(coord.err, /cancelled: removed 36 queued chunks/);
    assert.deepEqual(await c.queued('g'), { wait: 0, all: 0 });
  });
});
