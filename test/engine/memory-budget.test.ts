// Memory planning (core/engine/engine.ts MemoryOptions): the estimate from weight bytes, per-session and per-row
// costs; a budget too small to load or to build the gradient session fails with a UserError that says what is
// needed (no crash); optional sessions (lean metrics, layer skipping) are done without; node EAP split into
// gradient runs of as many rows as fit gives the same scores as one run.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { prepare, type EvalContext } from '../../core/analysis/evaluate';
import { eapNodeScores } from '../../core/analysis/attribute/gradient';
import { resolvePrompts } from '../../core/analysis/prompts';
import type { Engine } from '../../core/engine/engine';
import { weightBytes } from '../../core/engine/memory';
import { UserError } from '../../core/errors';
import { parseSuite } from '../../core/formats/suite';
import { createRuntime, loadEngine, memoryBudget, MEMORY_ENV } from '../../core/nodejs/load';
import { OrtNodeRuntime, SHARED_WEIGHTS_BYTES, sessionOptions } from '../../core/nodejs/ort-node';
import { decodeModel } from '../../core/onnx/model';
import { EXAMPLES } from '../helpers';

const MODEL = path.join(EXAMPLES, 'induction-gpt2.onnx');

async function inductionContext(engine: Engine): Promise<EvalContext> {
  const file = path.join(EXAMPLES, 'induction.suite.yaml');
  const { suite } = parseSuite(file, fs.readFileSync(file, 'utf8'));
  const { prompts } = resolvePrompts(suite!, engine);
  return prepare(engine, prompts.filter((p) => !p.tags.includes('control')), 'mean', { meanOver: prompts });
}

test('prepacking: off (weights shared) for large external data by path only', () => {
  const small = [{ location: 'induction-gpt2.onnx', path: MODEL }];
  assert.ok(fs.statSync(MODEL).size < SHARED_WEIGHTS_BYTES);
  assert.equal(new OrtNodeRuntime().sharesWeights([]), false);
  assert.equal(new OrtNodeRuntime().sharesWeights(small), false);
  assert.equal(new OrtNodeRuntime({ prepacking: 'off' }).sharesWeights(small), true);
  assert.equal(new OrtNodeRuntime({ prepacking: 'on' }).sharesWeights(small), false);
  const extra = (shared: boolean) => (sessionOptions({}, shared).extra as { session: Record<string, string> }).session;
  assert.equal(extra(true).disable_prepacking, '1');
  assert.equal(extra(false).disable_prepacking, undefined);
});

describe('memory planning', () => {
  let free: Engine;
  before(async () => { free = await loadEngine(MODEL, createRuntime('node')); });
  after(async () => { await free.release(); });

  test('the estimate counts the weights, each session and the rows of a run', () => {
    const w = weightBytes(decodeModel(fs.readFileSync(MODEL), MODEL));
    assert.ok(w > 0);
    // The engine counts after normalizing the export (which may add a few small constants).
    assert.ok(Math.abs(free.weightBytes - w) <= 0.01 * w, `${free.weightBytes} vs ${w}`);
    // Prepacking runtime (a small model): every session holds the weights, the backward graph twice.
    const e = free.memoryEstimate('gradient', 1000);
    assert.ok(e.held >= w, 'the main session');
    assert.ok(e.session >= 2 * w);
    assert.equal(e.total, e.held + e.session + 1000);
    assert.ok(free.gradientRowBytes(20) > free.gradientRowBytes(10));
    assert.ok(free.gradientRowsThatFit(20) >= 1);
  });

  test('the default budget: 0.75 × the machine, or $CIRCUITLENS_MEMORY_GB', () => {
    const saved = process.env[MEMORY_ENV];
    try {
      delete process.env[MEMORY_ENV];
      assert.match(memoryBudget().budgetSource, /0\.75 ×/);
      process.env[MEMORY_ENV] = '2.5';
      assert.equal(memoryBudget().budget, 2.5 * 1024 ** 3);
      process.env[MEMORY_ENV] = 'lots';
      assert.throws(() => memoryBudget(), UserError);
    } finally {
      if (saved === undefined) delete process.env[MEMORY_ENV]; else process.env[MEMORY_ENV] = saved;
    }
  });

  test('a budget too small for the model refuses to load it, saying so', async () => {
    await assert.rejects(loadEngine(MODEL, createRuntime('node'), { memoryBudget: 1024 }), (e: unknown) => {
      assert.ok(e instanceof UserError, String(e));
      assert.match(e.message, /weights; loading it needs about .* GiB, more than the memory budget of 0\.00 GiB/);
      return true;
    });
  });

  test('a budget without room for the gradient session: runs still work, gradients fail clearly', async () => {
    // Room for the main and metrics sessions only.
    const budget = free.sessionBytes('main') + free.sessionBytes('metrics');
    const engine = await loadEngine(MODEL, createRuntime('node'), { memoryBudget: budget });
    try {
      const ctx = await inductionContext(engine);
      assert.equal(await engine.canSkipLayers(), false, 'no room for the layer-skipping session: runs start at layer 0');
      const ids = [ctx.prompts[0]!.ids];
      const a = await engine.run({ ids, lastOnly: true });
      const b = await free.run({ ids, lastOnly: true });
      assert.deepEqual([...a.logits.data].map((x) => x.toFixed(4)), [...b.logits.data].map((x) => x.toFixed(4)));
      await assert.rejects(eapNodeScores(ctx, 'logit_diff'), (e: unknown) => {
        assert.ok(e instanceof UserError, String(e));
        assert.match(e.message, /^the gradient run \(backward graph\) needs about [\d.]+ GiB of memory \(.*\), more than the memory budget of [\d.]+ GiB \(as given\)\. Use fewer or shorter prompts/);
        assert.match(e.message, /CIRCUITLENS_MEMORY_GB/);
        return true;
      });
    } finally {
      await engine.release();
    }
  });

  test('node EAP chunked to one row per gradient run gives the same scores', async () => {
    const ref = await eapNodeScores(await inductionContext(free), 'logit_diff');
    const probe = await inductionContext(free);
    const T = Math.max(...probe.prompts.map((p) => p.ids.length));
    const budget = free.sessionBytes('main') + free.sessionBytes('metrics') + free.sessionBytes('gradient') + 1.5 * free.gradientRowBytes(T);
    const engine = await loadEngine(MODEL, createRuntime('node'), { memoryBudget: budget });
    try {
      const ctx = await inductionContext(engine);
      assert.ok(ctx.prompts.length > 1 && ctx.maxRows > 1);
      assert.equal(engine.gradientRowsThatFit(T), 1);
      const got = await eapNodeScores(ctx, 'logit_diff');
      assert.equal(got.length, ref.length);
      got.forEach((s, i) => {
        assert.equal(s.id, ref[i]!.id);
        assert.ok(Math.abs(s.score - ref[i]!.score) <= 1e-5 * Math.max(1, Math.abs(ref[i]!.score)), `${s.id}: ${s.score} vs ${ref[i]!.score}`);
      });
    } finally {
      await engine.release();
    }
  });
});
