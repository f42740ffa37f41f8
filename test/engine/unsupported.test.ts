// What cannot be supported says so, and the tool goes on: an operator without a gradient rule is named with its
// node and the capability, and attribution that chose gradients itself falls back to exact patching, saying why.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { prepare, type EvalContext } from '../../core/analysis/evaluate';
import { attributeEdges, edgeGradientScores, edgePatchingScores } from '../../core/analysis/attribute/edges';
import { prepareEdges, type EdgeContext } from '../../core/analysis/edge-context';
import { eapNodeScores } from '../../core/analysis/attribute/gradient';
import { Engine } from '../../core/engine/engine';
import { UserError } from '../../core/errors';
import { decodeModel } from '../../core/onnx/model';
import { createRuntime } from '../../core/nodejs/load';
import { FIXTURES } from '../helpers';

const ZOO = path.join(FIXTURES, 'zoo');

describe('an operator without a gradient rule (Softsign in place of the GELU tanh of layer 0)', () => {
  let engine: Engine;
  let ec: EdgeContext<EvalContext>;
  before(async () => {
    const model = decodeModel(new Uint8Array(fs.readFileSync(path.join(ZOO, 'gpt2', 'model.onnx'))), 'gpt2-softsign');
    const tanh = model.graph!.node.find((n) => n.opType === 'Tanh' && n.name.includes('h.0/mlp'));
    assert.ok(tanh, 'the zoo GPT-2 has a tanh GELU in its first MLP');
    tanh.opType = 'Softsign';
    tanh.name = 'my_softsign';
    engine = await Engine.fromModel(createRuntime('node'), model, { what: 'gpt2-softsign.onnx' });
    const ref = JSON.parse(fs.readFileSync(path.join(ZOO, 'gpt2.grads.json'), 'utf8')) as { prompts: { ids: number[]; answer: number; foil: number }[] };
    const prompts = ref.prompts.map((p, index) => ({ index, text: '', ids: p.ids, answer: p.answer, foil: p.foil, tags: ['task'] }));
    ec = await prepareEdges(await prepare(engine, prompts, 'mean'));
  });
  after(async () => { await engine?.release(); });

  test('node and edge gradients are refused naming the operator, the node and the capability', async () => {
    const named = (e: unknown) => e instanceof UserError && /gradient attribution \(EAP, EAP-IG\) does not support operator Softsign \(node "my_softsign"\)/.test(e.message) && /--method patching/.test(e.message);
    await assert.rejects(eapNodeScores(ec.ctx, 'logit_diff'), named);
    await assert.rejects(edgeGradientScores(ec, 'logit_diff'), named);
  });

  test('attribution that picks its method falls back to exact path patching and says why', async () => {
    const r = await attributeEdges(ec, 'logit_diff', 0);
    assert.equal(r.method, 'path patching');
    assert.match(r.fallback ?? '', /gradients are not available for this model \(.*Softsign.*my_softsign.*\); edges scored by exact path patching instead/);
    const exact = await edgePatchingScores(ec, 'logit_diff');
    assert.deepEqual(r.edges, exact.edges);
    assert.ok(r.edges.some((e) => Math.abs(e.score) > 1e-3));
  });
});
