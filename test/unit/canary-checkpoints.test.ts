// The canary keys for checks across checkpoints (core/formats/canary.ts): `faithfulness_drop` with `circuit` and
// `baseline`, `jaccard` with `circuit`; each misuse reported at its line.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { canaryFileRefs, parseCanary } from '../../core/formats/canary';
import type { Diagnostic } from '../../core/formats/diagnostics';
import { jaccard } from '../../core/analysis/compare/compare';

const at = (ds: Diagnostic[]) => ds.map((d) => `${d.line}:${d.col} ${d.severity}: ${d.message}`);
const canary = (checks: string[]) => parseCanary('c.canary.yaml', ['model: later.onnx', 'suite: s.suite.yaml', 'checks:', ...checks].join('\n'));

describe('canary checks across checkpoints', () => {
  test('faithfulness_drop and jaccard parse with their circuit and baseline', () => {
    const { canary: c, diagnostics } = canary([
      '  - name: drop',
      '    circuit: c.circuit.json',
      '    baseline: earlier.onnx',
      '    metric: accuracy',
      '    faithfulness_drop: "<= 0.05"',
      '  - name: overlap',
      '    circuit: c.circuit.json',
      '    jaccard: ">= 0.8"',
    ]);
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(c!.checks.map((x) => [x.name, x.line, x.assertion.quantity, x.circuit, x.baseline, x.metric]), [
      ['drop', 4, 'faithfulness_drop', 'c.circuit.json', 'earlier.onnx', 'accuracy'],
      ['overlap', 9, 'jaccard', 'c.circuit.json', undefined, undefined],
    ]);
    assert.deepEqual(c!.checks.map((x) => (x.assertion.quantity === 'top1' ? '' : x.assertion.bound.text)), ['<= 0.05', '>= 0.8']);
  });

  test('the files a canary reads include its baseline model and related circuit (a change to them re-runs it)', () => {
    const { canary: c, diagnostics } = canary([
      '  - name: drop',
      '    circuit: c.circuit.json',
      '    baseline: earlier.onnx',
      '    faithfulness_drop: "<= 0.05"',
      '  - name: overlap',
      '    circuit: c.circuit.json',
      '    relate: other.circuit.json',
      '    jaccard: ">= 0.5"',
    ]);
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(canaryFileRefs(c!), [
      { ref: 'later.onnx', kind: 'model' }, { ref: 's.suite.yaml', kind: 'suite' }, { ref: 'earlier.onnx', kind: 'model' },
      { ref: 'c.circuit.json', kind: 'circuit' }, { ref: 'other.circuit.json', kind: 'circuit' },
    ]);
  });

  test('a missing circuit or baseline, and a baseline where it means nothing, are errors at their lines', () => {
    const { canary: c, diagnostics } = canary([
      '  - name: no baseline',
      '    circuit: c.circuit.json',
      '    faithfulness_drop: "<= 0.05"',
      '  - name: no circuit',
      '    baseline: earlier.onnx',
      '    faithfulness_drop: "<= 0.05"',
      '  - name: jaccard alone',
      '    jaccard: ">= 0.8"',
      '  - name: baseline unused',
      '    baseline: earlier.onnx',
      '    accuracy: ">= 0.9"',
      '  - name: two',
      '    circuit: c.circuit.json',
      '    jaccard: ">= 0.8"',
      '    faithfulness: ">= 0.8"',
    ]);
    assert.equal(c, undefined);
    assert.deepEqual(at(diagnostics), [
      '6:5 error: faithfulness_drop is measured from a baseline model: add baseline: path/to/earlier.onnx',
      '9:5 error: faithfulness_drop is measured for a circuit: add circuit: path/to/file.circuit.json',
      '11:5 error: jaccard is measured for a circuit: add circuit: path/to/file.circuit.json',
      '13:5 error: baseline is the model a faithfulness_drop is measured from; accuracy does not use it',
      '15:5 error: check "two" has 2 assertions (jaccard, faithfulness); write one check per assertion',
    ]);
  });

  test('the schema checks the new bounds', () => {
    const { diagnostics } = canary(['  - name: bad', '    circuit: c.circuit.json', '    jaccard: "most"']);
    assert.match(at(diagnostics)[0]!, /^6:14 error: checks\[1\]\.jaccard "most" is malformed/);
  });

  test('jaccard of member lists', () => {
    assert.equal(jaccard(['a0.h1', 'm0'], ['m0', 'm1']), 1 / 3);
    assert.equal(jaccard([], []), 1);
    assert.equal(jaccard(['m0'], []), 0);
  });
});
