import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { entropyPerPosition, EntropyByPosition, maxEntropyAt, meanOverPositions } from '../../core/analysis/attention/stats';
import { parseCanary } from '../../core/formats/canary';

describe('attention entropy', () => {
  // Two heads, three positions, causal: head 0 attends to the first token only, head 1 uniformly.
  const T = 3;
  const pattern = new Float32Array([
    1, 0, 0, /**/ 1, 0, 0, /**/ 1, 0, 0,
    1, 0, 0, /**/ 0.5, 0.5, 0, /**/ 1 / 3, 1 / 3, 1 / 3,
  ]);

  test('per head and position, by hand', () => {
    const e = entropyPerPosition(pattern, 2, T);
    assert.deepEqual(Array.from(e.subarray(0, 3)), [0, 0, 0]);
    // Uniform over q + 1 keys: ln(q + 1).
    assert.equal(e[3], 0);
    assert.ok(Math.abs(e[4]! - Math.log(2)) < 1e-7);
    assert.ok(Math.abs(e[5]! - Math.log(3)) < 1e-7);
    assert.ok(Math.abs(e[5]! - maxEntropyAt(2)) < 1e-7);
  });

  test('a skewed distribution: −Σ p ln p', () => {
    const p = new Float32Array([1, 0, 0, 0.25, 0.75, 0, 0.2, 0.3, 0.5]);
    const e = entropyPerPosition(p, 1, 3);
    const h = (...ps: number[]) => -ps.reduce((a, x) => a + x * Math.log(x), 0);
    assert.ok(Math.abs(e[1]! - h(0.25, 0.75)) < 1e-7, `${e[1]} vs ${h(0.25, 0.75)}`);
    assert.ok(Math.abs(e[2]! - h(0.2, 0.3, 0.5)) < 1e-7);
    assert.ok(Math.abs(meanOverPositions(e, 1, 3)[0]! - (h(0.25, 0.75) + h(0.2, 0.3, 0.5)) / 3) < 1e-7);
  });

  test('a batch row is read at its offset', () => {
    const two = new Float32Array([...pattern, ...pattern.map((x, i) => (i < 9 ? pattern[i + 9]! : pattern[i - 9]!))]);
    const second = entropyPerPosition(two, 2, T, 2 * T * T);
    assert.ok(Math.abs(second[2]! - Math.log(3)) < 1e-7);
    assert.equal(second[5], 0);
  });

  test('mean per position over prompts of different lengths', () => {
    const acc = new EntropyByPosition(1);
    acc.add(new Float64Array([0, 1]), 2);
    acc.add(new Float64Array([0, 3, 2]), 3);
    assert.deepEqual(acc.means(), [[0, 2, 2]]);
    assert.deepEqual(acc.positions, [2, 2, 1]);
  });
});

describe('canary softmax-temperature checks', () => {
  const canary = (check: string[]) => parseCanary('t.canary.yaml', ['model: m.onnx', 'suite: s.suite.yaml', 'checks:', ...check.map((l) => `  ${l}`)].join('\n'));

  test('head + temperature + a metric', () => {
    const { canary: c, diagnostics } = canary(['- name: hot', '  head: a1.h0', '  temperature: 2', '  accuracy: ">= 0.5"']);
    assert.deepEqual(diagnostics, []);
    assert.equal(c!.checks[0]!.head, 'a1.h0');
    assert.equal(c!.checks[0]!.temperature, 2);
    assert.deepEqual(c!.checks[0]!.assertion, { quantity: 'accuracy', bound: { op: '>=', value: 0.5, text: '>= 0.5' } });
  });

  test('errors at their lines', () => {
    const noTemp = canary(['- name: a', '  head: a1.h0', '  accuracy: ">= 0.5"']);
    assert.equal(noTemp.canary, undefined);
    assert.match(noTemp.diagnostics.map((d) => `${d.line}: ${d.message}`).join('\n'), /^5: .*both head: a<L>.h<H> and temperature/m);
    const withAblate = canary(['- name: a', '  head: a1.h0', '  temperature: 2', '  ablate: [a0.h1]', '  accuracy: ">= 0.5"']);
    assert.match(withAblate.diagnostics.map((d) => d.message).join('\n'), /not with ablate/);
    const zero = canary(['- name: a', '  head: a1.h0', '  temperature: 0', '  accuracy: ">= 0.5"']);
    assert.equal(zero.canary, undefined);
    assert.equal(zero.diagnostics[0]!.line, 6);
    const notHead = canary(['- name: a', '  head: m1', '  temperature: 2', '  accuracy: ">= 0.5"']);
    assert.equal(notHead.canary, undefined);
    assert.equal(notHead.diagnostics[0]!.line, 5);
  });
});
