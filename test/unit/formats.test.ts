import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { parseCanary } from '../../core/formats/canary';
import { parseCircuit } from '../../core/formats/circuit';
import { parseSuite } from '../../core/formats/suite';
import type { Diagnostic } from '../../core/formats/diagnostics';

const at = (ds: Diagnostic[]) => ds.map((d) => `${d.line}:${d.col} ${d.severity}: ${d.message}`);

describe('suite files', () => {
  test('a valid suite with prompts and templates expands in order', () => {
    const { suite, diagnostics } = parseSuite('s.suite.yaml', [
      'name: demo',
      'metric: accuracy',
      'prompts:',
      '  - text: "a b a"',
      '    answer: " b"',
      '    tags: [task]',
      '  - ids: [1, 2, 1]',
      '    answer: 2',
      'templates:',
      '  - pattern: "{X} {Y} {X}"',
      '    answer: "{Y}"',
      '    variables: {X: [p, q], Y: [r, s, t]}',
      '    tags: [control]',
    ].join('\n'));
    assert.deepEqual(diagnostics, []);
    assert.equal(suite!.prompts.length, 2 + 6);
    assert.equal(suite!.metric, 'accuracy');
    assert.equal(suite!.ablation, 'mean');
    assert.deepEqual(suite!.prompts.slice(2).map((p) => `${p.text}→${p.answer}`), ['p r p→r', 'p s p→s', 'p t p→t', 'q r q→r', 'q s q→s', 'q t q→t']);
    assert.deepEqual(suite!.prompts[7]!.tags, ['control']);
  });

  test('an unknown key is reported at the key, with the allowed keys', () => {
    const { suite, diagnostics } = parseSuite('s.suite.yaml', 'name: x\nmetric: prob\nprompts:\n  - text: "a b"\n    anwser: " c"\n');
    assert.equal(suite, undefined);
    assert.deepEqual(at(diagnostics), [
      '4:5 error: missing required key "answer"',
      '5:5 error: unknown key "anwser" (expected one of: text, ids, answer, foil, corrupted, tags)',
    ]);
  });

  test('a YAML syntax error points at its line', () => {
    const { diagnostics } = parseSuite('s.suite.yaml', 'name: x\nprompts:\n  - text: "unclosed\n    answer: b\n');
    assert.equal(diagnostics[0]!.severity, 'error');
    assert.equal(diagnostics[0]!.message, 'YAML syntax: unclosed quote: the string that starts here never ends');
    assert.deepEqual([diagnostics[0]!.line, diagnostics[0]!.col], [3, 11]);
  });

  test('a bad enum value names the choices at its line', () => {
    const { diagnostics } = parseSuite('s.suite.yaml', 'name: x\nmetric: logitdiff\nprompts:\n  - {text: a, answer: b, foil: c}\n');
    assert.deepEqual(at(diagnostics), ['2:9 error: metric must be one of "logit_diff", "prob", "accuracy", "kl"']);
  });

  test('logit_diff without a foil, and a template placeholder without a variable', () => {
    const { diagnostics } = parseSuite('s.suite.yaml', [
      'name: x',
      'prompts:',
      '  - text: "a b"',
      '    answer: " c"',
      'templates:',
      '  - pattern: "{A} {B}"',
      '    answer: "{A}"',
      '    foil: "{B}"',
      '    variables: {A: [x]}',
    ].join('\n'));
    assert.deepEqual(at(diagnostics), [
      '6:14 error: placeholder {B} has no entry under variables (variables: A)',
      '8:11 error: placeholder {B} has no entry under variables (variables: A)',
    ]);
    const r2 = parseSuite('s.suite.yaml', 'name: x\nprompts:\n  - text: "a b"\n    answer: " c"\n');
    assert.deepEqual(at(r2.diagnostics), ['3:5 error: metric logit_diff needs a foil for every prompt (or set metric: prob, accuracy or kl)']);
  });

  test('a prompt with both text and ids, or neither', () => {
    const { diagnostics } = parseSuite('s.suite.yaml', 'name: x\nmetric: prob\nprompts:\n  - {text: a, ids: [1], answer: b}\n  - {answer: b}\n');
    assert.deepEqual(at(diagnostics), ['4:5 error: prompts[1] needs exactly one of: text, ids', '5:5 error: prompts[2] needs exactly one of: text, ids']);
  });
});

describe('canary files', () => {
  test('each check keeps its own line and one assertion', () => {
    const { canary, diagnostics } = parseCanary('c.canary.yaml', [
      'model: m.onnx',
      'suite: s.suite.yaml',
      'checks:',
      '  - name: acc',
      '    accuracy: ">= 0.95"',
      '  - name: faithful',
      '    circuit: c.circuit.json',
      '    faithfulness: ">= 0.8"',
      '  - name: heads',
      '    ablate: [a1.h2]',
      '    accuracy: "<= 0.3"',
      '  - name: top',
      '    prompt: "a b a"',
      '    top1: " b"',
    ].join('\n'));
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(canary!.checks.map((c) => [c.name, c.line, c.assertion.quantity]), [['acc', 4, 'accuracy'], ['faithful', 6, 'faithfulness'], ['heads', 9, 'accuracy'], ['top', 12, 'top1']]);
    assert.deepEqual(canary!.checks[2]!.ablate, ['a1.h2']);
  });

  test('mistakes are reported at their lines', () => {
    const { canary, diagnostics } = parseCanary('c.canary.yaml', [
      'model: m.onnx',
      'suite: s.suite.yaml',
      'checks:',
      '  - name: two',
      '    accuracy: ">= 0.9"',
      '    prob: ">= 0.5"',
      '  - name: no circuit',
      '    faithfulness: ">= 0.8"',
      '  - name: bad bound',
      '    accuracy: "at least 0.9"',
      '  - name: bad node',
      '    ablate: [head2]',
      '    accuracy: "<= 0.3"',
    ].join('\n'));
    assert.equal(canary, undefined);
    assert.deepEqual(at(diagnostics), [
      '10:15 error: checks[3].accuracy "at least 0.9" is malformed (A comparison such as ">= 0.8".)',
      '12:14 error: checks[4].ablate[1] "head2" is malformed',
    ]);
    const r2 = parseCanary('c.canary.yaml', 'model: m.onnx\nsuite: s.suite.yaml\nchecks:\n  - name: two\n    accuracy: ">= 0.9"\n    prob: ">= 0.5"\n  - name: no circuit\n    faithfulness: ">= 0.8"\n');
    assert.deepEqual(at(r2.diagnostics), [
      '4:5 error: check "two" has 2 assertions (accuracy, prob); write one check per assertion',
      '8:5 error: faithfulness is measured for a circuit: add circuit: path/to/file.circuit.json',
    ]);
  });
});

describe('circuit files', () => {
  test('a newer schemaVersion is refused at its line', () => {
    const { circuit, diagnostics } = parseCircuit('x.circuit.json', '{\n  "schemaVersion": 2,\n  "name": "x",\n  "nodes": ["a0.h1"],\n  "hypergraph": {}\n}\n');
    assert.equal(circuit, undefined);
    assert.deepEqual(at(diagnostics), ['2:20 error: written by a newer CircuitLens (schemaVersion 2); this version reads schemaVersion 1. Update CircuitLens to open it.']);
  });

  test('malformed node ids are reported at the node', () => {
    const { diagnostics } = parseCircuit('x.circuit.json', '{\n  "schemaVersion": 1,\n  "name": "x",\n  "nodes": [\n    "a0.h1",\n    "attn0"\n  ]\n}\n');
    assert.deepEqual(at(diagnostics), ['6:5 error: nodes[2] "attn0" is malformed']);
  });

  test('a valid circuit parses and keeps unknown keys', () => {
    const { circuit } = parseCircuit('x.circuit.json', JSON.stringify({ schemaVersion: 1, name: 'x', nodes: ['a0.h1', 'm0'], custom: 7 }));
    assert.deepEqual(circuit!.nodes, ['a0.h1', 'm0']);
    assert.equal(circuit!['custom'], 7);
  });
});

test('referenceWeightsInFile: large initializers point at their bytes in the model file; nothing else keeps the file buffer', async () => {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const { decodeModel, encodeModel, referenceWeightsInFile, EXTERNAL, externalLocations } = await import('../../core/onnx/model');
  const file = fs.readFileSync(path.join((await import('../helpers')).EXAMPLES, 'induction-gpt2.onnx'));
  const original = decodeModel(file, 'x');
  const before = new Map(original.graph!.initializer.map((t) => [t.name, Uint8Array.from(t.rawData ?? [])]));
  const model = decodeModel(file, 'x');
  const moved = referenceWeightsInFile(model, file, 'induction-gpt2.onnx', 4096);
  assert.ok(moved > 0.8 * file.length, `moved ${moved} of ${file.length} bytes`);
  assert.deepEqual(externalLocations(model), ['induction-gpt2.onnx']);
  let external = 0;
  for (const t of model.graph!.initializer) {
    if (t.dataLocation === EXTERNAL) {
      external++;
      const get = (k: string) => Number(t.externalData!.find((e) => e.key === k)!.value);
      assert.deepEqual(file.subarray(get('offset'), get('offset') + get('length')), Buffer.from(before.get(t.name)!), t.name);
    } else if (t.rawData?.length) {
      assert.notEqual(t.rawData.buffer, file.buffer, `${t.name} keeps a view of the file`);
      assert.deepEqual(Uint8Array.from(t.rawData), before.get(t.name));
    }
  }
  assert.ok(external >= 10);
  assert.ok(encodeModel(model).length < 0.2 * file.length, 'the graph encodes without the weights');
});
