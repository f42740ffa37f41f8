// Estimates of work said before it starts (core/analysis/cost.ts), from the engine's measured speed.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { describeWork, estimateWork, formatSeconds } from '../../core/analysis/cost';
import { prepare, type EvalContext } from '../../core/analysis/evaluate';
import { createRuntime, loadEngine } from '../../core/nodejs/load';
import { EXAMPLES } from '../helpers';

test('rows and seconds from the measured speed: a gradient row costs three forward rows', () => {
  const ctx = { engine: { msPerToken: 2 }, prompts: [{ ids: new Array(16).fill(1) }, { ids: new Array(16).fill(1) }] } as unknown as EvalContext;
  const e = estimateWork(ctx, 'node attribution by EAP', { forward: 100, gradient: 10 });
  assert.equal(e.tokens, 16);
  assert.ok(Math.abs(e.seconds! - (130 * 16 * 2) / 1000) < 1e-9);
  assert.equal(describeWork(e, 2), 'node attribution by EAP: 100 forward rows and 10 gradient rows of ~16 tokens, about 4.2 s (at 2.0 ms per token here)');
  assert.equal(estimateWork({ ...ctx, engine: {} } as unknown as EvalContext, 'x', { forward: 1 }).seconds, undefined);
  assert.deepEqual([formatSeconds(3.14), formatSeconds(42), formatSeconds(600), formatSeconds(23 * 3600)], ['3.1 s', '42 s', '10 min', '23.0 h']);
});

test('the engine measures its metrics forward speed on the clean run every analysis starts with', async () => {
  const engine = await loadEngine(path.join(EXAMPLES, 'induction-gpt2.onnx'), createRuntime('node'));
  try {
    assert.equal(engine.msPerToken, undefined);
    const ctx = await prepare(engine, [{ index: 0, text: '', ids: [5, 6, 7, 8, 5, 6, 7], answer: 8, foil: 5, tags: [] }], 'zero');
    assert.ok(engine.msPerToken! > 0 && engine.msPerToken! < 1000, `${engine.msPerToken} ms per token`);
    const e = estimateWork(ctx, 'node attribution by exact patching', { forward: 11 });
    assert.ok(e.seconds! > 0);
  } finally {
    await engine.release();
  }
});
