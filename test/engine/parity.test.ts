// Engine vs the independent PyTorch reference (forward hooks), for every hook and for zero/mean ablations,
// on both demo model families, both onnxruntime builds, and both exported opsets.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import type { Engine } from '../../core/engine/engine';
import type { Ablation } from '../../core/engine/types';
import { createRuntime, loadEngine, type RuntimeName } from '../../core/nodejs/load';
import type { NodeId } from '../../core/ids';
import { decodeRef, EXAMPLES, FIXTURES, loadReference, maxAbsDiff, row, TOL } from '../helpers';

const CASES: { model: string; file: string; runtime: RuntimeName }[] = [];
for (const model of ['induction-gpt2', 'induction-llama']) {
  CASES.push({ model, file: path.join(EXAMPLES, `${model}.onnx`), runtime: 'node' });
  CASES.push({ model, file: path.join(EXAMPLES, `${model}.onnx`), runtime: 'wasm' });
  CASES.push({ model, file: path.join(FIXTURES, 'models', `${model}-opset14.onnx`), runtime: 'node' });
}

for (const c of CASES) {
  describe(`${path.basename(c.file)} on ${c.runtime}`, () => {
    const ref = loadReference(c.model);
    const ids = ref.prompts.map((p) => p.ids);
    let engine: Engine;
    before(async () => { engine = await loadEngine(c.file, createRuntime(c.runtime)); });
    after(async () => { await engine.release(); });

    test('reports the reference architecture', () => {
      assert.equal(engine.info.layers, ref.config.n_layers);
      assert.equal(engine.info.heads, ref.config.n_heads);
      assert.equal(engine.info.dModel, ref.config.d_model);
      assert.equal(engine.info.dHead, ref.config.d_head);
      assert.equal(engine.info.vocab, ref.config.vocab);
      assert.equal(engine.info.contextLength, ref.config.n_ctx);
      assert.equal(engine.info.architecture, ref.config.arch);
      assert.deepEqual(Object.keys(engine.info.hooks).sort(), Object.keys(ref.clean).sort());
    });

    test('every hook matches PyTorch (max abs diff ≤ 1e-4)', async () => {
      const hooks = Object.keys(ref.clean).filter((h) => h !== 'logits');
      const res = await engine.run({ ids, hooks });
      for (const h of hooks) {
        const d = maxAbsDiff(res.activations[h]!, decodeRef(ref.clean[h]!));
        assert.ok(d <= TOL, `${h}: max abs diff ${d}`);
      }
      assert.ok(maxAbsDiff(res.logits, decodeRef(ref.clean['logits']!)) <= TOL);
    });

    test('zero and mean ablations of every head and MLP match PyTorch, one call per ablation', async () => {
      const means = await engine.means(ids);
      for (const a of ref.ablations) {
        const abl: Ablation = { nodes: a.nodes as NodeId[], kind: a.kind };
        const hooks = Object.keys(a.hooks);
        const res = await engine.run({ ids, hooks, ablations: ids.map(() => abl), means });
        const d = maxAbsDiff(res.logits, decodeRef(a.logits));
        assert.ok(d <= TOL, `${a.kind} ${a.nodes}: logits diff ${d}`);
        for (const h of hooks) assert.ok(maxAbsDiff(res.activations[h]!, decodeRef(a.hooks[h]!)) <= TOL, `${a.kind} ${a.nodes}: ${h}`);
      }
    });

    test('a different ablation in every batch row, all in one call', async () => {
      const means = await engine.means(ids);
      // Rows: clean prompts first, then every (ablation, prompt) pair.
      const rows: number[][] = [...ids];
      const ablations: (Ablation | undefined)[] = ids.map(() => undefined);
      for (const a of ref.ablations) ids.forEach((p) => { rows.push(p); ablations.push({ nodes: a.nodes as NodeId[], kind: a.kind }); });
      const res = await engine.run({ ids: rows, ablations, means });
      const clean = decodeRef(ref.clean['logits']!);
      ids.forEach((_, p) => assert.ok(maxAbsDiff(row(res.logits, p), row(clean, p)) <= TOL, `clean row ${p}`));
      ref.ablations.forEach((a, i) => {
        const want = decodeRef(a.logits);
        ids.forEach((_, p) => {
          const d = maxAbsDiff(row(res.logits, ids.length + i * ids.length + p), row(want, p));
          assert.ok(d <= TOL, `${a.kind} ${a.nodes} prompt ${p}: ${d}`);
        });
      });
      // The ablations really change the output: a test that cannot fail proves nothing.
      const changed = ref.ablations.filter((_, i) => maxAbsDiff(row(res.logits, ids.length + i * ids.length), row(clean, 0)) > 0.1);
      assert.ok(changed.length >= ref.ablations.length / 2, `only ${changed.length} ablations changed the logits`);
    });
  });
}
