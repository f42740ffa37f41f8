import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { fakeQuantize, roundHalfEven, roundToHalf } from '../../core/onnx/quantize';
import { parseScopes } from '../../core/analysis/sensitivity/scopes';

test('round half to even, as NumPy and PyTorch round', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, 2.5001, -0.2].map(roundHalfEven), [0, 2, 2, -0, -2, -2, 2, 3, -0]);
});

test('float16 rounding: normal, subnormal, ties to even, overflow', () => {
  assert.equal(roundToHalf(1), 1);
  assert.equal(roundToHalf(0.1), 0.0999755859375);
  assert.equal(roundToHalf(-0.1), -0.0999755859375);
  assert.equal(roundToHalf(1 + 2 ** -11), 1); // a tie: to the even neighbour 1
  assert.equal(roundToHalf(1 + 3 * 2 ** -11), 1 + 2 ** -9); // a tie: to the even neighbour 1 + 2^-9
  assert.equal(roundToHalf(2 ** -24), 2 ** -24); // the smallest subnormal
  assert.equal(roundToHalf(2 ** -25), 0); // half of it: a tie, to 0
  assert.equal(roundToHalf(3 * 2 ** -25), 2 ** -23);
  assert.equal(roundToHalf(65504), 65504);
  assert.equal(roundToHalf(65519), 65504);
  assert.equal(roundToHalf(65520), Infinity);
  assert.equal(roundToHalf(2 ** -15 + 2 ** -26), 2 ** -15); // subnormal range keeps the 2^-24 spacing
});

test('int8/int4 per channel and per group: scale max|w|/q, round half to even, clamp', () => {
  // [in 2, out 3], channels along axis 1 (a MatMul's columns).
  const w = Float32Array.of(127, 2.5, 0, -63.5, -127 * 2, 0);
  const q = fakeQuantize(w, [2, 3], 1, { scheme: 'int8' });
  // Column 0: s = 1, 127 → 127, −63.5 → −64 (tie to even). Column 1: s = 2, 2.5/2 = 1.25 → 1 → 2; −254 → −127·2.
  // Column 2: all zero stays zero.
  assert.deepEqual([...q], [127, 2, 0, -64, -254, 0]);
  const r4 = fakeQuantize(Float32Array.of(7, 3.5, 2.5, -1), [1, 4], 0, { scheme: 'int4' });
  assert.deepEqual([...r4], [7, 4, 2, -1]);
  // Groups of 2 along the input of one row-channel [1, 4]: scales 7/7 and 2.5/7.
  const g = fakeQuantize(Float32Array.of(7, 3.5, 2.5, -1), [1, 4], 0, { scheme: 'int4', groupSize: 2 });
  const s2 = Math.fround(2.5 / 7);
  assert.deepEqual([...g], [7, 4, 2.5, Math.fround(Math.round(-1 / s2) * s2)]);
  assert.throws(() => fakeQuantize(new Float32Array(8), [2, 2, 2], 0, { scheme: 'int8', groupSize: 2 }), /2-D weight matrices/);
});

test('scopes: defaults, comma lists and repeats, circuit files', () => {
  assert.deepEqual(parseScopes([], false).map((s) => s.kind), ['all', 'attn', 'mlp', 'embed']);
  assert.deepEqual(parseScopes([], true).map((s) => s.kind), ['all', 'attn', 'mlp', 'embed', 'circuit', 'outside']);
  assert.deepEqual(parseScopes(['attn,mlp', 'attn', 'circuit:a.circuit.json'], false), [{ kind: 'attn' }, { kind: 'mlp' }, { kind: 'circuit', circuitFile: 'a.circuit.json' }]);
  assert.throws(() => parseScopes(['outside'], false), /needs a circuit/);
  assert.throws(() => parseScopes(['bias'], false), /not a scope/);
});
