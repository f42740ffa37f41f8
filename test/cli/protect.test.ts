// circuitlens protect: the mask file, its names, bad input, and the real test: the demo model fine-tuned in PyTorch
// (scripts/protect_check.py) with the mask applied by the printed snippet, and without, then verified.
import { before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeSafetensors } from '../../core/formats/safetensors';
import { EXAMPLES, ROOT } from '../helpers';
import { cli } from './run-cli';

const CIRCUIT = path.join(EXAMPLES, 'induction-gpt2.circuit.json');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-protect-'));

describe('circuitlens protect', () => {
  const mask = path.join(tmp, 'induction.safetensors');
  let summary: {
    scale: number; protectedEntries: number; totalEntries: number;
    nodes: Record<string, { initializer: string; role: string; slice: string; entries: number }[]>;
    initializers: { name: string; pytorch?: string; transposed?: boolean; protected: number; total: number }[];
  };
  before(() => {
    const r = cli(['protect', CIRCUIT, '--out', mask, '--json']);
    assert.equal(r.code, 0, r.stderr);
    summary = JSON.parse(r.stdout);
  });

  test('each head owns its q/k/v columns (fused QKV) and biases and its W_O rows; the MLP its weights', () => {
    assert.equal(summary.scale, 0.01);
    const h = summary.nodes['a1.h2']!.map((s) => `${s.role} ${s.initializer}${s.slice}`);
    assert.deepEqual(h.filter((s) => s.startsWith('W_') || s.startsWith('b_')), [
      'W_Q onnx::MatMul_274[:, 32:48]', 'b_Q blocks.1.attn.qkv.bias[32:48]', 'W_K onnx::MatMul_274[:, 96:112]', 'b_K blocks.1.attn.qkv.bias[96:112]',
      'W_V onnx::MatMul_274[:, 160:176]', 'b_V blocks.1.attn.qkv.bias[160:176]', 'W_O onnx::MatMul_282[32:48, :]',
    ]);
    assert.deepEqual(summary.nodes['m0']!.map((s) => s.initializer).sort(),
      ['blocks.0.ln2.bias', 'blocks.0.ln2.weight', 'blocks.0.mlp_in.bias', 'blocks.0.mlp_out.bias', 'onnx::MatMul_272', 'onnx::MatMul_273']);
    // 7 heads × (3 × 64·16 + 3 × 16 + 16·64) + m0 (2 × 64·256 + 256 + 3 × 64)
    assert.equal(summary.protectedEntries, 7 * (4 * 1024 + 48) + 2 * 16384 + 256 + 192);
    const qkv = summary.initializers.find((x) => x.name === 'onnx::MatMul_263')!;
    assert.deepEqual(qkv, { name: 'onnx::MatMul_263', pytorch: 'blocks.0.attn.qkv.weight', transposed: true, protected: 3 * 3 * 1024, total: 64 * 192 });
  });

  test('the file: one float32 tensor per initializer, the scale on owned entries, PyTorch names in the metadata', () => {
    const st = decodeSafetensors(new Uint8Array(fs.readFileSync(mask)), mask);
    assert.equal(st.tensors.length, 29);
    assert.equal(st.tensors.reduce((a, t) => a + t.data.length, 0), summary.totalEntries);
    let scaled = 0;
    for (const t of st.tensors) for (const v of t.data) { if (Math.abs(v - 0.01) < 1e-9) scaled++; else assert.equal(v, 1); }
    assert.equal(scaled, summary.protectedEntries);
    const qkv = st.tensors.find((t) => t.name === 'onnx::MatMul_263')!;
    assert.deepEqual(qkv.dims, [64, 192]);
    // a0.h3 is not in the circuit: its query columns 48:64 keep 1; a0.h0's 0:16 get the scale.
    assert.equal(qkv.data[5 * 192 + 50], 1);
    assert.ok(Math.abs(qkv.data[5 * 192 + 3]! - 0.01) < 1e-9);
    assert.equal(st.metadata['format'], 'circuitlens.protect/1');
    assert.equal(st.metadata['scale'], '0.01');
    assert.equal(JSON.parse(st.metadata['pytorch_transposed']!)['onnx::MatMul_282'], 'blocks.1.attn.out.weight');
    assert.equal(JSON.parse(st.metadata['pytorch_names']!)['blocks.1.attn.qkv.bias'], 'blocks.1.attn.qkv.bias');
    assert.equal(JSON.parse(st.metadata['nodes']!).length, 8);
  });

  test('--shared all: the norms in front of the circuit, the final norm, the embeddings and the tied unembedding, whole', () => {
    const out = path.join(tmp, 'shared.safetensors');
    const r = cli(['protect', CIRCUIT, '--out', out, '--json', '--shared', 'all']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as typeof summary & { shared: { initializer: string; part: string; layer?: number; entries: number }[] };
    // ln1 of both layers (heads of the circuit in each), not blocks.0.ln2 (m0 owns it) nor blocks.1.ln2 (m1's, not in the circuit).
    assert.deepEqual(s.shared.map((w) => `${w.part} ${w.initializer}${w.layer === undefined ? '' : ` ${w.layer}`}`).sort(), [
      'embedding embed.weight', 'embedding pos_embed', 'norms blocks.0.ln1.bias 0', 'norms blocks.0.ln1.weight 0', 'norms blocks.1.ln1.bias 1',
      'norms blocks.1.ln1.weight 1', 'norms ln_final.bias', 'norms ln_final.weight', 'unembedding onnx::MatMul_285',
    ]);
    assert.equal(s.protectedEntries, summary.protectedEntries + 4 * 64 + 2 * 64 + 2 * 217 * 64 + 64 * 64);
    // The unembedding torch.onnx exported as a transposed copy of the tied embedding maps to that parameter.
    const st = decodeSafetensors(new Uint8Array(fs.readFileSync(out)), out);
    assert.equal(JSON.parse(st.metadata['pytorch_transposed']!)['onnx::MatMul_285'], 'embed.weight');
    assert.equal(st.metadata['shared'], '["norms","embedding","unembedding"]');
    assert.ok(st.tensors.find((t) => t.name === 'blocks.1.ln2.weight')!.data.every((v) => v === 1));
    const norms = JSON.parse(cli(['protect', CIRCUIT, '--out', path.join(tmp, 'norms.safetensors'), '--json', '--shared', 'norms']).stdout);
    assert.deepEqual(norms.shared.map((w: { part: string }) => w.part), Array(6).fill('norms'));
  });

  test('grouped-query attention (the Llama demo): a head\'s key/value columns are its group\'s', () => {
    const out = path.join(tmp, 'llama.safetensors');
    const circuit = path.join(tmp, 'llama.circuit.json');
    fs.writeFileSync(circuit, JSON.stringify({ schemaVersion: 1, name: 'one head', model: { path: path.join(EXAMPLES, 'induction-llama.onnx') }, nodes: ['a1.h1'], edges: [] }));
    const r = cli(['protect', circuit, '--out', out, '--json', '--scale', '0']);
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout).nodes['a1.h1'].map((x: { role: string; slice: string }) => `${x.role}${x.slice}`);
    // 4 query heads, 2 key/value heads of 16: head 1 reads group 0.
    assert.deepEqual(s, ['W_Q[:, 16:32]', 'W_K[:, 0:16]', 'W_V[:, 0:16]', 'W_O[16:32, :]']);
  });

  test('bad input: exit 2 with the reason', () => {
    const cases: [string[], RegExp][] = [
      [['protect', CIRCUIT], /--out F\.safetensors is required/],
      [['protect', CIRCUIT, '--out', path.join(tmp, 'x.safetensors'), '--scale=-1'], /--scale must be a number ≥ 0/],
      [['protect', CIRCUIT, '--out', path.join(tmp, 'x.safetensors'), '--scale', 'abc'], /--scale must be a number ≥ 0/],
      [['protect', CIRCUIT, '--out', path.join(tmp, 'x.safetensors'), '--json', '--snippet'], /--json and --snippet/],
      [['protect', CIRCUIT, '--out', path.join(tmp, 'x.safetensors'), '--shared', 'biases'], /--shared takes all or a list of norms, embedding, unembedding/],
      [['protect', path.join(tmp, 'missing.circuit.json'), '--out', path.join(tmp, 'x.safetensors')], /not found/],
    ];
    for (const [args, msg] of cases) {
      const r = cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, msg);
    }
    const far = path.join(tmp, 'far.circuit.json');
    fs.writeFileSync(far, JSON.stringify({ schemaVersion: 1, name: 'x', model: { path: path.join(EXAMPLES, 'induction-gpt2.onnx') }, nodes: ['a5.h0'], edges: [] }));
    const r = cli(['protect', far, '--out', path.join(tmp, 'x.safetensors')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /a5\.h0 is not in the model \(2 layers\)/);
    assert.ok(!fs.existsSync(path.join(tmp, 'x.safetensors')));
  });

  test('--snippet alone prints the PyTorch code; with a circuit the summary goes to stderr', () => {
    const r = cli(['protect', '--snippet']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^# Apply a CircuitLens protect mask/);
    for (const f of ['read_safetensors', 'load_protect_mask', 'protect_optimizer', 'scale_gradients']) assert.match(r.stdout, new RegExp(`def ${f}\\(`));
    const w = cli(['protect', CIRCUIT, '--out', path.join(tmp, 'y.safetensors'), '--snippet']);
    assert.equal(w.code, 0, w.stderr);
    assert.equal(w.stdout, r.stdout);
    assert.match(w.stderr, /y\.safetensors: 62224 of 131968 entries at scale 0\.01/);
  });
});

const PYTHON = '/usr/bin/python3';
const hasTorch = fs.existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import torch, onnx'], { encoding: 'utf8' }).status === 0;

describe('protect for real: the demo model fine-tuned in PyTorch with and without the mask', { skip: !hasTorch && `${PYTHON} with torch and onnx is needed` }, () => {
  test('the protected weights move ~100× less (Adam, update scaled); the model\'s and the circuit\'s induction hold better', { timeout: 30 * 60_000 }, () => {
    const dir = path.join(tmp, 'finetune');
    const mask = path.join(tmp, 'ft.safetensors');
    const sharedMask = path.join(tmp, 'ft-shared.safetensors');
    const snippet = path.join(tmp, 'apply_mask.py');
    assert.equal(cli(['protect', CIRCUIT, '--out', mask]).code, 0);
    assert.equal(cli(['protect', CIRCUIT, '--out', sharedMask, '--shared', 'all']).code, 0);
    fs.writeFileSync(snippet, cli(['protect', '--snippet']).stdout);
    const py = spawnSync(PYTHON, [path.join(ROOT, 'scripts', 'protect_check.py'), '--mask', mask, '--shared-mask', sharedMask, '--snippet', snippet, '--out', dir], { encoding: 'utf8', cwd: ROOT });
    assert.equal(py.status, 0, py.stderr.slice(-4000));
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8'));
    assert.equal(report.rebuild_max_abs_diff < 1e-4, true);
    const runs = report.runs as Record<string, { onnx: string; protected_mean_abs_change: number; rest_mean_abs_change: number; rest_over_protected: number }>;
    // (a) Within the protected run the circuit's entries move ~1/scale less than the rest, and ~that much less
    // than the same entries without the mask. Gradient hooks under Adam barely protect (its step ignores scale).
    assert.ok(runs['adam_step']!.rest_over_protected > 50, `rest/protected ${runs['adam_step']!.rest_over_protected}`);
    assert.ok(report.protected_change_none_over_masked > 30, `none/masked ${report.protected_change_none_over_masked}`);
    assert.ok(runs['adam_grad_hooks']!.rest_over_protected < 5, `grad hooks under Adam: rest/protected ${runs['adam_grad_hooks']!.rest_over_protected}`);
    assert.ok(runs['none']!.rest_over_protected < 5);
    // (b) circuitlens verify on each fine-tuned export (and the full model's metric).
    const measure = (model: string) => {
      const v = cli(['verify', CIRCUIT, '--model', model, '--json']);
      assert.equal(v.code, 0, v.stderr);
      const r = cli(['run', path.join(EXAMPLES, 'induction.suite.yaml'), '--model', model, '--json']);
      assert.equal(r.code, 0, r.stderr);
      // The circuit alone: every other node (a0.h3, m1) mean-ablated.
      const c = cli(['run', path.join(EXAMPLES, 'induction.suite.yaml'), '--model', model, '--ablate', 'a0.h3,m1', '--json']);
      assert.equal(c.code, 0, c.stderr);
      const [vj, rj, cj] = [v, r, c].map((x) => JSON.parse(x.stdout));
      return {
        faithfulness: vj.faithfulness as number, faithfulnessKl: vj.faithfulnessByMetric.kl as number, metric: rj.value as number, accuracy: rj.accuracy as number,
        circuitMetric: cj.value as number, circuitAccuracy: cj.accuracy as number,
      };
    };
    const original = measure(path.join(EXAMPLES, 'induction-gpt2.onnx'));
    const none = measure(path.join(dir, runs['none']!.onnx));
    const masked = measure(path.join(dir, runs['adam_step']!.onnx));
    const shared = measure(path.join(dir, runs['adam_step_shared']!.onnx));
    const numbers = { original, none, masked, shared, sharedRatio: runs['adam_step_shared']!.rest_over_protected, ratio: runs['adam_step']!.rest_over_protected, noneOverMasked: report.protected_change_none_over_masked, gradHooksRatio: runs['adam_grad_hooks']!.rest_over_protected };
    fs.writeFileSync(path.join(dir, 'verify.json'), JSON.stringify(numbers, null, 2));
    console.log(`protect check: ${JSON.stringify(numbers)}`);
    // What holds better with the mask, measured: the induction accuracy of the whole model and of the circuit
    // alone, and the circuit's logit difference (more so with --shared all). Faithfulness (circuit over whole
    // model) is recorded, not asserted: on this task it is lower with the mask, with or without --shared, in every
    // seed of scripts/protect_sweep.py (test/fixtures/protect-sweep.json; README: Circuits over time).
    assert.ok(runs['adam_step_shared']!.rest_over_protected > 50, `--shared all: rest/protected ${runs['adam_step_shared']!.rest_over_protected}`);
    assert.ok(shared.circuitMetric > masked.circuitMetric && masked.circuitMetric > none.circuitMetric, `the circuit's logit difference: shared ${shared.circuitMetric}, masked ${masked.circuitMetric}, unmasked ${none.circuitMetric}`);
    assert.ok(masked.accuracy > none.accuracy + 0.1, `task accuracy after fine-tuning: masked ${masked.accuracy}, unmasked ${none.accuracy}`);
    assert.ok(masked.circuitAccuracy > none.circuitAccuracy + 0.05, `the circuit alone: masked ${masked.circuitAccuracy}, unmasked ${none.circuitAccuracy}`);
    assert.ok(Math.abs(masked.accuracy - original.accuracy) < 0.1, `masked ${masked.accuracy} vs original ${original.accuracy}`);
  });
});
