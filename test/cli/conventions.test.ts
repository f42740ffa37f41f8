// What every command shares (DESIGN §6, §7): --help, no silent overwrite of an output file, a stderr without
// onnxruntime's own log lines, text output that shortens long prompts while --json keeps them whole.
import { before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXAMPLES, FIXTURES, ROOT } from '../helpers';
import { cli } from './run-cli';

const COMMANDS = ['info', 'trace', 'run', 'canary', 'attribute', 'discover', 'verify', 'diff', 'export', 'import', 'bisect', 'protect', 'sweep', 'compare', 'redundancy', 'relate', 'attention', 'prune', 'sensitivity', 'worker'];
const SUITE = path.join(EXAMPLES, 'induction.suite.yaml');
const CIRCUIT = path.join(EXAMPLES, 'induction-gpt2.circuit.json');
const GPT2 = path.join(EXAMPLES, 'induction-gpt2.onnx');
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[/;

describe('circuitlens <command> --help', () => {
  for (const cmd of COMMANDS) {
    for (const flag of ['--help', '-h']) {
      test(`${cmd} ${flag} prints its usage, options and --json output, exit 0`, () => {
        const r = cli([cmd, flag]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stderr, '');
        assert.match(r.stdout, new RegExp(`^usage: circuitlens ${cmd}\\b`));
        assert.match(r.stdout, /\noptions:\n/);
        assert.match(r.stdout, /\n--json: /);
      });
    }
  }

  test('--help wins over other arguments, even ones that would fail', () => {
    const r = cli(['discover', 'no-such.suite.yaml', '--bogus', '--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^usage: circuitlens discover SUITE --out FILE\.circuit\.json/);
  });

  test('circuitlens --help lists every command', () => {
    const r = cli(['--help']);
    assert.equal(r.code, 0);
    for (const cmd of COMMANDS) assert.match(r.stdout, new RegExp(`\\n  ${cmd}\\b`));
  });

  test('every command that offers --broker offers --model-url too, and both worker texts name it', () => {
    const main = cli(['--help']).stdout;
    const workerLine = main.slice(main.indexOf('\n  worker '), main.indexOf('\n\n', main.indexOf('\n  worker ')));
    const worker = cli(['worker', '--help']).stdout;
    const brokered = COMMANDS.filter((cmd) => cmd !== 'worker' && /\n {2}--broker URL/.test(cli([cmd, '--help']).stdout));
    assert.deepEqual(brokered, ['attribute', 'discover', 'verify', 'sweep', 'redundancy', 'prune', 'sensitivity']);
    for (const cmd of brokered) {
      assert.match(cli([cmd, '--help']).stdout, /\n {2}--model-url URL/, `${cmd} --help`);
      assert.match(workerLine, new RegExp(`\\b${cmd}\\b`), `circuitlens --help, the worker line: ${cmd}`);
      assert.match(worker, new RegExp(`\\b${cmd}\\b`), `worker --help: ${cmd}`);
    }
  });
});

describe('--out onto an existing file', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-out-'));
  const existing = (name: string) => {
    const p = path.join(tmp, name);
    fs.writeFileSync(p, `keep me: ${name}\n`);
    return p;
  };
  const eapIg = path.join(tmp, 'source.eap-ig.json');
  before(() => assert.equal(cli(['export', CIRCUIT, '--format', 'eap-ig', '--out', eapIg]).code, 0));

  const cases: { cmd: string; file: string; args: (out: string) => string[] }[] = [
    { cmd: 'attribute', file: 'scores.json', args: (out) => ['attribute', SUITE, '--out', out] },
    { cmd: 'discover', file: 'found.circuit.json', args: (out) => ['discover', SUITE, '--out', out] },
    { cmd: 'export', file: 'graph.json', args: (out) => ['export', CIRCUIT, '--format', 'eap-ig', '--out', out] },
    { cmd: 'import', file: 'back.circuit.json', args: (out) => ['import', eapIg, '--format', 'eap-ig', '--out', out] },
    { cmd: 'canary', file: 'report.xml', args: (out) => ['canary', path.join(EXAMPLES, 'induction-gpt2.canary.yaml'), '--reporter', 'junit', '--output', out] },
    { cmd: 'protect', file: 'mask.safetensors', args: (out) => ['protect', CIRCUIT, '--out', out] },
    { cmd: 'redundancy', file: 'pairs.json', args: (out) => ['redundancy', SUITE, '--top', '3', '--out', out] },
    { cmd: 'relate', file: 'relate.json', args: (out) => ['relate', CIRCUIT, path.join(EXAMPLES, 'induction-llama.circuit.json'), '--out', out] },
    { cmd: 'prune', file: 'pruned.onnx', args: (out) => ['prune', SUITE, '--sparsity', '0.5', '--out', out] },
  ];
  for (const c of cases) {
    test(`${c.cmd}: refused without --force (exit 2, file unchanged), replaced with --force`, () => {
      const out = existing(c.file);
      const before = fs.readFileSync(out);
      const r = cli(c.args(out));
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, `circuitlens ${c.cmd}: ${out} exists; pass --force to replace it\n`);
      assert.ok(fs.readFileSync(out).equals(before), 'the file is unchanged byte for byte');

      const f = cli([...c.args(out), '--force']);
      assert.equal(f.code, 0, f.stderr);
      assert.notEqual(fs.readFileSync(out, 'utf8'), before.toString());
      assert.deepEqual(fs.readdirSync(tmp).filter((n) => n.endsWith('.tmp')), [], 'no temporary file left');
    });
  }

  test('the message names the file as given, relative to the working folder', () => {
    fs.mkdirSync(path.join(tmp, 'demo-output'), { recursive: true });
    fs.writeFileSync(path.join(tmp, 'demo-output', 'x.circuit.json'), '{}\n');
    const r = cli(['discover', SUITE, '--out', 'demo-output/x.circuit.json'], tmp);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'circuitlens discover: demo-output/x.circuit.json exists; pass --force to replace it\n');
  });

  test('npm run demo passes --force, so the README\'s first command can be run again', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.match(pkg.scripts.demo!, /discover .* --out demo-output\/induction-gpt2\.circuit\.json --force/);
  });
});

describe('stderr carries no onnxruntime log lines', () => {
  // The gradient graphs of the zoo's Llama and GPT-NeoX hold constants onnxruntime drops as unused, which it
  // reports as warnings (in terminal colours) unless sessions log errors only.
  for (const family of ['llama', 'gpt_neox']) {
    test(`attribute --method gradient on the zoo's ${family}`, () => {
      const r = cli(['attribute', path.join(FIXTURES, 'zoo', family, 'induction.suite.yaml'), '--method', 'gradient', '--json']);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, ANSI);
      assert.doesNotMatch(r.stderr, /onnxruntime|W:onnx/);
    });
  }

  test('info, trace and run on the demo model', () => {
    for (const args of [['info', GPT2], ['trace', GPT2, '--prompt', 'Mary walked Mary', '--hooks', '*'], ['run', SUITE]]) {
      const r = cli(args);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, '', args.join(' '));
    }
  });
});

describe('long prompts in text output', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-long-'));
  const text = 'Mary walked garden red apple dog Mary walked garden red apple dog Mary walked garden red';
  const suite = path.join(tmp, 'long.suite.yaml');
  fs.writeFileSync(suite, `name: long\nmodel: ${GPT2}\nmetric: logit_diff\nprompts:\n  - text: "${text}"\n    answer: " apple"\n    foil: " Mary"\n`);

  test('run shortens them to 60 characters with …; --json keeps them whole', () => {
    assert.ok(text.length > 60);
    const r = cli(['run', suite]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(text), r.stdout);
    assert.ok(r.stdout.includes(JSON.stringify(`${text.slice(0, 59)}…`)), r.stdout);
    const j = cli(['run', suite, '--json']);
    assert.equal(j.code, 0, j.stderr);
    assert.equal(JSON.parse(j.stdout).prompts[0].text, text);
  });
});

describe('npm run bench without PyTorch', () => {
  test('says what to install and exits 2 (no stack trace)', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bench', 'run.js'), '--only', 'peak'], {
      cwd: ROOT, encoding: 'utf8', env: { ...process.env, BENCH_PYTHON: path.join(os.tmpdir(), 'no-such-python') },
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /peak needs PyTorch/);
    assert.match(r.stderr, /apt-get install python3-torch python3-onnx libopenblas0-openmp/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });
});
