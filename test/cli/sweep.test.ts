import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXAMPLES, FIXTURES } from '../helpers';
import { cli } from './run-cli';

const SUITE = 'examples/induction-sweep.suite.yaml';
const REF = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'references', 'induction-sweep.json'), 'utf8'));

describe('circuitlens sweep', () => {
  test('--help prints the options and the JSON', () => {
    const r = cli(['sweep', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /usage: circuitlens sweep SUITE/);
    assert.match(r.stdout, /--level L/);
    assert.match(r.stdout, /--json: \{"suite", "name", "model", "variable"/);
  });

  test('--json: points with intervals and n*, as PyTorch computes them; only JSON on stdout', () => {
    const r = cli(['sweep', SUITE, '--json', '--resamples', '300']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.variable, 'n');
    assert.equal(j.metric, 'logit_diff');
    assert.equal(j.level, 0.5);
    assert.equal(j.model, 'examples/induction-gpt2.onnx');
    assert.deepEqual(j.bootstrap, { resamples: 300, confidence: 0.95, seed: 0 });
    const ref = REF.models['induction-gpt2'];
    assert.deepEqual(j.points.map((p: { value: number }) => p.value), ref.points.map((p: { value: number }) => p.value));
    j.points.forEach((p: { metric: number; accuracy: number; ci: { metric: number[] } }, i: number) => {
      assert.ok(Math.abs(p.metric - ref.points[i].logit_diff) < 1e-3);
      assert.equal(p.accuracy, ref.points[i].accuracy);
      assert.equal(p.ci.metric.length, 2);
    });
    assert.ok(Math.abs(j.critical.value - ref.critical) < 1e-9);
    assert.equal(j.critical.direction, 'falls');
    assert.deepEqual(j.critical.between, [10, 12]);
    assert.match(r.stderr, /1152 task prompts/);
    // Seeded: the same intervals again.
    assert.deepEqual(JSON.parse(cli(['sweep', SUITE, '--json', '--resamples', '300']).stdout).points, j.points);
  });

  test('text output, --level and --model', () => {
    const r = cli(['sweep', SUITE, '--model', 'examples/induction-llama.onnx', '--level', '0.9', '--resamples', '0']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /no intervals/);
    // llama: accuracy 0.958 at n=12, 0.927 at 14, 0.812 at 16: 0.9 is crossed between 14 and 16.
    assert.match(r.stdout, /n\* = 14\.\d+: accuracy falls below 0\.9 between n=14 and n=16/);
  });

  test('bad input: exit 2 with one clear message', () => {
    const bad = (args: string[], re: RegExp) => {
      const r = cli(['sweep', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stdout, '');
    };
    bad([SUITE, '--level', '2'], /--level is an accuracy, from 0 to 1/);
    bad([SUITE, '--resamples', '2.5'], /--resamples must be a whole number/);
    bad([SUITE, '--variable', 'k'], /sweeps n, not k/);
    bad(['examples/induction.suite.yaml'], /has no swept variables: add sweep:/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-sweep-'));
    const f = path.join(dir, 'bad.suite.yaml');
    fs.writeFileSync(f, fs.readFileSync(path.join(EXAMPLES, 'induction-sweep.suite.yaml'), 'utf8').replace("{repeat(n, 'the ')}{A}", "{repeat(n, the)}{A}"));
    const line = fs.readFileSync(f, 'utf8').split('\n').findIndex((l) => l.includes('{repeat(n, the)}')) + 1;
    bad([f, '--model', path.join(EXAMPLES, 'induction-gpt2.onnx')], new RegExp(`bad\\.suite\\.yaml:${line}:\\d+: error: \\{repeat\\(n, the\\)\\} is malformed`));
    // Padding past the model's context: the template's line says so.
    fs.writeFileSync(f, fs.readFileSync(path.join(EXAMPLES, 'induction-sweep.suite.yaml'), 'utf8').replace('40, 48]', '40, 48, 60]'));
    bad([f, '--model', path.join(EXAMPLES, 'induction-gpt2.onnx')], /bad\.suite\.yaml:\d+:\d+: error: .*(context|longer|tokens)/);
  });
});

describe('canary threshold checks through circuitlens canary', () => {
  test('the passing example passes', () => {
    const r = cli(['canary', path.join(FIXTURES, 'sweep', 'threshold-pass.canary.yaml')]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /✓ induction survives 10 tokens of padding {2}— {2}n\* 11\.5 \(accuracy falls below 0\.5 between n=10 and n=12\) satisfies >= 10/);
    assert.match(r.stdout, /3 passed, 0 failed/);
  });

  test('the failing example fails at its line (exit 1)', () => {
    const file = path.join(FIXTURES, 'sweep', 'threshold-fail.canary.yaml');
    const line = fs.readFileSync(file, 'utf8').split('\n').findIndex((l) => l.includes('- name: accuracy holds past')) + 1;
    const r = cli(['canary', file, '--json']);
    assert.equal(r.code, 1, r.stderr);
    const check = JSON.parse(r.stdout).canaries[0].checks[0];
    assert.equal(check.status, 'failed');
    assert.equal(check.line, line);
    assert.equal(check.actual, 11.5);
    assert.equal(check.expected, 'n* (accuracy crosses 0.5) >= 12');
    assert.match(check.message, /n\* 11\.5 .* is not >= 12/);
  });
});
