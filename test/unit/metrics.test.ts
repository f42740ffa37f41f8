// scorePrompt's fused passes (one for max and top-1, one for the normaliser and Σ p·logit, the clean side cached)
// against the textbook definitions in float64.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { logSoftmax, scorePrompt } from '../../core/analysis/metrics';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

function reference(logits: Float32Array, answer: number, foil: number, clean: Float32Array) {
  const ls = (x: Float32Array) => {
    const m = Math.max(...x);
    let z = 0;
    for (const v of x) z += Math.exp(v - m);
    return Array.from(x, (v) => v - m - Math.log(z));
  };
  const lq = ls(logits);
  const lp = ls(clean);
  let kl = 0;
  lp.forEach((v, i) => { if (Math.exp(v) > 0) kl += Math.exp(v) * (v - lq[i]!); });
  let top1 = 0;
  logits.forEach((v, i) => { if (v > logits[top1]!) top1 = i; });
  return { logitDiff: logits[answer]! - logits[foil]!, prob: Math.exp(lq[answer]!), top1, kl };
}

test('scorePrompt equals logit difference, probability, top-1 and KL computed directly', () => {
  const r = rng(7);
  for (const [V, scale] of [[217, 3], [50257, 10], [50257, 60], [1000, 0.01]] as const) {
    const clean = Float32Array.from({ length: V }, () => (r() - 0.5) * scale);
    const cleanLp = logSoftmax(clean);
    for (let k = 0; k < 3; k++) {
      const row = Float32Array.from(clean, (v) => v + (r() - 0.5) * scale * k);
      const got = scorePrompt(row, 3, 11, cleanLp);
      const want = reference(row, 3, 11, clean);
      assert.ok(Math.abs(got.logitDiff - want.logitDiff) < 1e-9);
      assert.ok(Math.abs(got.prob - want.prob) < 1e-12 + 1e-9 * want.prob, `prob ${got.prob} vs ${want.prob}`);
      assert.equal(got.top1, want.top1);
      assert.equal(got.correct, want.top1 === 3);
      assert.ok(Math.abs(got.kl - want.kl) < 1e-9 + 1e-7 * want.kl, `V ${V} scale ${scale} k ${k}: kl ${got.kl} vs ${want.kl}`);
      if (k === 0) assert.ok(got.kl < 1e-9, 'KL of the clean row to itself is 0');
    }
  }
});

test('scorePrompt: masked (−∞) logits, no clean row, and ties', () => {
  const clean = Float32Array.from([2, 1, -Infinity, 0.5]);
  const cleanLp = logSoftmax(clean);
  // A token the clean run never predicts (p = 0) adds nothing even where this row is −∞ too.
  const row = Float32Array.from([1, 2, -Infinity, 0.5]);
  const got = scorePrompt(row, 1, 0, cleanLp);
  const want = reference(row, 1, 0, clean);
  assert.ok(Number.isFinite(got.kl) && Math.abs(got.kl - want.kl) < 1e-12);
  // This row rules out a token the clean run predicts: KL is infinite.
  assert.equal(scorePrompt(Float32Array.from([-Infinity, 2, 0, 0.5]), 1, 0, cleanLp).kl, Infinity);
  // Without a clean row KL is 0 and the foil is optional.
  const noClean = scorePrompt(row, 1, undefined);
  assert.equal(noClean.kl, 0);
  assert.ok(Number.isNaN(noClean.logitDiff));
  // The first of equal maxima is top-1.
  assert.equal(scorePrompt(Float32Array.from([1, 3, 3]), 2, 0).top1, 1);
});
