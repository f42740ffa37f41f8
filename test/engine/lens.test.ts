// Logit lens: each layer's residual stream through the final norm and unembedding (cloned in the graph).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { loadEngine } from '../../core/nodejs/load';
import { EXAMPLES, maxAbsDiff } from '../helpers';

for (const name of ['induction-gpt2', 'induction-llama']) {
  test(`${name}: the last layer's lens is the logits; earlier layers read out their own residual stream`, async () => {
    const engine = await loadEngine(path.join(EXAMPLES, `${name}.onnx`));
    try {
      const ids = engine.tokenizer!.encode('Mary walked garden red apple dog Mary walked garden red');
      const r = await engine.run({ ids: [ids, ids], lens: true, hooks: ['blocks.0.hook_resid_post'] });
      assert.equal(r.lens!.length, engine.info.layers);
      for (const t of r.lens!) assert.deepEqual(t.dims, [2, ids.length, engine.info.vocab]);
      assert.equal(maxAbsDiff(r.lens![engine.info.layers - 1]!, r.logits), 0);
      assert.ok(maxAbsDiff(r.lens![0]!, r.logits) > 1, 'layer 0 reads out something else');
      // The lens is a function of resid_post alone: a run whose layer-1 is ablated keeps layer 0's lens.
      const abl = await engine.run({ ids: [ids, ids], lens: true, ablations: [{ nodes: ['a1.h0', 'a1.h1', 'm1'], kind: 'zero' }, undefined] });
      assert.ok(maxAbsDiff(abl.lens![0]!, r.lens![0]!) < 1e-5);
      assert.ok(maxAbsDiff(abl.lens![1]!, r.lens![1]!) > 0.1);
      // The plain forward session has no lens outputs (they would cost an unembedding per layer on every run).
      const plain = await engine.run({ ids: [ids] });
      assert.equal(plain.lens, undefined);
    } finally {
      await engine.release();
    }
  });
}
