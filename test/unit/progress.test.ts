// Progress of batched work: what a phase reports (rows, rate, time left) and how the CLI shows it on stderr.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { describeProgress, Meter, type ProgressEvent } from '../../core/analysis/progress';
import { stderrProgress } from '../../cli/progress';

test('a meter reports rows done, the rate so far and the time left at that rate', () => {
  let now = 1000;
  const seen: ProgressEvent[] = [];
  const m = new Meter((e) => seen.push(e), 'ablation sets', 400, () => now);
  now += 2000; m.tick(100);
  now += 2000; m.tick(100);
  now += 4000; m.tick(500); // more than is left: capped at the total
  assert.deepEqual(seen.map((e) => e.done), [0, 100, 200, 400]);
  assert.equal(seen[0]!.rate, undefined);
  assert.equal(seen[1]!.rate, 50);
  assert.equal(seen[1]!.etaSeconds, 6);
  assert.equal(seen[2]!.etaSeconds, 4);
  assert.equal(seen[3]!.etaSeconds, 0);
  assert.equal(describeProgress(seen[1]!), 'ablation sets: 100/400 rows, 50 rows/s, about 6.0 s left');
  assert.equal(describeProgress(seen[3]!), 'ablation sets: 400/400 rows, 50 rows/s, done in 8.0 s');
  assert.equal(describeProgress({ what: 'edge sets', done: 1200, total: 40000, elapsedMs: 1000, rate: 1200, etaSeconds: 32.3 }), 'edge sets: 1,200/40,000 rows, 1,200 rows/s, about 32 s left');
});

function fakeStream(isTTY: boolean) {
  const out: string[] = [];
  return { out, stream: { isTTY, write: (s: string) => { out.push(s); return true; } } as unknown as NodeJS.WriteStream };
}

const ev = (done: number, total: number, elapsedMs: number): ProgressEvent => ({ what: 'edge sets', done, total, elapsedMs, rate: done ? (done * 1000) / elapsedMs : undefined, etaSeconds: done ? ((total - done) * elapsedMs) / done / 1000 : undefined });

test('on stderr: quick phases print nothing, long ones a plain line every few seconds and their end (not a terminal)', () => {
  const quick = fakeStream(false);
  const sink = stderrProgress('attribute', quick.stream, undefined);
  [ev(0, 10, 0), ev(5, 10, 500), ev(10, 10, 1500)].forEach(sink);
  assert.deepEqual(quick.out, []);
  const slow = fakeStream(false);
  const s2 = stderrProgress('attribute', slow.stream, undefined);
  [ev(0, 100, 0), ev(10, 100, 2500), ev(20, 100, 4000), ev(50, 100, 8000), ev(100, 100, 9000)].forEach(s2);
  assert.deepEqual(slow.out, [
    'circuitlens attribute: edge sets: 10/100 rows, 4.0 rows/s, about 23 s left\n',
    'circuitlens attribute: edge sets: 50/100 rows, 6.3 rows/s, about 8.0 s left\n',
    'circuitlens attribute: edge sets: 100/100 rows, 11 rows/s, done in 9.0 s\n',
  ]);
});

test('on a terminal: one line redrawn in place, ended by a newline; off and always', () => {
  const t = fakeStream(true);
  const sink = stderrProgress('discover', t.stream, undefined);
  [ev(0, 100, 0), ev(10, 100, 2500), ev(11, 100, 2550), ev(60, 100, 3000), ev(100, 100, 4000)].forEach(sink);
  assert.equal(t.out.length, 3, 'redraws at most every 100 ms');
  assert.ok(t.out.every((l) => l.startsWith('\r\x1b[Kcircuitlens discover: edge sets:')));
  assert.ok(t.out[2]!.endsWith('done in 4.0 s\n'));
  const off = fakeStream(true);
  [ev(0, 100, 0), ev(100, 100, 9000)].forEach(stderrProgress('x', off.stream, 'off'));
  assert.deepEqual(off.out, []);
  const always = fakeStream(true);
  [ev(0, 2, 0), ev(1, 2, 1), ev(2, 2, 2)].forEach(stderrProgress('x', always.stream, 'always'));
  assert.equal(always.out.length, 3);
  assert.ok(always.out.every((l) => !l.includes('\r')), 'always: plain lines, for logs and tests');
});
