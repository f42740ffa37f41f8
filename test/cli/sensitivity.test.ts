// circuitlens sensitivity: the command's JSON, its bad inputs, and its numbers against an independent quantization
// in NumPy/PyTorch (scripts/quantize_check.py): the quantized initializers bit for bit, and on the demo models the
// quantized model's logits and metrics as PyTorch computes them.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openSuite } from '../../core/analysis/open-suite';
import { parseCircuit, circuitComponents } from '../../core/formats/circuit';
import { encodeSafetensors, type SafeTensor } from '../../core/formats/safetensors';
import { parseSuite } from '../../core/formats/suite';
import { createRuntime } from '../../core/nodejs/load';
import { openModelVariants } from '../../core/nodejs/model-variants';
import { floatData } from '../../core/onnx/model';
import { quantizeWeights, type QuantScheme } from '../../core/onnx/quantize';
import { weightScope, type WeightScope } from '../../core/onnx/weight-scope';
import { EXAMPLES, FIXTURES, ROOT } from '../helpers';
import { cli } from './run-cli';

const SUITE = 'examples/induction.suite.yaml';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-sens-'));

describe('circuitlens sensitivity', () => {
  test('--help prints the options and the JSON', () => {
    const r = cli(['sensitivity', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /usage: circuitlens sensitivity SUITE --quantize int8\|int4\|fp16/);
    assert.match(r.stdout, /--group-size G/);
    assert.match(r.stdout, /"rows": \[\{"scope", "quantize", "groupSize", "tensors", "entries"/);
  });

  test('--json: default scopes with a circuit; circuit and outside split the attention and MLP entries; only JSON on stdout', () => {
    const r = cli(['sensitivity', SUITE, '--quantize', 'int4', '--circuit', 'examples/induction-gpt2.circuit.json', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.model, 'examples/induction-gpt2.onnx');
    assert.equal(j.quantize, 'int4');
    assert.equal(j.groupSize, null);
    assert.equal(j.metric, 'logit_diff');
    assert.equal(j.prompts, 81);
    assert.deepEqual(j.rows.map((x: { scope: string }) => x.scope), ['all', 'attn', 'mlp', 'embed', 'circuit:induction-gpt2', 'outside:induction-gpt2']);
    const row = (s: string) => j.rows.find((x: { scope: string }) => x.scope.startsWith(s));
    // GPT-2 demo: 2 layers of fused QKV, W_O, two MLP matrices; embedding, positions, unembedding.
    assert.deepEqual([row('attn').tensors, row('mlp').tensors, row('embed').tensors, row('all').tensors], [4, 4, 3, 11]);
    assert.equal(row('all').entries, row('attn').entries + row('mlp').entries + row('embed').entries);
    assert.equal(row('circuit').entries + row('outside').entries, row('attn').entries + row('mlp').entries);
    assert.equal(j.baseline.kl, 0);
    assert.ok(j.baseline.faithfulness > 0.7);
    for (const x of j.rows) {
      assert.ok(x.kl > 0 && x.kl < 0.05, `${x.scope}: kl ${x.kl}`);
      assert.ok(Math.abs(x.metricDrop - (j.baseline.metric - x.metric)) < 1e-5);
      assert.ok(x.relativeError > 0.05 && x.relativeError < 0.2, `${x.scope}: int4 relative error ${x.relativeError}`);
      assert.equal(typeof x.faithfulness, 'number');
    }
    assert.match(r.stderr, /scope 6\/6: outside:induction-gpt2/);
  });

  test('text output, repeated and comma-listed --scope, groups, fp16', () => {
    const r = cli(['sensitivity', SUITE, '--quantize', 'int8', '--group-size', '32', '--scope', 'attn,mlp', '--scope', 'embed']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /weights rounded to int8 \(groups of 32\)/);
    assert.match(r.stdout, /^ {2}attn +4 +32,768 /m);
    assert.match(r.stdout, /^ {2}embed +3 +31,872 /m);
    assert.doesNotMatch(r.stdout, /^ {2}all /m);
    const h = JSON.parse(cli(['sensitivity', SUITE, '--quantize', 'fp16', '--scope', 'all', '--json']).stdout);
    assert.ok(h.rows[0].relativeError < 5e-4 && h.rows[0].kl < 1e-6, JSON.stringify(h.rows[0]));
  });

  test('bad input: exit 2 with one clear message', () => {
    const bad = (args: string[], re: RegExp) => {
      const r = cli(['sensitivity', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stdout, '');
    };
    bad([SUITE], /--quantize int8\|int4\|fp16 is required/);
    bad([SUITE, '--quantize', 'int3'], /--quantize must be one of int8, int4, fp16/);
    bad([SUITE, '--quantize', 'int4', '--group-size', '0'], /--group-size must be a whole number ≥ 1/);
    bad([SUITE, '--quantize', 'fp16', '--group-size', '32'], /--group-size applies to int8 and int4/);
    bad([SUITE, '--quantize', 'int8', '--scope', 'heads'], /--scope "heads" is not a scope/);
    bad([SUITE, '--quantize', 'int8', '--scope', 'circuit'], /--scope circuit needs a circuit/);
    bad([SUITE, '--quantize', 'int8', '--scope', 'attn:x.json'], /only circuit: and outside: name a circuit file/);
    bad([SUITE, '--quantize', 'int8', '--scope', 'circuit:missing.circuit.json'], /missing\.circuit\.json/);
  });
});

describe('exports that are already quantized', () => {
  const suite = path.join(FIXTURES, 'zoo', 'llama', 'induction.suite.yaml');
  test('a weight-only QDQ export (int8 per channel, scripts/make_qdq_export.py) runs, and is our int8 of the float model', () => {
    const qdq = JSON.parse(cli(['sensitivity', suite, '--model', path.join(FIXTURES, 'sensitivity', 'llama-qdq.onnx'), '--quantize', 'int4', '--scope', 'all', '--json']).stdout);
    const ours = JSON.parse(cli(['sensitivity', suite, '--model', path.join(FIXTURES, 'zoo', 'llama', 'model.onnx'), '--quantize', 'int8', '--scope', 'all', '--json']).stdout);
    // The export's DequantizeLinear weights are folded to float32 at load; with the same rounding they are our
    // fake-quantized int8 entry for entry, so the metrics agree to float32 rounding of the runs.
    assert.ok(Math.abs(qdq.baseline.metric - ours.rows[0].metric) < 1e-5, `${qdq.baseline.metric} vs ${ours.rows[0].metric}`);
    assert.equal(qdq.baseline.accuracy, ours.rows[0].accuracy);
    // Its int8 matrices are not quantized again: said, not hidden.
    assert.equal(qdq.rows[0].tensors, 0);
    assert.equal(qdq.rows[0].skipped.length, 16);
    assert.match(qdq.rows[0].skipped[0].reason, /stored as int8/);
  });

  test('integer-activation exports (MatMulInteger) are refused with the operators and a node named', () => {
    const r = cli(['sensitivity', suite, '--model', path.join(FIXTURES, 'zoo', 'gpt2-int8.onnx'), '--quantize', 'int8']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /quantized with integer activations \(DynamicQuantizeLinear, MatMulInteger.*node "[^"]+"/);
  });
});

describe('canary quantize checks through circuitlens canary', () => {
  test('the passing example passes', () => {
    const r = cli(['canary', path.join(FIXTURES, 'sensitivity', 'quantize-pass.canary.yaml')]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /✓ int4 attention keeps accuracy {2}— {2}accuracy 1 with attn weights rounded to int4 \(groups of 32\) satisfies >= 0\.95/);
    assert.match(r.stdout, /3 passed, 0 failed/);
  });

  test('the failing example fails at its line (exit 1)', () => {
    const file = path.join(FIXTURES, 'sensitivity', 'quantize-fail.canary.yaml');
    const line = fs.readFileSync(file, 'utf8').split('\n').findIndex((l) => l.includes('- name: int4 barely moves the distribution')) + 1;
    const r = cli(['canary', file, '--json']);
    assert.equal(r.code, 1, r.stderr);
    const check = JSON.parse(r.stdout).canaries[0].checks[0];
    assert.equal(check.status, 'failed');
    assert.equal(check.line, line);
    assert.equal(check.expected, 'kl <= 0.00001');
    assert.match(check.message, /kl .* with all weights rounded to int4 \(per channel\) is not <= 0\.00001/);
  });
});

const PYTHON = '/usr/bin/python3';
const hasTorch = fs.existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import torch, onnx'], { encoding: 'utf8' }).status === 0;

interface Case { scheme: QuantScheme; groupSize?: number; scope: string }

/** Our quantized initializers of `scope` (and each partial one's mask), written for scripts/quantize_check.py. */
function writeOurs(modelPath: string, c: Case, file: string) {
  const variants = openModelVariants(modelPath, createRuntime());
  const scope: WeightScope = c.scope.startsWith('circuit:')
    ? { kind: 'circuit', circuit: { name: 'c', nodes: circuitComponents(parseCircuit('c', fs.readFileSync(c.scope.slice(8), 'utf8')).circuit!) } }
    : { kind: c.scope as WeightScope['kind'] };
  const scoped = weightScope(variants.model, modelPath, scope, variants.hooks);
  const q = quantizeWeights(variants.model, scoped.tensors, { scheme: c.scheme, groupSize: c.groupSize });
  const tensors: SafeTensor[] = q.tensors.map((t) => ({ name: t.name, dims: t.dims.map(Number), data: floatData(t)! }));
  for (const s of scoped.tensors) if (s.entries) tensors.push({ name: `${s.tensor}::mask`, dims: s.dims, data: Float32Array.from(s.entries) });
  fs.writeFileSync(file, encodeSafetensors({ tensors, metadata: {} }));
  return { variants, q, scoped };
}

function runCheck(modelPath: string, c: Case, tag: string, prompts?: string) {
  const file = path.join(tmp, `${tag}.safetensors`);
  const out = path.join(tmp, `${tag}.json`);
  const ours = writeOurs(modelPath, c, file);
  const py = spawnSync(PYTHON, [path.join(ROOT, 'scripts', 'quantize_check.py'), '--model', modelPath, '--tensors', file, '--quantize', c.scheme,
    ...(c.groupSize ? ['--group-size', String(c.groupSize)] : []), ...(prompts ? ['--prompts', prompts] : []), '--out', out], { encoding: 'utf8', cwd: ROOT });
  assert.equal(py.status, 0, `${tag}: ${py.stdout}${py.stderr.slice(-3000)}`);
  const report = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.equal(report.tensors.length, ours.q.tensors.length);
  for (const t of report.tensors) {
    assert.equal(t.differ, 0, `${tag}: ${t.name} differs from NumPy's quantization in ${t.differ} entries (max ${t.max_ulps} ulp)`);
    assert.equal(t.outside_changed, 0);
  }
  return { report, ...ours };
}

describe('the quantization against NumPy/PyTorch (scripts/quantize_check.py)', { skip: !hasTorch && `${PYTHON} with torch and onnx is needed` }, () => {
  for (const demo of ['gpt2', 'llama']) {
    test(`demo ${demo}: initializers bit for bit, logits and metrics as PyTorch computes them`, { timeout: 10 * 60_000 }, async () => {
      const model = path.join(EXAMPLES, `induction-${demo}.onnx`);
      const circuit = path.join(EXAMPLES, `induction-${demo}.circuit.json`);
      // The suite's task prompts, resolved by our tokenizer (the ids are the input; what is checked is the model).
      const suite = parseSuite(path.join(EXAMPLES, 'induction.suite.yaml'), fs.readFileSync(path.join(EXAMPLES, 'induction.suite.yaml'), 'utf8')).suite!;
      const base = await openModelVariants(model, createRuntime()).engineWith([]);
      const task = openSuite(suite, base, 'zero').opened!.task;
      await base.release();
      const promptsFile = path.join(tmp, `${demo}-prompts.json`);
      fs.writeFileSync(promptsFile, JSON.stringify(task.map((p) => ({ ids: p.ids, answer: p.answer, foil: p.foil }))));
      const cases: Case[] = [
        { scheme: 'int4', scope: 'all' }, { scheme: 'int4', groupSize: 32, scope: 'attn' }, { scheme: 'int8', scope: `circuit:${circuit}` }, { scheme: 'fp16', scope: 'all' },
      ];
      for (const c of cases) {
        const tag = `${demo}-${c.scheme}-${c.groupSize ?? 'ch'}-${c.scope.replace(/[^a-z]/g, '')}`;
        const { report, variants, q } = runCheck(model, c, tag, promptsFile);
        assert.ok(report.rebuild_max_abs_diff < 1e-4, `${tag}: rebuild ${report.rebuild_max_abs_diff}`);
        // Our engine on the same quantized weights: last-position logits within float32 tolerance of PyTorch's.
        const engine = await variants.engineWith(q.tensors);
        const V = engine.info.vocab;
        let worst = 0;
        for (const [i, p] of task.entries()) {
          const res = await engine.run({ ids: [p.ids], lastOnly: true });
          for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(res.logits.data[v]! - report.logits[i][v]));
        }
        await engine.release();
        assert.ok(worst < 1e-3, `${tag}: logits differ from PyTorch's by ${worst}`);
        // The CLI's row for the same quantization: metric, accuracy and KL as PyTorch computes them.
        const args = ['sensitivity', SUITE, '--model', model, '--quantize', c.scheme, ...(c.groupSize ? ['--group-size', String(c.groupSize)] : []), '--scope', c.scope, '--json'];
        const r = cli(args);
        assert.equal(r.code, 0, r.stderr);
        const row = JSON.parse(r.stdout).rows[0];
        assert.ok(Math.abs(row.metric - report.metrics.logit_diff) < 1e-3, `${tag}: logit_diff ${row.metric} vs PyTorch ${report.metrics.logit_diff}`);
        assert.equal(row.accuracy, report.metrics.accuracy);
        assert.ok(Math.abs(row.kl - report.metrics.kl) < 1e-6 + 1e-3 * report.metrics.kl, `${tag}: kl ${row.kl} vs PyTorch ${report.metrics.kl}`);
      }
    });
  }

  for (const [family, file] of [['gpt_neox', 'gpt_neox.onnx'], ['llama', 'llama/model.onnx'], ['gpt2', 'gpt2/model.onnx']] as const) {
    test(`zoo ${family}: quantized initializers bit for bit`, { timeout: 5 * 60_000 }, () => {
      const model = path.join(FIXTURES, 'zoo', file);
      for (const c of [{ scheme: 'int4', scope: 'all' }, { scheme: 'int8', groupSize: 16, scope: 'all' }, { scheme: 'fp16', scope: 'all' }] as Case[]) {
        const { report } = runCheck(model, c, `zoo-${family}-${c.scheme}-${c.groupSize ?? 'ch'}`);
        assert.ok(report.tensors.length >= 10, `${family}: ${report.tensors.length} tensors`);
      }
    });
  }
});
