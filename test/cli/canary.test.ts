import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { EXAMPLES } from '../helpers';
import { cli } from './run-cli';

/** A copy of examples/ to break on purpose. */
function examplesCopy(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-canary-'));
  fs.cpSync(EXAMPLES, dir, { recursive: true });
  return dir;
}

function lineOf(file: string, needle: string): number {
  return fs.readFileSync(file, 'utf8').split('\n').findIndex((l) => l.includes(needle)) + 1;
}

describe('circuitlens canary', () => {
  test('the example canaries pass and the JUnit report is valid XML with every check', () => {
    const r = cli(['canary', 'examples', '--reporter', 'junit']);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.equal(XMLValidator.validate(r.stdout), true);
    const doc = new XMLParser({ ignoreAttributes: false }).parse(r.stdout);
    const suites = [doc.testsuites.testsuite].flat();
    assert.equal(suites.length, 2);
    assert.equal(doc.testsuites['@_failures'], '0');
    const cases = suites.flatMap((s: { testcase: unknown }) => [s.testcase].flat());
    assert.equal(cases.length, 14);
  });

  test('a deliberately failing check: exit 1, JUnit failure, SARIF result and text at its line', () => {
    const dir = examplesCopy();
    const canary = path.join(dir, 'induction-gpt2.canary.yaml');
    // Demand more faithfulness than the hand-picked circuit has (it keeps ~81 % of the logit difference).
    fs.writeFileSync(canary, fs.readFileSync(canary, 'utf8').replace('faithfulness: ">= 0.8"', 'faithfulness: ">= 0.99"'));
    const line = lineOf(canary, 'name: induction circuit is faithful');

    const junit = cli(['canary', canary, '--reporter', 'junit'], dir);
    assert.equal(junit.code, 1, junit.stderr);
    assert.equal(XMLValidator.validate(junit.stdout), true);
    const doc = new XMLParser({ ignoreAttributes: false }).parse(junit.stdout);
    const cases = [doc.testsuites.testsuite.testcase].flat() as Record<string, unknown>[];
    const failedCases = cases.filter((c) => c['failure']);
    assert.equal(failedCases.length, 1);
    assert.equal(failedCases[0]!['@_name'], 'induction circuit is faithful');
    assert.equal(failedCases[0]!['@_line'], String(line));
    assert.match((failedCases[0]!['failure'] as Record<string, string>)['@_message']!, /faithfulness \(logit_diff\) 0\.8\d* is not >= 0\.99/);

    const sarif = cli(['canary', canary, '--reporter', 'sarif'], dir);
    assert.equal(sarif.code, 1);
    const log = JSON.parse(sarif.stdout);
    assert.equal(log.version, '2.1.0');
    assert.equal(log.runs[0].tool.driver.name, 'CircuitLens');
    const results = log.runs[0].results;
    assert.equal(results.length, 1);
    assert.equal(results[0].ruleId, 'circuitlens/canary-check-failed');
    assert.ok(log.runs[0].tool.driver.rules.some((r: { id: string }) => r.id === results[0].ruleId));
    assert.equal(results[0].level, 'error');
    assert.equal(results[0].locations[0].physicalLocation.artifactLocation.uri, 'induction-gpt2.canary.yaml');
    assert.equal(results[0].locations[0].physicalLocation.region.startLine, line);
    assert.equal(results[0].locations[0].physicalLocation.region.startColumn, 5);

    const text = cli(['canary', canary], dir);
    assert.equal(text.code, 1);
    assert.match(text.stdout, new RegExp(`induction-gpt2\\.canary\\.yaml:${line}:5: error: check "induction circuit is faithful" failed`));
    assert.match(text.stdout, /6 passed, 1 failed/);
  });

  test('with no path, canary discovers **/*.canary.yaml under the current folder', () => {
    const dir = examplesCopy();
    const r = cli(['canary', '--json'], dir);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(j.canaries.map((c: { file: string }) => c.file).sort(), ['induction-gpt2.canary.yaml', 'induction-llama.canary.yaml']);
    assert.deepEqual(j.summary, { passed: 14, failed: 0, errored: 0, skipped: 0, fileErrors: 0 });
  });

  test('a YAML mistake in a canary is bad input (exit 2) reported at its line', () => {
    const dir = examplesCopy();
    const canary = path.join(dir, 'induction-llama.canary.yaml');
    fs.writeFileSync(canary, fs.readFileSync(canary, 'utf8').replace('    accuracy: ">= 0.95"', '    acuracy: ">= 0.95"'));
    const r = cli(['canary', canary], dir);
    assert.equal(r.code, 2);
    assert.match(r.stdout, new RegExp(`induction-llama\\.canary\\.yaml:${lineOf(canary, 'acuracy')}:5: error: unknown key "acuracy"`));
  });

  test('a circuit naming nodes the model lacks, and a circuit from another model file', () => {
    const dir = examplesCopy();
    const circuit = path.join(dir, 'induction-llama.circuit.json');
    const c = JSON.parse(fs.readFileSync(circuit, 'utf8'));
    c.nodes.push('a5.h1');
    fs.writeFileSync(circuit, JSON.stringify(c, null, 2));
    const r = cli(['canary', path.join(dir, 'induction-llama.canary.yaml')], dir);
    assert.equal(r.code, 1);
    assert.match(r.stdout, new RegExp(`induction-llama\\.circuit\\.json:${lineOf(circuit, '"a5.h1"')}:5: error: node "a5\\.h1" is not in this model`));
    assert.match(r.stdout, /could not run: the circuit names nodes the model does not have: a5\.h1/);

    c.nodes.pop();
    c.model.sha256 = 'f'.repeat(64);
    fs.writeFileSync(circuit, JSON.stringify(c, null, 2));
    const w = cli(['canary', path.join(dir, 'induction-llama.canary.yaml')], dir);
    assert.equal(w.code, 0, 'a hash mismatch is a warning, not a failure');
    assert.match(w.stdout, new RegExp(`induction-llama\\.circuit\\.json:${lineOf(circuit, '"sha256"')}:\\d+: warning: the circuit was found on a different model file`));
  });

  test('--output writes the report atomically and prints the text summary', () => {
    const dir = examplesCopy();
    const r = cli(['canary', '.', '--reporter', 'junit', '--output', 'reports/canary.xml'], dir);
    assert.equal(r.code, 0);
    assert.equal(XMLValidator.validate(fs.readFileSync(path.join(dir, 'reports', 'canary.xml'), 'utf8')), true);
    assert.match(r.stdout, /14 passed, 0 failed/);
    assert.deepEqual(fs.readdirSync(path.join(dir, 'reports')), ['canary.xml']);
  });
});

describe('circuitlens run', () => {
  test('--json prints DESIGN §6 keys and per-prompt values', () => {
    const r = cli(['run', 'examples/induction.suite.yaml', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    for (const k of ['metric', 'value', 'accuracy', 'logitDiff', 'prompts']) assert.ok(k in j, k);
    assert.equal(j.metric, 'logit_diff');
    assert.equal(j.prompts.length, 98);
    const task = j.prompts.filter((p: { tags: string[] }) => p.tags.includes('task'));
    assert.equal(task.filter((p: { correct: boolean }) => p.correct).length, task.length);
    assert.ok(Math.abs(j.value - j.prompts.reduce((s: number, p: { value: number }) => s + p.value, 0) / j.prompts.length) < 1e-9);
  });

  test('--ablate all layer-1 heads destroys induction (resample ablation)', () => {
    const r = cli(['run', 'examples/induction.suite.yaml', '--ablate', 'a1.h0,a1.h1,a1.h2,a1.h3', '--ablation', 'resample', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    const task = j.prompts.filter((p: { tags: string[] }) => p.tags.includes('task'));
    assert.equal(task.filter((p: { correct: boolean }) => p.correct).length, 0);
    assert.ok(j.kl > 1);
  });

  test('a suite with a multi-token answer is exit 2 at the answer line', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-run-'));
    const suite = path.join(dir, 'bad.suite.yaml');
    fs.writeFileSync(suite, `name: bad\nmodel: ${path.join(EXAMPLES, 'induction-gpt2.onnx')}\nmetric: prob\nprompts:\n  - text: "Mary went home Mary"\n    answer: " went home"\n`);
    const r = cli(['run', suite]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bad\.suite\.yaml:6:13: error: answer " went home" is 2 tokens \("went" \+ "home"\); it must be a single token/);
  });
});
