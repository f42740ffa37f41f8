// `circuitlens compare` and the canary checks across checkpoints, through the built CLI: the demo model against
// its fine-tuned checkpoint (examples/checkpoints/), GPT-2 against Llama refused, and the canaries of
// test/fixtures/checkpoints/ passing and failing at their lines with numbers equal to compare's.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FIXTURES } from '../helpers';
import { cli } from './run-cli';

const A = 'examples/induction-gpt2.onnx';
const B = 'examples/checkpoints/induction-gpt2-finetuned.onnx';
const SUITE = 'examples/induction.suite.yaml';
const CIRCUIT = 'examples/induction-gpt2.circuit.json';
const CANARIES = path.join(FIXTURES, 'checkpoints');

function lineOf(file: string, needle: string): number {
  return fs.readFileSync(file, 'utf8').split('\n').findIndex((l) => l.includes(needle)) + 1;
}

interface CheckJson { name: string; status: string; message: string; actual: number; line: number }

describe('circuitlens compare', () => {
  let json: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

  test('--json: DESIGN §7 keys, progress on stderr only', () => {
    const r = cli(['compare', A, B, '--suite', SUITE, '--circuit', CIRCUIT, '--json']);
    assert.equal(r.code, 0, r.stderr);
    json = JSON.parse(r.stdout);
    for (const k of ['a', 'b', 'nodes', 'circuit']) assert.ok(k in json, k);
    assert.equal(json.a.model, A);
    assert.equal(json.b.model, B);
    for (const side of [json.a, json.b]) {
      for (const k of ['metric', 'accuracy', 'logitDiff']) assert.ok(k in side.task, k);
      assert.equal(side.task.prompts, 81);
      assert.equal(side.control.prompts, 17);
    }
    assert.equal(json.nodes.length, 10);
    for (const n of json.nodes) {
      assert.deepEqual(Object.keys(n), ['id', 'scoreA', 'scoreB', 'delta']);
      assert.ok(Math.abs(n.delta - (n.scoreB - n.scoreA)) < 2e-6);
    }
    for (const k of ['faithfulnessA', 'faithfulnessB', 'jaccard', 'entered', 'left', 'faithfulnessByMetricA', 'faithfulnessByMetricB', 'rediscovered']) assert.ok(k in json.circuit, k);
    assert.ok(json.b.task.accuracy < json.a.task.accuracy);
    assert.ok(json.circuit.faithfulnessB < json.circuit.faithfulnessA);
    assert.equal(json.circuit.rediscovered.optionsFrom, 'defaults');
    assert.match(r.stderr, /circuitlens compare: A: attribution/);
    assert.match(r.stderr, /re-discovering it on B/);
  });

  test('text: the metric table, the largest deltas, the circuit from A to B', () => {
    const r = cli(['compare', A, B, '--suite', SUITE, '--circuit', CIRCUIT, '--top', '3']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /task accuracy\s+1\.000\s+0\.\d{3}\s+-0\.\d{3}/);
    const listed = r.stdout.split('\n').filter((l) => /^\s{4}(a\d\.h\d|m\d)\s/.test(l));
    assert.equal(listed.length, 3);
    assert.match(r.stdout, /faithfulness \(logit_diff\) 0\.\d{3} → 0\.\d{3} \(drop 0\.\d{3}\)/);
    assert.match(r.stdout, /Jaccard of the circuit with B's: [01]\.\d{3}\n\s+entered \(in B's, not in the circuit\): m1\n\s+left \(in the circuit, not in B's\): none\n/);
  });

  test('GPT-2 against Llama: exit 2, what differs', () => {
    const r = cli(['compare', A, 'examples/induction-llama.onnx', '--suite', SUITE, '--json']);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^circuitlens compare: examples\/induction-gpt2\.onnx and examples\/induction-llama\.onnx are not two checkpoints of one architecture \(architecture gpt2 vs llama; hooks only in examples\/induction-gpt2\.onnx: hook_pos_embed\)/);
  });

  test('--help, and usage mistakes', () => {
    for (const flag of ['--help', '-h']) {
      const h = cli(['compare', flag]);
      assert.equal(h.code, 0);
      assert.equal(h.stderr, '');
      assert.match(h.stdout, /^usage: circuitlens compare A\.onnx B\.onnx --suite SUITE/);
      assert.match(h.stdout, /\noptions:\n/);
      assert.match(h.stdout, /\n--json: \{"a": \{"model", "task"/);
    }
    const one = cli(['compare', A, '--suite', SUITE]);
    assert.equal(one.code, 2);
    assert.match(one.stderr, /expected two model files/);
    const noSuite = cli(['compare', A, B]);
    assert.equal(noSuite.code, 2);
    assert.match(noSuite.stderr, /--suite SUITE is required/);
    const main = cli(['--help']);
    assert.match(main.stdout, /\n  compare A B --suite S/);
  });

  test('canary: faithfulness_drop and jaccard pass, with compare\'s numbers and both models named', () => {
    const r = cli(['canary', path.join(CANARIES, 'passing.canary.yaml'), '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const checks = JSON.parse(r.stdout).canaries[0].checks as CheckJson[];
    assert.deepEqual(checks.map((c) => c.status), ['passed', 'passed', 'passed']);
    const [drop, byAccuracy, overlap] = checks as [CheckJson, CheckJson, CheckJson];
    assert.ok(json, 'the --json test ran first');
    assert.ok(Math.abs(drop.actual - json.circuit.drop) < 1e-5, `${drop.actual} vs compare's ${json.circuit.drop}`);
    assert.ok(Math.abs(byAccuracy.actual - (json.circuit.faithfulnessByMetricA.accuracy - json.circuit.faithfulnessByMetricB.accuracy)) < 1e-5);
    assert.ok(Math.abs(overlap.actual - json.circuit.jaccard) < 1e-5);
    assert.match(drop.message, /from the baseline examples\/induction-gpt2\.onnx \(0\.\d+\) to examples\/checkpoints\/induction-gpt2-finetuned\.onnx \(0\.\d+\) satisfies <= 0\.1/);
    assert.match(overlap.message, /re-discovered on examples\/checkpoints\/induction-gpt2-finetuned\.onnx/);
  });

  test('canary: failing checks of each kind at their own lines (exit 1); the checkpoint against itself drops 0', () => {
    const file = path.join(CANARIES, 'failing.canary.yaml');
    const r = cli(['canary', file]);
    assert.equal(r.code, 1, r.stderr);
    const rel = 'test/fixtures/checkpoints/failing.canary.yaml';
    for (const name of ['circuit keeps its faithfulness', 'circuit keeps its KL faithfulness', 're-discovered circuit is the saved one']) {
      assert.match(r.stdout, new RegExp(`${rel.replace(/[./]/g, '\\$&')}:${lineOf(file, `name: ${name}`)}:5: error: check "${name}" failed: `));
    }
    assert.match(r.stdout, /faithfulness \(logit_diff\) drop 0\.\d+ from the baseline examples\/induction-gpt2\.onnx .* is not <= 0\.05/);
    assert.match(r.stdout, /jaccard 0\.\d+ of the circuit \(8 nodes\) with the one re-discovered on examples\/checkpoints\/induction-gpt2-finetuned\.onnx .* is not >= 0\.95; entered: /);
    assert.match(r.stdout, /✓ the checkpoint against itself .* drop 0 from the baseline/);
    assert.match(r.stdout, /1 passed, 3 failed/);
    const sarif = JSON.parse(cli(['canary', file, '--reporter', 'sarif']).stdout);
    assert.deepEqual(sarif.runs[0].results.map((x: any) => x.locations[0].physicalLocation.region.startLine), // eslint-disable-line @typescript-eslint/no-explicit-any
      ['circuit keeps its faithfulness', 'circuit keeps its KL faithfulness', 're-discovered circuit is the saved one'].map((n) => lineOf(file, `name: ${n}`)));
  });
});
