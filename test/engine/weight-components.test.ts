// core/onnx/weight-components.ts on every zoo model and both demo models: every float initializer of any size
// classified by the graph's structure, each layer with its own attention and MLP weight matrices and norm.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeModel, intsAttr, makeNode } from '../../core/onnx/model';
import { isFloatType, weightComponents, type WeightRole } from '../../core/onnx/weight-components';
import { loadSidecar } from '../../core/nodejs/load';
import { EXAMPLES, FIXTURES } from '../helpers';
import type { ZooEntry } from './zoo.test';

const ZOO = path.join(FIXTURES, 'zoo');
const manifest = JSON.parse(fs.readFileSync(path.join(ZOO, 'manifest.json'), 'utf8')) as { entries: ZooEntry[] };
const models: { name: string; file: string; family: string }[] = [
  ...manifest.entries.filter((e) => e.expect !== 'refuse').map((e) => ({ name: e.name, file: path.join(ZOO, e.model), family: e.family })),
  { name: 'demo gpt2', file: path.join(EXAMPLES, 'induction-gpt2.onnx'), family: 'gpt2' },
  { name: 'demo llama', file: path.join(EXAMPLES, 'induction-llama.onnx'), family: 'llama' },
];

function roles(file: string): WeightRole[] {
  const model = decodeModel(fs.readFileSync(file), file);
  return weightComponents(model, file, loadSidecar(file));
}

describe('weight components by structure', () => {
  for (const m of models) {
    test(m.name, () => {
      const rs = roles(m.file);
      const layers = Math.max(...rs.flatMap((r) => r.layers)) + 1;
      assert.equal(layers, 2, `${m.name}: layers seen ${layers}`);
      // Every float initializer of more than a few elements has a place (int8 weights: the quantized tensor too).
      const loose = rs.filter((r) => r.component === 'other' && (isFloatType(r.dataType) || r.elements >= 16) && r.elements >= 8);
      assert.deepEqual(loose.map((r) => r.tensor), [], `${m.name}: unclassified`);
      const matrices = (c: string, l: number) => rs.filter((r) => r.component === c && r.layer === l && r.dims.length === 2 && r.elements >= 64);
      for (let l = 0; l < layers; l++) {
        assert.ok(matrices('attention', l).length >= 1, `${m.name}: layer ${l} has no attention matrix`);
        assert.ok(matrices('mlp', l).length >= 1, `${m.name}: layer ${l} has no MLP matrix`);
        assert.ok(rs.some((r) => r.component === 'norm' && r.layers.includes(l)), `${m.name}: layer ${l} has no norm`);
      }
      assert.ok(rs.some((r) => r.component === 'embedding' && r.dims.length === 2), `${m.name}: no embedding table`);
      assert.ok(rs.some((r) => r.uses.includes('unembedding')), `${m.name}: no unembedding`);
      assert.ok(rs.some((r) => r.component === 'final_norm'), `${m.name}: no final norm`);
      // No weight matrix of one layer is claimed by another: an attention or MLP matrix has one layer, unless every
      // layer reads it (a rotary cos/sin table gathered by position).
      for (const r of rs.filter((x) => (x.component === 'attention' || x.component === 'mlp') && x.dims.length === 2 && x.elements >= 256)) {
        assert.ok(r.layers.length === 1 || r.layers.length === layers, `${m.name}: ${r.tensor} (${r.component}) read by layers ${r.layers.join(', ')}`);
        assert.ok(r.consumers.length >= 1);
      }
    });
  }

  test('a tied embedding (the unembedding a Transpose of the token table) is used by both', () => {
    const file = path.join(ZOO, 'gpt2', 'model.onnx');
    const model = decodeModel(fs.readFileSync(file), file);
    const g = model.graph!;
    const lmHead = g.node.find((n) => n.opType === 'MatMul' && n.input[1] === 'onnx::MatMul_599')!;
    g.node.unshift(makeNode('Transpose', ['transformer.wte.weight'], ['tied.T'], 'tied/Transpose', [intsAttr('perm', [1, 0])]));
    lmHead.input = [lmHead.input[0]!, 'tied.T'];
    g.initializer = g.initializer.filter((t) => t.name !== 'onnx::MatMul_599');
    const wte = weightComponents(model, file).find((r) => r.tensor === 'transformer.wte.weight')!;
    assert.equal(wte.component, 'embedding');
    assert.deepEqual(wte.uses, ['embedding', 'unembedding']);
    assert.deepEqual(wte.consumers.sort(), ['/lm_head/MatMul', '/transformer/wte/Gather']);
  });
});
