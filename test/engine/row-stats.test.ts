// LAST_STATS: each row's max logit, Σ exp(logit − max) and argmax, computed in the metrics and skip sessions'
// graphs so that scoring a row of a large vocabulary needs no Math.exp over it (core/onnx/lean.ts
// withLastRowStats). They must equal what JavaScript computes from the returned logits, on every runtime that
// has them, and a large vocabulary must not cost precision.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { evaluateSets, prepare, runSets } from '../../core/analysis/evaluate';
import { rowStats, scorePrompt } from '../../core/analysis/metrics';
import { createRuntime, loadEngine } from '../../core/nodejs/load';
import { decodeModel, encodeModel, floatValueInfo, makeNode } from '../../core/onnx/model';
import { LAST_LOGITS } from '../../core/onnx/instrument';
import { LAST_STATS, withLastRowStats } from '../../core/onnx/lean';
import type { NodeId } from '../../core/ids';
import { EXAMPLES, FIXTURES } from '../helpers';

/** Max, Σ exp(x − max) in float64, first argmax of a row, as scorePrompt computes them without stats. */
function jsStats(row: Float32Array): { max: number; sumExp: number; top1: number } {
  let max = -Infinity;
  let top1 = 0;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) { max = row[i]!; top1 = i; }
  let sumExp = 0;
  for (let i = 0; i < row.length; i++) sumExp += Math.exp(row[i]! - max);
  return { max, sumExp, top1 };
}

const MODELS: [string, 'node' | 'wasm'][] = [
  [path.join(EXAMPLES, 'induction-gpt2.onnx'), 'node'],
  [path.join(EXAMPLES, 'induction-llama.onnx'), 'node'],
  [path.join(FIXTURES, 'models', 'induction-gpt2-opset14.onnx'), 'node'],
  [path.join(FIXTURES, 'models', 'induction-llama-opset14.onnx'), 'node'],
  [path.join(FIXTURES, 'models', 'induction-llama-kvcache.onnx'), 'node'],
  [path.join(EXAMPLES, 'induction-llama.onnx'), 'wasm'],
];

for (const [file, backend] of MODELS) {
  test(`${path.basename(file)} (${backend}): row stats from the metrics and skip sessions equal JavaScript's, and scores agree`, async () => {
    const engine = await loadEngine(file, createRuntime(backend));
    try {
      const V = engine.info.vocab;
      const a = [5, 9, 14, 3, 11, 7, 5, 9, 14];
      const ids = [a, [12, 4, 8, 12, 4, 8, 6, 2, 12], a];
      const ablations = [undefined, { nodes: ['a1.h0', 'm0'] as NodeId[], kind: 'zero' as const }, { nodes: ['a1.h2'] as NodeId[], kind: 'zero' as const }];
      const check = (res: { logits: { data: Float32Array }; stats?: { dims: number[]; data: Float32Array } }, what: string) => {
        assert.ok(res.stats, `${what}: stats returned`);
        assert.deepEqual(res.stats.dims, [ids.length, 1, 4]);
        ids.forEach((_, r) => {
          const want = jsStats(res.logits.data.subarray(r * V, (r + 1) * V));
          const got = rowStats(res.stats!.data, r);
          assert.equal(got.max, want.max, `${what} row ${r} max`);
          assert.equal(got.top1, want.top1, `${what} row ${r} argmax`);
          assert.ok(Math.abs(got.sumExp / want.sumExp - 1) < 1e-6, `${what} row ${r} Σexp ${got.sumExp} vs ${want.sumExp}`);
        });
      };
      check(await engine.run({ ids, ablations, lastOnly: true, stats: true }), 'metrics session');
      // Not asked for, or not computable with hooks: none.
      assert.equal((await engine.run({ ids, lastOnly: true })).stats, undefined);
      assert.equal((await engine.run({ ids, lastOnly: true, stats: true, hooks: ['blocks.0.hook_resid_pre'] })).stats, undefined);
      if (await engine.canSkipLayers()) {
        const clean = await engine.run({ ids, lastOnly: false, hooks: ['blocks.1.hook_resid_pre'] });
        check(await engine.run({ ids, ablations, lastOnly: true, stats: true, start: { layer: 1, resid: clean.activations['blocks.1.hook_resid_pre']! } }), 'skip session');
      }

      // A sweep scores ablated rows from the stats: the same scores as from the logits alone.
      const prompts = ids.map((p, index) => ({ index, text: '', ids: p, answer: 14, foil: 3, tags: [] }));
      const ctx = await prepare(engine, prompts, 'zero');
      const sets = [[], ['a0.h1'], ['a1.h0'], ['a1.h3', 'm1'], ['m0']] as never[][];
      const swept = await evaluateSets(ctx, sets);
      // The ablated rows came with stats (the clean ones are kept from prepare and scored in JavaScript), and
      // scoring the same logits with them differs from scoring without them only by the float32 exponentials.
      const { logits, stats } = await runSets(ctx, sets);
      for (let s = 1; s < sets.length; s++) {
        prompts.forEach((p, i) => {
          assert.ok(stats[s]![i], `set ${s} prompt ${i}: stats`);
          const a = scorePrompt(logits[s]![i]!, p.answer, p.foil, ctx.cleanLogProbs[i], stats[s]![i]);
          const b = scorePrompt(logits[s]![i]!, p.answer, p.foil, ctx.cleanLogProbs[i]);
          assert.ok(Math.abs(a.kl - b.kl) < 3e-7 && Math.abs(a.prob - b.prob) < 3e-7 && a.top1 === b.top1 && a.logitDiff === b.logitDiff, `set ${s} prompt ${i}: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
        });
      }
      assert.ok(stats[0]!.every((x) => x === undefined), 'clean rows: no stats');
      const V2 = engine.info.vocab;
      for (let s = 1; s < sets.length; s++) {
        const res = await engine.run({ ids, ablations: ids.map(() => ({ nodes: sets[s]!, kind: 'zero' as const })), lastOnly: true });
        prompts.forEach((p, i) => {
          const want = scorePrompt(res.logits.data.slice(i * V2, (i + 1) * V2), p.answer, p.foil, ctx.cleanLogProbs[i]);
          const got = swept[s]!.scores[i]!;
          assert.ok(Math.abs(got.kl - want.kl) < 1e-5 && Math.abs(got.prob - want.prob) < 1e-5 && got.top1 === want.top1 && Math.abs(got.logitDiff - want.logitDiff) < 1e-5,
            `set ${s} prompt ${i}: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`);
        });
      }
    } finally {
      await engine.release();
    }
  });
}

test('withLastRowStats on a 50,257-entry vocabulary: the log-normaliser within 1e-8 of float64 on flat rows and 2e-7 on peaked ones, ties go to the first index', async () => {
  // A graph whose LAST_LOGITS is its input, on the demo model's opset.
  const base = decodeModel(fs.readFileSync(path.join(EXAMPLES, 'induction-gpt2.onnx')), 'demo');
  const model = withLastRowStats({
    ...base,
    graph: { ...base.graph!, node: [makeNode('Identity', ['x'], [LAST_LOGITS], 'id')], input: [floatValueInfo('x', 3)], output: [floatValueInfo(LAST_LOGITS, 3)], initializer: [], valueInfo: [] },
  });
  const session = await createRuntime('node').createSession(encodeModel(model), []);
  try {
    const V = 50257;
    const B = 6;
    const x = new Float32Array(B * V);
    for (let i = 0; i < x.length; i++) x[i] = 12 * Math.sin(i * 1.37) + 4 * Math.cos(i * 0.001);
    // Row 3: a tie for the maximum at two indices.
    x.fill(-3, 3 * V, 4 * V);
    x[3 * V + 100] = 5;
    x[3 * V + 200] = 5;
    // Rows 4 and 5: peaked, as a trained model's are (a few tokens hold most of the probability).
    for (const r of [4, 5]) {
      for (let i = 0; i < V; i++) x[r * V + i] = -6 + 3 * Math.sin(i * 0.7 + r);
      [11.3, 10.1, 9.77, 8.2, 7.9].forEach((v, k) => { x[r * V + 1000 * k + 17 * r] = v + 0.37 * r; });
    }
    const out = await session.run({ x: { type: 'float32', dims: [B, 1, V], data: x } }, [LAST_STATS]);
    for (let r = 0; r < B; r++) {
      const want = jsStats(x.subarray(r * V, (r + 1) * V));
      const got = rowStats(out[LAST_STATS]!.data, r);
      assert.equal(got.top1, want.top1, `row ${r} argmax`);
      assert.equal(got.max, want.max);
      const lse = (s: { max: number; sumExp: number }) => s.max + Math.log(s.sumExp);
      assert.ok(Math.abs(lse(got) - lse(want)) < (r < 4 ? 1e-8 : 2e-7), `row ${r}: log-normaliser ${lse(got)} vs ${lse(want)}`);
    }
    assert.equal(rowStats(out[LAST_STATS]!.data, 3).top1, 100);
  } finally {
    await session.release();
  }
});
