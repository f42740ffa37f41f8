// `circuitlens trace --temperature` and `circuitlens attention`, through the built CLI; the canary check kind
// {head, temperature, <metric>} on its fixture (one passing, one failing check).
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { entropyPerPosition } from '../../core/analysis/attention/stats';
import { EXAMPLES, FIXTURES } from '../helpers';
import { cli } from './run-cli';

const GPT2 = path.join(EXAMPLES, 'induction-gpt2.onnx');
const SUITE = path.join(EXAMPLES, 'induction.suite.yaml');
const PROMPT = 'Mary walked garden red apple dog Mary walked garden red';

describe('circuitlens trace --temperature', () => {
  const trace = (...extra: string[]) => {
    const r = cli(['trace', GPT2, '--prompt', PROMPT, '--hooks', '*hook_pattern', '--json', ...extra]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { ids: number[]; logits: { data: number[] }; activations: Record<string, { shape: number[]; data: number[] }>; temperatures?: unknown };
  };

  test('divides one head\'s scores by τ: its pattern is softmax(log p / τ), the layer\'s other heads are untouched', () => {
    const clean = trace();
    const hot = trace('--temperature', 'a1.h2=2', '--temperature', 'a0.h1=0.5,a0.h3=1.5');
    assert.deepEqual(hot.temperatures, [{ head: 'a1.h2', temperature: 2 }, { head: 'a0.h1', temperature: 0.5 }, { head: 'a0.h3', temperature: 1.5 }]);
    assert.equal(clean.temperatures, undefined);
    const T = clean.ids.length;
    const p0 = clean.activations['blocks.0.attn.hook_pattern']!.data;
    const t0 = hot.activations['blocks.0.attn.hook_pattern']!.data;
    for (const [h, tau] of [[1, 0.5], [3, 1.5]] as const) {
      for (let q = 0; q < T; q++) {
        const row = p0.slice((h * T + q) * T, (h * T + q + 1) * T);
        const w = row.map((p) => (p > 0 ? Math.exp(Math.log(p) / tau) : 0));
        const z = w.reduce((a, b) => a + b, 0);
        w.forEach((x, k) => assert.ok(Math.abs(t0[(h * T + q) * T + k]! - x / z) < 2e-5, `a0.h${h} q${q} k${k}`));
      }
    }
    for (const h of [0, 2]) assert.deepEqual(t0.slice(h * T * T, (h + 1) * T * T), p0.slice(h * T * T, (h + 1) * T * T));
    assert.notDeepEqual(hot.logits.data, clean.logits.data);
    // τ = 1 changes nothing, to the bit.
    assert.deepEqual(trace('--temperature', 'a1.h2=1').logits.data, clean.logits.data);
  });

  test('bad --temperature values exit 2 with a message', () => {
    for (const [flag, msg] of [['a1.h0=0', /positive number/], ['a1.h0', /takes HEAD=T/], ['m0=2', /takes HEAD=T/], ['a7.h0=2', /not in this model/], ['a1.h0=2,a1.h0=3', /twice/]] as const) {
      const r = cli(['trace', GPT2, '--ids', '1,2,3', '--temperature', flag]);
      assert.equal(r.code, 2, flag);
      assert.match(r.stderr, msg);
    }
  });
});

describe('circuitlens attention', () => {
  test('--json: entropy per position and metrics by temperature; τ = 1 is `run`', () => {
    const r = cli(['attention', SUITE, '--head', 'a1.h0,a0.h3', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /2 heads × 5 temperatures/);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(j.temperatures, [0.5, 0.75, 1, 1.5, 2]);
    assert.deepEqual(j.heads.map((h: { id: string }) => h.id), ['a1.h0', 'a0.h3']);
    assert.equal(j.positions.length, j.heads[0].entropy.length);
    assert.equal(j.positions[0], j.prompts);
    j.heads.forEach((h: { entropy: number[]; meanEntropy: number }) => {
      assert.equal(h.entropy[0], 0);
      h.entropy.forEach((e, q) => assert.ok(e >= 0 && e <= j.maxEntropy[q] + 1e-9, `entropy ${e} at ${q}`));
      assert.ok(h.meanEntropy > 0);
    });
    const run = JSON.parse(cli(['run', SUITE, '--json']).stdout);
    for (const h of j.heads) {
      const one = h.byTemperature.find((p: { temperature: number }) => p.temperature === 1);
      assert.ok(Math.abs(one.metric - run.value) < 1e-9 && one.accuracy === run.accuracy && one.kl < 1e-9, JSON.stringify(one));
      const two = h.byTemperature.find((p: { temperature: number }) => p.temperature === 2);
      assert.ok(two.kl > 0 && two.metric !== run.value, 'τ = 2 changes the metric');
    }
  });

  test('entropy per position is the mean of the traced patterns\' entropies (one-prompt suite)', () => {
    const r = cli(['attention', path.join(FIXTURES, 'canary', 'one-prompt.suite.yaml'), '--head', 'a1.h3', '--temperatures', '1', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    const t = JSON.parse(cli(['trace', GPT2, '--prompt', PROMPT, '--hooks', 'blocks.1.attn.hook_pattern', '--json']).stdout);
    const T = t.ids.length;
    const e = entropyPerPosition(Float32Array.from(t.activations['blocks.1.attn.hook_pattern'].data), 4, T);
    const want = Array.from(e.subarray(3 * T, 4 * T));
    j.heads[0].entropy.forEach((x: number, q: number) => assert.ok(Math.abs(x - want[q]!) < 1e-12));
  });

  test('bad input exits 2', () => {
    for (const [args, msg] of [[['--head', 'm0'], /attention heads/], [['--temperatures', '0,1'], /positive number/], [['--head', 'a9.h0'], /not in this model/]] as const) {
      const r = cli(['attention', SUITE, ...args]);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.stderr, msg);
    }
  });
});

test('canary {head, temperature, metric}: a passing and a failing check, the failure at its line', () => {
  const file = path.join(FIXTURES, 'canary', 'temperature.canary.yaml');
  const r = cli(['canary', file, '--reporter', 'json']);
  assert.equal(r.code, 1, r.stderr);
  const j = JSON.parse(r.stdout);
  const checks = j.canaries[0].checks;
  assert.deepEqual(checks.map((c: { status: string }) => c.status), ['passed', 'failed']);
  assert.equal(checks[0].actual, 1);
  assert.ok(checks[1].actual > 1e-5);
  assert.equal(checks[1].line, 13);
  assert.match(checks[1].message, /a1\.h0's softmax temperature 2/);
});
