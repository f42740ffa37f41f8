// The lean metrics session: last-position logits from a graph with no hook taps, whose final norm and
// unembedding run on the last position only. It must give what the full forward gives at that position.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { evaluateSets, prepare } from '../../core/analysis/evaluate';
import { createRuntime, loadEngine } from '../../core/nodejs/load';
import { sessionOptions } from '../../core/nodejs/ort-node';
import { decodeModel } from '../../core/onnx/model';
import { detectStructure } from '../../core/onnx/detect';
import { instrument, LAST_LOGITS } from '../../core/onnx/instrument';
import { withLastMlpOnLastPosition, withOutputsOnly } from '../../core/onnx/lean';
import { EXAMPLES, FIXTURES, maxAbsDiff } from '../helpers';

const MODELS = [
  path.join(EXAMPLES, 'induction-gpt2.onnx'),
  path.join(EXAMPLES, 'induction-llama.onnx'),
  path.join(FIXTURES, 'models', 'induction-gpt2-opset14.onnx'),
  path.join(FIXTURES, 'models', 'induction-llama-kvcache.onnx'),
];

for (const file of MODELS) {
  const name = path.basename(file);
  test(`${name}: the metrics session unembeds the last position only and agrees with the full forward`, async () => {
    const model = decodeModel(fs.readFileSync(file), name);
    const s = detectStructure(model, name);
    const inst = instrument(model, s);
    const lean = withOutputsOnly(inst.model, [LAST_LOGITS]);
    assert.deepEqual(lean.graph!.output.map((o) => o.name), [LAST_LOGITS]);
    assert.ok(lean.graph!.node.some((n) => n.name === 'circuitlens/gather_last'), 'last position gathered before the final norm');
    // No node of the lean graph produces the full [B, T, vocab] logits.
    assert.ok(!lean.graph!.node.some((n) => n.output.includes(s.logits)), 'full logits pruned');
    assert.ok(lean.graph!.node.length < inst.model.graph!.node.length);

    const engine = await loadEngine(file);
    try {
      // Test fixtures have no tokenizer: token ids of an induction-like sequence and another one.
      const a = [5, 9, 14, 3, 11, 7, 5, 9, 14];
      const ids = [a, [12, 4, 8, 12, 4, 8, 6, 2, 12]];
      const full = await engine.run({ ids });
      const V = engine.info.vocab;
      const T = a.length;
      const lastOfFull = new Float32Array(ids.length * V);
      for (let r = 0; r < ids.length; r++) lastOfFull.set(full.logits.data.subarray((r * T + T - 1) * V, (r * T + T) * V), r * V);
      const last = await engine.run({ ids, lastOnly: true });
      assert.deepEqual(last.logits.dims, [2, 1, V]);
      assert.ok(maxAbsDiff(last.logits, { dims: [2, 1, V], data: lastOfFull }) < 1e-5);
      // Ablations reach the lean session too (its inputs are the same).
      const abl = await engine.run({ ids, lastOnly: true, ablations: [{ nodes: ['a1.h0', 'm1'], kind: 'zero' }, undefined] });
      const ablFull = await engine.run({ ids, lastOnly: true, hooks: ['blocks.0.attn.hook_z'], ablations: [{ nodes: ['a1.h0', 'm1'], kind: 'zero' }, undefined] });
      assert.ok(maxAbsDiff(abl.logits, ablFull.logits) < 1e-5, 'lean and full sessions agree under ablation');
      // The lean session also gives every layer's resid_pre (what sweeps cache for layer skipping), equal to the full session's.
      const residHooks = Array.from({ length: engine.info.layers }, (_, l) => `blocks.${l}.hook_resid_pre`);
      const leanResid = await engine.run({ ids, lastOnly: true, hooks: residHooks });
      const fullResid = await engine.run({ ids, hooks: residHooks });
      for (const h of residHooks) assert.ok(maxAbsDiff(leanResid.activations[h]!, fullResid.activations[h]!) < 1e-6, h);
      assert.ok(maxAbsDiff(leanResid.logits, last.logits) < 1e-6);
      assert.ok(maxAbsDiff(abl.logits, last.logits) > 1e-2, 'the ablation changes the first row');
      // The metrics session runs the last layer's MLP on the last position only; a resample ablation of that MLP
      // (an additive term per position) must still reach it from the last position.
      const trimmed = withLastMlpOnLastPosition(withOutputsOnly(inst.model, [LAST_LOGITS]), s);
      assert.ok(trimmed, 'the last MLP is cut to the last position');
      assert.ok(!trimmed.model.graph!.node.some((n) => n.output.includes(s.layers[s.layers.length - 1]!.residPost)), 'the full-length last residual is not computed');
      const L = engine.info.layers;
      const other = await engine.run({ ids: [[3, 1, 4, 1, 5, 9, 2, 6, 5], [2, 7, 1, 8, 2, 8, 1, 8, 2]], hooks: Array.from({ length: L }, (_, l) => [`blocks.${l}.attn.hook_z`, `blocks.${l}.hook_mlp_out`]).flat() });
      const resample = { z: Array.from({ length: L }, (_, l) => other.activations[`blocks.${l}.attn.hook_z`]!), mlp: Array.from({ length: L }, (_, l) => other.activations[`blocks.${l}.hook_mlp_out`]!) };
      const rs = { ids, resample, ablations: [{ nodes: [`m${L - 1}`, 'a0.h1'], kind: 'resample' as const }, undefined] as never };
      const rLean = await engine.run({ ...rs, lastOnly: true });
      const rFull = await engine.run({ ...rs, lastOnly: true, hooks: ['blocks.0.attn.hook_z'] });
      assert.ok(maxAbsDiff(rLean.logits, rFull.logits) < 1e-5, 'resampled last MLP: lean and full sessions agree');
      assert.ok(maxAbsDiff(rLean.logits, last.logits) > 1e-2, 'the resample ablation changes the first row');
    } finally {
      await engine.release();
    }
  });
}

for (const file of MODELS) {
  const name = path.basename(file);
  test(`${name}: runs that start at a later layer from the clean residual equal whole runs (layer skipping)`, async () => {
    const engine = await loadEngine(file);
    try {
      assert.equal(await engine.canSkipLayers(), true, 'every block can be cut out');
      const ids = [[5, 9, 14, 3, 11, 7, 5, 9, 14], [12, 4, 8, 12, 4, 8, 6, 2, 12]];
      const clean = await engine.run({ ids, hooks: ['blocks.1.hook_resid_pre', 'blocks.0.hook_resid_pre'], lastOnly: true });
      const ablations = [{ nodes: ['a1.h2', 'm1'] as never[], kind: 'zero' as const }, undefined];
      const whole = await engine.run({ ids, ablations, lastOnly: true });
      const from1 = await engine.run({ ids, ablations, lastOnly: true, start: { layer: 1, resid: clean.activations['blocks.1.hook_resid_pre']! } });
      assert.ok(maxAbsDiff(from1.logits, whole.logits) < 1e-5, 'start at layer 1');
      const from0 = await engine.run({ ids, ablations, lastOnly: true, start: { layer: 0, resid: clean.activations['blocks.0.hook_resid_pre']! } });
      assert.ok(maxAbsDiff(from0.logits, whole.logits) < 1e-5, 'start at layer 0');
      // The start residual is really used: a different one gives different logits.
      const other = { dims: clean.activations['blocks.1.hook_resid_pre']!.dims, data: clean.activations['blocks.1.hook_resid_pre']!.data.map((x) => x * 0.5) };
      const moved = await engine.run({ ids, lastOnly: true, start: { layer: 1, resid: other } });
      assert.ok(maxAbsDiff(moved.logits, clean.logits) > 1e-2);

      // A sweep (evaluateSets with layer skipping from the residuals of prepare's clean run, the empty set from
      // that run's logits) scores exactly what whole runs of every set score.
      const prompts = ids.map((p, index) => ({ index, text: p.join(' '), ids: p, answer: 14, foil: 3, tags: ['task'] }));
      const sets = [[], ['a0.h1'], ['a1.h0'], ['a1.h3', 'm1'], ['m0'], []] as never[][];
      const ctx = await prepare(engine, prompts, 'zero');
      assert.equal(ctx.residPre?.length, prompts.length, 'the clean run kept the residuals');
      const swept = await evaluateSets(ctx, sets);
      const plain = await evaluateSets({ ...ctx, residPre: undefined, cleanLogits: undefined }, sets);
      swept.forEach((s, i) => s.scores.forEach((sc, b) => {
        const want = plain[i]!.scores[b]!;
        assert.ok(Math.abs(sc.logitDiff - want.logitDiff) < 1e-5 && Math.abs(sc.kl - want.kl) < 1e-5 && sc.top1 === want.top1, `set ${i} row ${b}`);
      }));
      assert.ok(Math.abs(swept[1]!.metrics.logit_diff - swept[0]!.metrics.logit_diff) > 1e-3, 'an ablation changes the score');
    } finally {
      await engine.release();
    }
  });
}

test('a large model is re-read for later sessions (not kept decoded), and a changed file is refused', async () => {
  const fsm = await import('node:fs');
  const os = await import('node:os');
  const { createRuntime } = await import('../../core/nodejs/load');
  const dir = fsm.mkdtempSync(path.join(os.tmpdir(), 'cl-reread-'));
  const file = path.join(dir, 'model.onnx');
  fsm.copyFileSync(path.join(EXAMPLES, 'induction-gpt2.onnx'), file);
  // Threshold 0: every model counts as large.
  const engine = await loadEngine(file, createRuntime(), { keepDecodedBytes: 0 });
  const kept = await loadEngine(path.join(EXAMPLES, 'induction-gpt2.onnx'));
  try {
    const ids = [[5, 9, 14, 3, 11, 7, 5, 9, 14]];
    // The metrics, lens, skip and edge sessions are built after loading, from the re-read file.
    const a = await engine.run({ ids, lastOnly: true });
    const b = await kept.run({ ids, lastOnly: true });
    assert.ok(maxAbsDiff(a.logits, b.logits) < 1e-6);
    const la = await engine.run({ ids, lens: true });
    assert.equal(la.lens!.length, 2);
    const ea = await engine.runEdges({ ids });
    assert.ok(maxAbsDiff(ea.logits, b.logits) < 1e-5);
    // The file changes: the next session that needs it is refused with a clear message.
    fsm.appendFileSync(file, Buffer.from([0]));
    await assert.rejects(engine.gradients({ ids, seed: new Float32Array(engine.info.vocab) }), /changed on disk after it was loaded/);
  } finally {
    await engine.release();
    await kept.release();
    fsm.rmSync(dir, { recursive: true, force: true });
  }
});

test('on onnxruntime-web (no layer skipping) the clean run fetches no residuals, and sweeps score what native ones do', async () => {
  const { createRuntime } = await import('../../core/nodejs/load');
  const file = path.join(EXAMPLES, 'induction-gpt2.onnx');
  const ids = [[5, 9, 14, 3, 11, 7, 5, 9, 14], [12, 4, 8, 12, 4, 8, 6, 2, 12]];
  const prompts = ids.map((p, index) => ({ index, text: p.join(' '), ids: p, answer: 14, foil: 3, tags: ['task'] }));
  const sets = [[], ['a0.h1'], ['a1.h0'], ['m0'], ['a1.h3', 'm1']] as never[][];
  const web = await loadEngine(file, createRuntime('wasm'));
  const native = await loadEngine(file);
  try {
    assert.equal(web.maySkipLayers, false);
    assert.equal(native.maySkipLayers, true);
    const w = await prepare(web, prompts, 'zero');
    assert.equal(w.residPre, undefined, 'no residuals fetched where they cannot be used');
    const n = await prepare(native, prompts, 'zero');
    assert.equal(n.residPre?.length, prompts.length);
    const [a, b] = [await evaluateSets(w, sets), await evaluateSets(n, sets)];
    a.forEach((s, i) => assert.ok(Math.abs(s.metrics.logit_diff - b[i]!.metrics.logit_diff) < 1e-4, `set ${i}`));
  } finally {
    await web.release();
    await native.release();
  }
});

test('flushDenormals: flushing changes no logit or attention probability beyond 1e-6, and the default leaves JavaScript alone', async () => {
  const { spawnSync } = await import('node:child_process');
  const child = path.join(__dirname, '..', '..', 'helpers', 'denormals-child.js');
  // An induction prompt: 24 tokens, then the same 24 again; induction heads attend sharply to one position (the
  // masked and near-zero scores are where softmax's exp meets denormals; bench/ measures the speed).
  const first = Array.from({ length: 24 }, (_, i) => 3 + ((i * 37 + 11) % 200));
  const ids = [...first, ...first].join(',');
  const run = (flag: string) => {
    const r = spawnSync(process.execPath, [child, path.join(EXAMPLES, 'induction-gpt2.onnx'), flag, ids], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { logits: number[]; dims: number[]; pattern: number[]; denormal: number; jsFlushes: boolean };
  };
  const plain = run('keep');
  const flushed = run('flush');
  assert.deepEqual(flushed.dims, plain.dims);
  const diff = maxAbsDiff({ dims: plain.dims, data: Float32Array.from(plain.logits) }, { dims: flushed.dims, data: Float32Array.from(flushed.logits) });
  assert.ok(diff <= 1e-6, `logits differ by ${diff}`);
  const pd = maxAbsDiff({ dims: [plain.pattern.length], data: Float32Array.from(plain.pattern) }, { dims: [flushed.pattern.length], data: Float32Array.from(flushed.pattern) });
  assert.ok(pd <= 1e-6, `attention probabilities differ by ${pd}`);
  assert.equal(flushed.denormal, 0, 'no denormal attention probability comes out of a flushed run');
  assert.equal(plain.jsFlushes, false, 'the default runtime (the extension host\'s) leaves the JS thread\'s floating-point mode alone');
  assert.equal(flushed.jsFlushes, true, 'the side effect OrtNodeRuntime documents: onnxruntime sets flush-to-zero on the creating thread');
});

test('spinning: onnxruntime config entries per mode; every mode and thread count gives the same logits, sessions alternating', async () => {
  const session = (o: Parameters<typeof sessionOptions>[0]) => (sessionOptions(o).extra as { session: Record<string, string> }).session;
  // The keys onnxruntime reads (onnxruntime_session_options_config_keys.h), under extra.session.
  assert.deepEqual(session({}), { force_spinning_stop: '1' });
  assert.deepEqual(session({ spinning: 'always' }), {});
  assert.deepEqual(session({ spinning: 'never', flushDenormals: true }), { set_denormal_as_zero: '1', 'intra_op.allow_spinning': '0' });
  assert.equal(sessionOptions({ threads: 2 }).intraOpNumThreads, 2);
  assert.equal(sessionOptions({}).intraOpNumThreads, undefined, 'one per core: onnxruntime\'s default');

  const file = path.join(EXAMPLES, 'induction-gpt2.onnx');
  const first = Array.from({ length: 24 }, (_, i) => 3 + ((i * 37 + 11) % 200));
  const ids = [[...first, ...first], [...first.slice(5), ...first.slice(5), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]];
  const modes = ['during-run', 'always', 'never'] as const;
  const engines = await Promise.all(modes.flatMap((spinning) => [1, 2].map((threads) => loadEngine(file, createRuntime('node', { spinning, threads })))));
  try {
    // Induction prompts: 8 tokens, then the first 7 again; the answer is the 8th.
    const prompts = Array.from({ length: 16 }, (_, index) => {
      const p = first.slice(index, index + 8);
      return { index, text: '', ids: [...p, ...p.slice(0, 7)], answer: p[7]!, foil: p[6]!, tags: [] };
    });
    let ref: Awaited<ReturnType<(typeof engines)[0]['run']>> | undefined;
    let refScores: number[][] | undefined;
    for (const e of engines) {
      // A full forward, then a sweep's alternating metrics and ablated sessions of the same engine.
      const r = await e.run({ ids, hooks: ['blocks.1.attn.hook_pattern'] });
      const ctx = await prepare(e, prompts, 'zero');
      const scores = (await evaluateSets(ctx, [[], ['a1.h0'], ['a0.h1']] as never[][])).map((s) => s.scores.map((sc) => sc.logitDiff));
      ref ??= r;
      refScores ??= scores;
      assert.ok(maxAbsDiff(r.logits, ref.logits) <= 1e-5, `logits: ${maxAbsDiff(r.logits, ref.logits)}`);
      assert.ok(maxAbsDiff(r.activations['blocks.1.attn.hook_pattern']!, ref.activations['blocks.1.attn.hook_pattern']!) <= 1e-6);
      scores.forEach((set, i) => set.forEach((s, b) => assert.ok(Math.abs(s - refScores![i]![b]!) <= 1e-5, `set ${i} row ${b}: ${s} vs ${refScores![i]![b]}`)));
      assert.ok(Math.abs(scores[1]![0]! - scores[0]![0]!) > 1e-3, 'ablating a1.h0 changes the score');
    }
  } finally {
    await Promise.all(engines.map((e) => e.release()));
  }
});
