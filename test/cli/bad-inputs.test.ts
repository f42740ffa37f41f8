// The bad-input corpus (test/fixtures/bad/): every file gets one clear message, with file:line:col where there
// is one, exit 2, and no stack trace.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { cli } from './run-cli';

const BAD = 'test/fixtures/bad';
const GPT2 = 'examples/induction-gpt2.onnx';

const CASES: [string, string[], RegExp][] = [
  ['truncated ONNX', ['info', `${BAD}/truncated.onnx`], /truncated\.onnx is not a readable ONNX model \(protobuf decoding failed: .*\)\. The file may be truncated/],
  ['a CSV named .onnx', ['info', `${BAD}/spreadsheet.onnx`], /spreadsheet\.onnx is not a readable ONNX model/],
  ['YAML syntax error', ['run', `${BAD}/syntax.suite.yaml`, '--model', GPT2], /syntax\.suite\.yaml:4:11: error: YAML syntax: unclosed quote/],
  ['schema errors, each at its line', ['run', `${BAD}/schema.suite.yaml`, '--model', GPT2], /schema\.suite\.yaml:2:9: error: metric must be one of[\s\S]*schema\.suite\.yaml:7:5: error: unknown key "weight"/],
  ['multi-token answer', ['run', `${BAD}/multitoken.suite.yaml`], /multitoken\.suite\.yaml:6:13: error: answer " garden Mary" is 2 tokens \("garden" \+ "Mary"\)/],
  ['over-long prompt', ['run', `${BAD}/overlong.suite.yaml`], /overlong\.suite\.yaml:5:11: error: prompt is 80 tokens, longer than the model's context of 64 tokens/],
  ['circuit with unknown nodes', ['verify', `${BAD}/unknown-nodes.circuit.json`], /unknown-nodes\.circuit\.json:6:22: error: node "a7\.h3" is not in this model[\s\S]*:6:31: error: node "m9" is not in this model/],
  ['circuit from a newer CircuitLens', ['verify', `${BAD}/newer.circuit.json`], /newer\.circuit\.json:2:20: error: written by a newer CircuitLens \(schemaVersion 3\)/],
  ['model without a tokenizer given text', ['trace', 'test/fixtures/models/induction-llama-opset14.onnx', '--prompt', 'Mary'], /no tokenizer\.json beside it; pass token ids with --ids/],
];

describe('bad-input corpus', () => {
  for (const [name, args, re] of CASES) {
    test(name, () => {
      const r = cli(args);
      assert.equal(r.code, 2, `exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /\n\s+at |internal error/);
      assert.equal(r.stdout, '');
    });
  }

  test('canary files with mistakes: exit 2, the problem at its line in the report', () => {
    const a = cli(['canary', `${BAD}/bad-check.canary.yaml`]);
    assert.equal(a.code, 2);
    assert.match(a.stdout, /bad-check\.canary\.yaml:4:5: error: check "two assertions" has 2 assertions/);
    const b = cli(['canary', `${BAD}/missing-model.canary.yaml`]);
    assert.equal(b.code, 2);
    assert.match(b.stdout, /missing-model\.canary\.yaml:1:8: error: model file not found/);
  });
});
