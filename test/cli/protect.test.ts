// circuitlens protect: the mask file, its names, bad input, and the real test: the demo model fine-tuned in PyTorch
// (scripts/protect_check.py) with the mask applied by the printed snippet, and without, then verified.
import { before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeSafetensors } from '../../core/formats/safetensors';
import { EXAMPLES, FIXTURES, ROOT } from '../helpers';
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

  test('--anchor: the nodes outside the circuit as PyTorch modules (a head\'s input slice of its output projection, an MLP\'s down projection)', () => {
    const out = path.join(tmp, 'anchor.safetensors');
    const r = cli(['protect', CIRCUIT, '--out', out, '--json', '--anchor']);
    assert.equal(r.code, 0, r.stderr);
    const anchor = { ablation: 'mean', heads: [{ node: 'a0.h3', module: 'blocks.0.attn.out', start: 48, end: 64 }], mlps: [{ node: 'm1', module: 'blocks.1.mlp_out' }] };
    assert.deepEqual(JSON.parse(r.stdout).anchor, anchor);
    const st = decodeSafetensors(new Uint8Array(fs.readFileSync(out)), out);
    assert.deepEqual(JSON.parse(st.metadata['anchor']!), anchor);
    assert.equal(decodeSafetensors(new Uint8Array(fs.readFileSync(mask)), mask).metadata['anchor'], undefined);
    const text = cli(['protect', CIRCUIT, '--out', path.join(tmp, 'anchor2.safetensors'), '--anchor']);
    assert.match(text.stdout, /anchor: a0\.h3 blocks\.0\.attn\.out\[48:64\], m1 blocks\.1\.mlp_out \(mean-ablated/);
    // Hugging Face names from the zoo's exports; fp16 weights carry no parameter name: refused, not guessed.
    const zoo = (family: string, model = path.join(FIXTURES, 'zoo', family, 'model.onnx')) => {
      const c = path.join(tmp, `${family}.circuit.json`);
      fs.writeFileSync(c, JSON.stringify({ schemaVersion: 1, name: 'x', model: { path: model }, nodes: ['a0.h0', 'a0.h1', 'a0.h2', 'a0.h3', 'a1.h0', 'a1.h1', 'a1.h2', 'm0'], edges: [] }));
      return cli(['protect', c, '--out', path.join(tmp, `${family}.safetensors`), '--json', '--anchor', '--force']);
    };
    for (const [family, head, mlp] of [['gpt2', 'transformer.h.1.attn.c_proj[48:64]', 'transformer.h.1.mlp.c_proj'], ['llama', 'model.layers.1.self_attn.o_proj[48:64]', 'model.layers.1.mlp.down_proj'],
      ['gpt_neox.onnx', 'gpt_neox.layers.1.attention.dense[48:64]', 'gpt_neox.layers.1.mlp.dense_4h_to_h'], ['opt.onnx', 'model.decoder.layers.1.self_attn.out_proj[36:48]', 'model.decoder.layers.1.fc2']] as const) {
      const z = family.endsWith('.onnx') ? zoo(family, path.join(FIXTURES, 'zoo', family)) : zoo(family);
      assert.equal(z.code, 0, z.stderr);
      const a = JSON.parse(z.stdout).anchor as { heads: { node: string; module: string; start: number; end: number }[]; mlps: { node: string; module: string }[] };
      assert.deepEqual(a.heads.map((h) => `${h.node} ${h.module}[${h.start}:${h.end}]`), [`a1.h3 ${head}`], family);
      assert.deepEqual(a.mlps.map((m) => `${m.node} ${m.module}`), [`m1 ${mlp}`], family);
    }
    const fp16 = zoo('gpt2-fp16', path.join(FIXTURES, 'zoo', 'gpt2-fp16.onnx'));
    assert.equal(fp16.code, 2);
    assert.match(fp16.stderr, /--anchor needs the PyTorch module of a1\.h3's output projection \("transformer\.h\.1\.attn\.c_proj\.weight_fp16"\)/);
  });

  test('--invert: the scale on every entry the circuit does not own, 1 on its own; on the zoo too', () => {
    const inv = path.join(tmp, 'invert.safetensors');
    const r = cli(['protect', CIRCUIT, '--out', inv, '--json', '--invert']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.invert, true);
    assert.deepEqual(j.nodes, summary.nodes);
    assert.equal(j.protectedEntries, summary.totalEntries - summary.protectedEntries);
    const [a, b] = [mask, inv].map((f) => decodeSafetensors(new Uint8Array(fs.readFileSync(f)), f));
    assert.equal(b.metadata['invert'], 'true');
    assert.equal(a.metadata['invert'], undefined);
    for (const [i, t] of b.tensors.entries()) {
      const o = a.tensors[i]!;
      assert.equal(t.name, o.name);
      for (let k = 0; k < t.data.length; k++) assert.equal(t.data[k], o.data[k] === 1 ? Math.fround(0.01) : 1, `${t.name}[${k}]`);
    }
    const both = cli(['protect', CIRCUIT, '--out', path.join(tmp, 'inv2.safetensors'), '--invert', '--shared', 'all']);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /--invert and --shared/);
    // The zoo's exports: every initializer with scaled entries has its PyTorch name, so the snippet can place it.
    for (const [family, model] of [['gpt2', 'gpt2/model.onnx'], ['llama', 'llama/model.onnx'], ['gpt_neox', 'gpt_neox.onnx'], ['opt', 'opt.onnx'], ['qwen2', 'qwen2.onnx']] as const) {
      const c = path.join(tmp, `inv-${family}.circuit.json`);
      fs.writeFileSync(c, JSON.stringify({ schemaVersion: 1, name: 'x', model: { path: path.join(FIXTURES, 'zoo', model) }, nodes: ['a0.h0', 'a0.h1', 'a1.h0', 'm0'], edges: [] }));
      const [own, z] = [[], ['--invert']].map((x) => cli(['protect', c, '--out', path.join(tmp, `inv-${family}${x.length}.safetensors`), '--json', '--force', ...x]));
      assert.equal(z!.code, 0, z!.stderr);
      const [oj, zj] = [own!, z!].map((x) => JSON.parse(x.stdout));
      assert.equal(zj.protectedEntries, oj.totalEntries - oj.protectedEntries, family);
      assert.ok(zj.protectedEntries > 0, family);
      assert.deepEqual((zj.initializers as { name: string; pytorch?: string }[]).filter((x) => !x.pytorch).map((x) => x.name), [], family);
    }
  });

  test('--snippet alone prints the PyTorch code; with a circuit the summary goes to stderr', () => {
    const r = cli(['protect', '--snippet']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^# Apply a CircuitLens protect mask/);
    for (const f of ['read_safetensors', 'load_protect_mask', 'protect_optimizer', 'scale_gradients']) assert.match(r.stdout, new RegExp(`def ${f}\\(`));
    assert.doesNotMatch(r.stdout, /def load_anchor/);
    const a = cli(['protect', '--snippet', '--anchor']);
    assert.ok(a.stdout.startsWith(r.stdout));
    for (const f of ['load_anchor', 'circuit_alone', 'kl_rows', 'faithfulness_anchor_loss']) assert.match(a.stdout, new RegExp(`def ${f}\\(`));
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
    const anchorMask = path.join(tmp, 'ft-anchor.safetensors');
    const invertMask = path.join(tmp, 'ft-invert.safetensors');
    const snippet = path.join(tmp, 'apply_mask.py');
    assert.equal(cli(['protect', CIRCUIT, '--out', mask]).code, 0);
    assert.equal(cli(['protect', CIRCUIT, '--out', sharedMask, '--shared', 'all']).code, 0);
    assert.equal(cli(['protect', CIRCUIT, '--out', anchorMask, '--anchor']).code, 0);
    assert.equal(cli(['protect', CIRCUIT, '--out', invertMask, '--invert']).code, 0);
    fs.writeFileSync(snippet, cli(['protect', '--snippet', '--anchor']).stdout);
    // The snippet's circuit alone against circuitlens's: one template of the suite (64 prompts of 10 words: one
    // batch, so both take the means over the same prompts and positions).
    const suite = path.join(tmp, 'one-length.suite.yaml');
    const template = fs.readFileSync(path.join(EXAMPLES, 'induction.suite.yaml'), 'utf8').split('\n  - pattern:')[1]!;
    fs.writeFileSync(suite, `name: one length\nmetric: logit_diff\nablation: mean\ntemplates:\n  - pattern:${template}\n`);
    const ablated = cli(['run', suite, '--model', path.join(EXAMPLES, 'induction-gpt2.onnx'), '--ablate', 'a0.h3,m1', '--json']);
    assert.equal(ablated.code, 0, ablated.stderr);
    const checkPrompts = (JSON.parse(ablated.stdout).prompts as { text: string; answer: string; prob: number }[]);
    assert.equal(checkPrompts.length, 64);
    fs.writeFileSync(path.join(tmp, 'check-prompts.json'), JSON.stringify(checkPrompts));
    const py = spawnSync(PYTHON, [path.join(ROOT, 'scripts', 'protect_check.py'), '--mask', mask, '--shared-mask', sharedMask, '--snippet', snippet, '--out', dir,
      '--anchor-mask', anchorMask, '--invert-mask', invertMask, '--check-prompts', path.join(tmp, 'check-prompts.json')], { encoding: 'utf8', cwd: ROOT });
    assert.equal(py.status, 0, py.stderr.slice(-4000));
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8'));
    assert.equal(report.rebuild_max_abs_diff < 1e-4, true);
    const runs = report.runs as Record<string, { onnx: string; task_eval_loss: number; protected_mean_abs_change: number; rest_mean_abs_change: number; rest_over_protected: number }>;
    const probs = report.circuit_alone_answer_probs as number[];
    assert.ok(checkPrompts.every((p, i) => Math.abs(p.prob - probs[i]!) < 1e-4), 'the snippet\'s circuit alone gives the answers circuitlens run --ablate gives');
    assert.ok(checkPrompts.some((p, i) => Math.abs(p.prob - report.whole_answer_probs[i]) > 0.01), 'the ablation changes something');
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
    const anchored = measure(path.join(dir, runs['faithful_anchor']!.onnx));
    const inverted = measure(path.join(dir, runs['adam_step_invert']!.onnx));
    const taskLoss = { none: runs['none']!.task_eval_loss, anchored: runs['faithful_anchor']!.task_eval_loss, inverted: runs['adam_step_invert']!.task_eval_loss };
    const numbers = { original, none, masked, shared, anchored, inverted, taskLoss, invertRatio: runs['adam_step_invert']!.rest_over_protected, sharedRatio: runs['adam_step_shared']!.rest_over_protected, ratio: runs['adam_step']!.rest_over_protected, noneOverMasked: report.protected_change_none_over_masked, gradHooksRatio: runs['adam_grad_hooks']!.rest_over_protected };
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
    // The faithfulness anchor (no mask; KL(whole || circuit alone) on fresh induction batches, λ = 1): faithfulness
    // holds better than without it (logit difference and KL), and the fine-tuning task's held-out loss is no
    // worse. Measured 0.798 vs 0.754 here; 3/3 seeds on random and bigram text in test/fixtures/protect-sweep.json
    // (on skip the logit-difference faithfulness is undefined: the whole model no longer does the task there).
    assert.ok(anchored.faithfulness > none.faithfulness + 0.02, `faithfulness: anchored ${anchored.faithfulness}, unmasked ${none.faithfulness}`);
    assert.ok(anchored.faithfulnessKl > none.faithfulnessKl, `faithfulness (KL): anchored ${anchored.faithfulnessKl}, unmasked ${none.faithfulnessKl}`);
    assert.ok(taskLoss.anchored < taskLoss.none + 0.05, `the fine-tuning task's loss: anchored ${taskLoss.anchored}, unmasked ${taskLoss.none}`);
    // --invert (every weight the circuit does not own at 0.01, its own at 1): the scaled entries move ~100× less than
    // the circuit's, and faithfulness holds better than without a mask (logit difference and KL) at a task cost.
    // Measured at this seed 0.756 vs 0.754 (KL 0.893 vs 0.886), task loss 8.37 vs 6.56; 3/3 seeds on random text and
    // bigram chains in test/fixtures/protect-sweep.json, where a uniform learning-rate cut to the same task loss
    // (every entry at 0.45) gives 0.674, below no mask: the gain is not from learning less.
    assert.ok(runs['adam_step_invert']!.rest_over_protected > 50, `--invert: circuit/rest ${runs['adam_step_invert']!.rest_over_protected}`);
    assert.ok(inverted.faithfulness > none.faithfulness, `faithfulness: --invert ${inverted.faithfulness}, unmasked ${none.faithfulness}`);
    assert.ok(inverted.faithfulnessKl > none.faithfulnessKl, `faithfulness (KL): --invert ${inverted.faithfulnessKl}, unmasked ${none.faithfulnessKl}`);
    // The same on bigram chains (seed 7, learning rate 1e-3 as in the sweep): 0.812 vs 0.724, its task loss 2.81 vs 2.68.
    const bigramDir = path.join(tmp, 'finetune-bigram');
    const bigram = spawnSync(PYTHON, [path.join(ROOT, 'scripts', 'protect_check.py'), '--mask', mask, '--snippet', snippet, '--out', bigramDir, '--task', 'bigram', '--lr', '1e-3',
      '--runs', 'none', '--anchor-mask', anchorMask, '--invert-mask', invertMask], { encoding: 'utf8', cwd: ROOT });
    assert.equal(bigram.status, 0, bigram.stderr.slice(-4000));
    const b = JSON.parse(fs.readFileSync(path.join(bigramDir, 'report.json'), 'utf8')).runs as typeof runs;
    const [bNone, bAnchored] = [measure(path.join(bigramDir, b['none']!.onnx)), measure(path.join(bigramDir, b['faithful_anchor']!.onnx))];
    console.log(`protect check, bigram: ${JSON.stringify({ none: bNone, anchored: bAnchored, taskLoss: { none: b['none']!.task_eval_loss, anchored: b['faithful_anchor']!.task_eval_loss } })}`);
    assert.ok(bAnchored.faithfulness > bNone.faithfulness + 0.05, `bigram: faithfulness anchored ${bAnchored.faithfulness}, unmasked ${bNone.faithfulness}`);
    assert.ok(bAnchored.faithfulnessKl > bNone.faithfulnessKl, `bigram: faithfulness (KL) anchored ${bAnchored.faithfulnessKl}, unmasked ${bNone.faithfulnessKl}`);
    // A small cost on this task (+0.13 on average over the sweep's seeds, of a drop from 12.55 to 2.71).
    assert.ok(b['faithful_anchor']!.task_eval_loss < b['none']!.task_eval_loss + 0.3, `bigram: task loss anchored ${b['faithful_anchor']!.task_eval_loss}, unmasked ${b['none']!.task_eval_loss}`);
    // --invert on bigram chains: 0.789 vs 0.724 (KL 0.925 vs 0.753), task loss 4.49 vs 2.68.
    const bInverted = measure(path.join(bigramDir, b['adam_step_invert']!.onnx));
    console.log(`protect check, bigram --invert: ${JSON.stringify({ inverted: bInverted, taskLoss: b['adam_step_invert']!.task_eval_loss })}`);
    assert.ok(bInverted.faithfulness > bNone.faithfulness + 0.03, `bigram: faithfulness --invert ${bInverted.faithfulness}, unmasked ${bNone.faithfulness}`);
    assert.ok(bInverted.faithfulnessKl > bNone.faithfulnessKl + 0.05, `bigram: faithfulness (KL) --invert ${bInverted.faithfulnessKl}, unmasked ${bNone.faithfulnessKl}`);
  });
});
