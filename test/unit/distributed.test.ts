// Distributed runs, the pure part (core/analysis/distributed/plan.ts): chunks of whole calls with ids from the
// run key and the call range, the same on every side; rows packed exactly (NaN, -0, subnormals, float32); a worker's
// range of the edge-patching calls equals that range of the whole plan.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { identityText, packRows, planChunks, unpackRows, type ContextIdentity } from '../../core/analysis/distributed/plan';
import { edgeCallPlan, planEdgeCalls, type EdgeContext, type EdgeRow } from '../../core/analysis/edge-context';

test('planChunks: whole calls, each closed at the call that reaches the target rows (the last may have fewer), ids from key and range', () => {
  const calls = [256, 256, 256, 100, 7, 256];
  const c = planChunks('abc123', calls, 500);
  assert.deepEqual(c.map((x) => [x.from, x.to, x.rows]), [[0, 2, 512], [2, 6, 619]]);
  assert.deepEqual(c.map((x) => x.id), ['cl-abc123-0-2', 'cl-abc123-2-6']);
  assert.deepEqual(planChunks('abc123', [...calls, 3], 500).at(-1), { id: 'cl-abc123-6-7', from: 6, to: 7, rows: 3 });
  assert.deepEqual(planChunks('abc123', calls, 500), c, 'the same plan twice');
  assert.deepEqual(planChunks('k', calls, 1).map((x) => x.rows), calls, 'one call per chunk');
  assert.ok(c.every((x) => !x.id.includes(':')), 'BullMQ refuses ":" in job ids');
  assert.throws(() => planChunks('a:b', calls), /run key/);
});

test('identityText: key order does not matter, every field does, nested objects in arrays included', () => {
  const id: ContextIdentity = { format: 2, version: '0.1.0', modelSha256: 'aa', suiteText: 'name: x', prompts: 'task', ablation: 'mean', runtime: 'node', maxRows: 256 };
  const shuffled = Object.fromEntries(Object.entries(id).reverse()) as unknown as ContextIdentity;
  assert.equal(identityText(shuffled), identityText(id));
  assert.notEqual(identityText({ ...id, prompts: 'control' }), identityText(id));
  assert.notEqual(identityText({ ...id, suiteText: 'name: y' }), identityText(id));
  const work = { kind: 'sets', sets: [['a0.h1'], []], calls: [[{ set: 0, prompt: 1, layer: 0 }]] };
  const reordered = { calls: [[{ layer: 0, prompt: 1, set: 0 }]], sets: [['a0.h1'], []], kind: 'sets' };
  assert.equal(identityText({ id, work: reordered }), identityText({ id, work }));
  assert.notEqual(identityText({ id, work: { ...work, calls: [[{ set: 0, prompt: 2, layer: 0 }]] } }), identityText({ id, work }));
});

test('packRows/unpackRows: exact for float64 and float32, NaN and signed zeros included', () => {
  const f64 = Float64Array.from([NaN, -0, 0, 5e-324, 1 / 3, -Infinity, 1e308, 42]);
  const back = unpackRows(JSON.parse(JSON.stringify(packRows(f64, 4))));
  assert.ok(back instanceof Float64Array);
  assert.deepEqual([...new Uint8Array(back.buffer)], [...new Uint8Array(f64.buffer)]);
  for (let n = 0; n < 7; n++) {
    const f32 = Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i + 1) * 1e-3));
    const p = packRows(f32, 1);
    assert.equal(p.type, 'f32');
    assert.deepEqual([...unpackRows(p)], [...f32], `${n} values`);
  }
});

test('edgeCallPlan: any range of calls equals that range of the whole plan, as planEdgeCalls built it row by row', () => {
  // Prompts of three lengths (interleaved), rows per call from the model's size: 4 rows at 5 tokens here.
  const lengths = [5, 7, 5, 9, 7, 5, 5, 9];
  const info = { layers: 2, dModel: 64, heads: 4 };
  const perRow = 5 * info.layers * (1 + info.layers * (info.heads + 1)) * info.dModel * 4 * 2.5;
  const maxRows = 4;
  const ec = { ctx: { prompts: lengths.map((n) => ({ ids: Array.from({ length: n }, (_, i) => i) })), maxRows, engine: { info } }, ids: [] } as unknown as EdgeContext;
  assert.ok(Math.floor(3 * 1024 ** 3 / perRow) > maxRows, 'maxRows sets the rows per call');
  for (const sets of [0, 1, 3, 11]) {
    // The plan as it was built before: every row of a length group (sets × its prompts, set-major), cut every maxRows.
    const reference: EdgeRow[][] = [];
    for (const n of [...new Set(lengths)]) {
      const prompts = lengths.flatMap((l, i) => (l === n ? [i] : []));
      const rows: EdgeRow[] = [];
      for (let s = 0; s < sets; s++) for (const p of prompts) rows.push({ set: s, prompt: p });
      for (let at = 0; at < rows.length; at += maxRows) reference.push(rows.slice(at, at + maxRows));
    }
    assert.deepEqual(planEdgeCalls(ec, sets), reference, `${sets} sets`);
    const plan = edgeCallPlan(ec, sets);
    assert.equal(plan.count, reference.length);
    for (let from = 0; from <= plan.count; from++) for (let to = from; to <= plan.count + 1; to++) assert.deepEqual(plan.calls(from, to), reference.slice(from, to), `${sets} sets, calls [${from}, ${to})`);
  }
});
