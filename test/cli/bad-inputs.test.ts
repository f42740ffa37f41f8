// The bad-input corpus (test/fixtures/bad/): every file gets one clear message, with file:line:col where there
// is one, exit 2, and no stack trace.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { sha256File } from '../../core/nodejs/workspace';
import { EXAMPLES, ROOT } from '../helpers';
import { cli, type CliResult } from './run-cli';

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

/**
 * `circuitlens ARGS` in `cwd` while `fifo` (a named pipe standing in for one of its input files) holds it at the
 * moment it opens that file: then `meanwhile()` runs, and the file's `content` is handed over. Deterministic: no
 * sleeps, no race with a fast machine.
 */
async function cliPausedAt(args: string[], cwd: string, fifo: string, content: string, meanwhile: () => void): Promise<CliResult> {
  execFileSync('mkfifo', [fifo]);
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'circuitlens.js'), ...args], { cwd });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => { stdout += b; });
  child.stderr.on('data', (b: Buffer) => { stderr += b; });
  const exited = new Promise<number>((r) => child.once('exit', (code) => r(code ?? -1)));
  // Opening a pipe for writing waits for its reader: the CLI has reached the file.
  const opening = fs.promises.open(fifo, 'w');
  const writer = await Promise.race([opening, exited.then(() => undefined)]);
  if (writer) {
    meanwhile();
    await writer.writeFile(content);
    await writer.close();
  } else {
    // It ended before reading the file: a reader of our own lets the pending open finish.
    const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    await (await opening).close();
    fs.closeSync(reader);
  }
  return { code: await exited, stdout, stderr };
}

/** A folder with a copy of the gpt2 demo model, its tokenizer, the suite and the circuit, its sha256 recorded. */
async function demoCopy(): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-changed-'));
  for (const f of ['induction-gpt2.onnx', 'tokenizer.json', 'induction.suite.yaml', 'induction-gpt2.canary.yaml']) fs.copyFileSync(path.join(EXAMPLES, f), path.join(dir, f));
  const circuit = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'induction-gpt2.circuit.json'), 'utf8'));
  circuit.model.sha256 = await sha256File(path.join(EXAMPLES, 'induction-gpt2.onnx'));
  fs.writeFileSync(path.join(dir, 'induction-gpt2.circuit.json'), JSON.stringify(circuit, null, 2));
  return dir;
}

const truncateModel = (dir: string) => () => fs.writeFileSync(path.join(dir, 'induction-gpt2.onnx'), fs.readFileSync(path.join(EXAMPLES, 'induction-gpt2.onnx')).subarray(0, 4096));

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

  // A model changed under a running canary. The CLI loads a model once per canary file: a file's checks all run on
  // the model as it was when that file started, and the next file loads it again.
  test('model replaced by a broken file between two canary files of one run: exit 2, the second file says why, complete report', async () => {
    const dir = await demoCopy();
    try {
      const canary = fs.readFileSync(path.join(dir, 'induction-gpt2.canary.yaml'), 'utf8');
      fs.renameSync(path.join(dir, 'induction-gpt2.canary.yaml'), path.join(dir, 'a.canary.yaml'));
      const r = await cliPausedAt(['canary', '.', '--reporter', 'junit', '--output', 'report.xml'], dir, path.join(dir, 'b.canary.yaml'), canary, truncateModel(dir));
      assert.equal(r.code, 2, `exit ${r.code}\n${r.stderr}`);
      assert.equal(r.stderr, 'circuitlens canary: b.canary.yaml could not run (see the report)\n');
      assert.match(r.stdout, /a\.canary\.yaml {2}\(model induction-gpt2\.onnx\)\n(  ✓ .*\n){7}/);
      assert.match(r.stdout, /b\.canary\.yaml:4:8: error: \S*induction-gpt2\.onnx is not a readable ONNX model \(protobuf decoding failed: .*\)\. The file may be truncated/);
      assert.doesNotMatch(r.stdout + r.stderr, /\n\s+at |internal error/);
      // The report is written whole, once, at the end.
      const xml = fs.readFileSync(path.join(dir, 'report.xml'), 'utf8');
      assert.equal(XMLValidator.validate(xml), true);
      const suites = [new XMLParser({ ignoreAttributes: false }).parse(xml).testsuites.testsuite].flat() as Record<string, unknown>[];
      assert.deepEqual(suites.map((x) => [x['@_name'], x['@_tests'], x['@_failures'], x['@_errors']]), [['a.canary.yaml', '7', '0', '0'], ['b.canary.yaml', '7', '0', '7']]);
      assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), []);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const [what, change] of [['replaced by a broken file', truncateModel], ['deleted', (dir: string) => () => fs.rmSync(path.join(dir, 'induction-gpt2.onnx'))]] as const) {
    test(`model ${what} while a canary file runs: its checks run on the model loaded; the one that needs the file's hash says it changed`, async () => {
      const dir = await demoCopy();
      try {
        const circuit = path.join(dir, 'induction-gpt2.circuit.json');
        const content = fs.readFileSync(circuit, 'utf8');
        fs.rmSync(circuit);
        fs.writeFileSync(path.join(dir, 'c.canary.yaml'), [
          'model: induction-gpt2.onnx', 'suite: induction.suite.yaml', 'checks:',
          '  - name: continues repeated text', '    tags: [task]', '    accuracy: ">= 0.95"',
          '  - name: induction circuit is faithful', '    tags: [task]', '    circuit: induction-gpt2.circuit.json', '    faithfulness: ">= 0.8"',
          '  - name: next token', '    prompt: "Mary walked garden red apple dog Mary walked garden red"', '    top1: " apple"', ''].join('\n'));
        fs.rmSync(path.join(dir, 'induction-gpt2.canary.yaml'));
        // Paused where the circuit check reads its circuit: the model is loaded and the first check has run.
        const r = await cliPausedAt(['canary', 'c.canary.yaml', '--json'], dir, circuit, content, change(dir));
        // A check that could not run fails the run (exit 1, as for a missing circuit file), with its reason.
        assert.equal(r.code, 1, `exit ${r.code}\n${r.stderr}`);
        assert.equal(r.stderr, '');
        const report = JSON.parse(r.stdout);
        const checks = report.canaries[0].checks as { name: string; status: string; message: string; actual?: unknown }[];
        assert.deepEqual(checks.map((c) => c.status), ['passed', 'errored', 'passed']);
        assert.equal(checks[1]!.message, 'induction-gpt2.onnx changed on disk after it was loaded; run again to use the file as it is now');
        assert.equal(checks[2]!.actual, 'apple', 'the last check ran on the model loaded at the start');
        assert.deepEqual(report.canaries[0].diagnostics.map((d: { line: number; severity: string }) => [d.line, d.severity]), [[7, 'error']]);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
