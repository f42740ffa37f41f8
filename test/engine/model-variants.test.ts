// Models that differ in form but not in function: external data, opset 18, an unrecognised-but-equivalent
// graph with a hooks.json sidecar. All must give the PyTorch reference's numbers. Fused graphs must be refused.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { decodeModel, encodeModel, int64Tensor, intAttr, makeNode, num, type OnnxModel } from '../../core/onnx/model';
import { createRuntime, loadEngine } from '../../core/nodejs/load';
import { decodeRef, EXAMPLES, FIXTURES, loadReference, maxAbsDiff, TOL } from '../helpers';
import { cli } from '../cli/run-cli';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-variants-'));
const load = (name: string) => decodeModel(fs.readFileSync(path.join(EXAMPLES, `${name}.onnx`)), name);

async function assertAllHooksMatch(file: string, refName: string, runtime: 'node' | 'wasm' = 'node') {
  const ref = loadReference(refName);
  const engine = await loadEngine(file, createRuntime(runtime));
  try {
    const hooks = Object.keys(ref.clean).filter((h) => h !== 'logits');
    const res = await engine.run({ ids: ref.prompts.map((p) => p.ids), hooks });
    for (const h of hooks) assert.ok(maxAbsDiff(res.activations[h]!, decodeRef(ref.clean[h]!)) <= TOL, h);
    assert.ok(maxAbsDiff(res.logits, decodeRef(ref.clean['logits']!)) <= TOL, 'logits');
    return engine.info;
  } finally {
    await engine.release();
  }
}

describe('external data (the format of models over 2 GB)', () => {
  const dir = path.join(tmp, 'external');
  fs.mkdirSync(dir);
  const model = load('induction-llama');
  const chunks: Uint8Array[] = [];
  let offset = 0;
  let moved = 0;
  for (const t of model.graph!.initializer) {
    if (!t.rawData || t.rawData.length < 1024) continue;
    chunks.push(t.rawData);
    t.externalData = [{ key: 'location', value: 'weights/llama.bin' }, { key: 'offset', value: String(offset) }, { key: 'length', value: String(t.rawData.length) }];
    t.dataLocation = 1;
    offset += t.rawData.length;
    t.rawData = new Uint8Array(0);
    moved++;
  }
  fs.mkdirSync(path.join(dir, 'weights'));
  fs.writeFileSync(path.join(dir, 'weights', 'llama.bin'), Buffer.concat(chunks));
  const file = path.join(dir, 'llama-external.onnx');
  fs.writeFileSync(file, encodeModel(model));
  fs.copyFileSync(path.join(EXAMPLES, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));

  test('the graph file holds no weights', () => {
    assert.ok(moved >= 10);
    assert.ok(fs.statSync(file).size < 100_000, `graph file is ${fs.statSync(file).size} bytes`);
  });
  for (const runtime of ['node', 'wasm'] as const) {
    test(`loads on ${runtime} and matches PyTorch`, async () => { await assertAllHooksMatch(file, 'induction-llama', runtime); });
  }
  test('a missing data file is a clear error', () => {
    const lonely = path.join(tmp, 'lonely.onnx');
    fs.copyFileSync(file, lonely);
    const r = cli(['info', lonely]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /keeps weights in "weights\/llama\.bin", which is missing/);
  });
});

describe('opset 18 (Reduce* axes as inputs)', () => {
  test('a Llama graph converted to opset 18 matches PyTorch', async () => {
    const model = load('induction-llama');
    let converted = 0;
    const g = model.graph!;
    g.node.forEach((n, i) => {
      if (n.opType !== 'ReduceMean') return;
      const axes = n.attribute.find((a) => a.name === 'axes')!;
      const name = `opset18_axes_${i}`;
      g.initializer.push(int64Tensor(name, axes.ints!.map(num)));
      n.input.push(name);
      n.attribute = n.attribute.filter((a) => a.name !== 'axes');
      converted++;
    });
    model.opsetImport.find((o) => !o.domain)!.version = 18;
    assert.ok(converted >= 5, `converted ${converted} ReduceMean nodes`);
    const file = path.join(tmp, 'llama-opset18.onnx');
    fs.writeFileSync(file, encodeModel(model));
    const info = await assertAllHooksMatch(file, 'induction-llama');
    assert.equal(info.opset, 18);
  });
});

describe('graphs detection does not recognise', () => {
  // Softmax written out as Exp / ReduceSum(Exp): same function, no Softmax node to find.
  function decomposeSoftmax(model: OnnxModel): Record<string, string> {
    const g = model.graph!;
    const renamed: Record<string, string> = {};
    g.initializer.push(int64Tensor('decomposed_axes', [-1]));
    g.node = g.node.flatMap((n, i) => {
      if (n.opType !== 'Softmax') return [n];
      const [x, y] = [n.input[0]!, n.output[0]!];
      const e = `softmax_${i}_exp`;
      const s = `softmax_${i}_sum`;
      const out = `softmax_${i}_div`;
      renamed[y] = out;
      return [
        makeNode('Exp', [x], [e], `exp_${i}`),
        makeNode('ReduceSum', [e, 'decomposed_axes'], [s], `sum_${i}`, [intAttr('keepdims', 1)]),
        makeNode('Div', [e, s], [out], `div_${i}`),
        makeNode('Identity', [out], [y], `id_${i}`),
      ];
    });
    return renamed;
  }

  test('detection fails with a message naming what was found and what is missing', () => {
    const model = load('induction-gpt2');
    decomposeSoftmax(model);
    // Remove the Identity so no tensor keeps the Softmax's old name.
    const file = path.join(tmp, 'no-softmax.onnx');
    fs.writeFileSync(file, encodeModel(model));
    const r = cli(['info', file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /Found: input "input_ids"; output "logits"; token embedding; learned position embedding; 0 residual branches|Found: .*residual branches/);
    assert.match(r.stderr, /Missing: .*Softmax/);
    assert.match(r.stderr, /hooks\.json/);
  });

  test('a <model>.hooks.json sidecar maps the hooks by hand and the numbers match PyTorch', async () => {
    const original = JSON.parse(cli(['info', path.join(EXAMPLES, 'induction-gpt2.onnx'), '--json']).stdout).hooks as Record<string, string>;
    const model = load('induction-gpt2');
    const renamed = decomposeSoftmax(model);
    const dir = path.join(tmp, 'sidecar');
    fs.mkdirSync(dir);
    const file = path.join(dir, 'gpt2-custom.onnx');
    fs.writeFileSync(file, encodeModel(model));
    const hooks = Object.fromEntries(Object.entries(original).map(([h, t]) => [h, renamed[t] ?? t]));
    hooks['hook_pos_embed'] = original['hook_pos_embed']!;
    fs.writeFileSync(path.join(dir, 'gpt2-custom.hooks.json'), JSON.stringify({ hooks, contextLength: 64 }, null, 2));
    const info = await assertAllHooksMatch(file, 'induction-gpt2');
    assert.match(info.detection, /gpt2-custom\.hooks\.json$/);
    assert.equal(info.hooks['blocks.0.attn.hook_pattern'], renamed[original['blocks.0.attn.hook_pattern']!]);
  });

  test('a sidecar naming a tensor the model lacks is refused', () => {
    const dir = path.join(tmp, 'badsidecar');
    fs.mkdirSync(dir);
    fs.copyFileSync(path.join(EXAMPLES, 'induction-gpt2.onnx'), path.join(dir, 'm.onnx'));
    fs.writeFileSync(path.join(dir, 'm.hooks.json'), JSON.stringify({ hooks: { 'blocks.0.attn.hook_pattern': 'no_such_tensor' } }));
    const r = cli(['info', path.join(dir, 'm.onnx')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /m\.hooks\.json: hook "blocks\.0\.attn\.hook_pattern" maps to tensor "no_such_tensor", which the model does not have/);
  });
});

describe('graphs pre-fused by onnxruntime', () => {
  for (const name of ['induction-gpt2', 'induction-llama']) {
    test(`${name} optimised by onnxruntime is refused with the fused operators named`, async () => {
      const file = path.join(tmp, `${name}-fused.onnx`);
      await ort.InferenceSession.create(path.join(EXAMPLES, `${name}.onnx`), { graphOptimizationLevel: 'extended', optimizedModelFilePath: file });
      const r = cli(['info', file]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /unsupported fused operators found: com\.microsoft\.\w+/);
      assert.match(r.stderr, /pre-fused .* Export the plain model/);
    });
  }
});

describe('Hugging Face signature with KV cache', () => {
  // The Llama demo model exported as optimum's decoder with past (scripts/make_hf_signature_fixture.py): inputs
  // attention_mask [B, past+T], position_ids [B, T] (rotary by position) and past_key_values.L.key/value
  // [B, 2, past, 16]; outputs logits and present.L.key/value. The engine feeds ones, 0..T-1 and an empty past.
  const dir = path.join(tmp, 'kvcache');
  fs.mkdirSync(dir);
  const file = path.join(dir, 'induction-llama-kvcache.onnx');
  fs.copyFileSync(path.join(FIXTURES, 'models', 'induction-llama-kvcache.onnx'), file);
  fs.copyFileSync(path.join(EXAMPLES, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  const ref = loadReference('induction-llama');

  test('detected as Llama from the graph, with attention_mask, position_ids and the past key/values to fill', async () => {
    const engine = await loadEngine(file);
    try {
      const past = Array.from({ length: ref.config.n_layers }, (_, l) => [`past_key_values.${l}.key`, `past_key_values.${l}.value`]).flat();
      assert.deepEqual(engine.structure.extraInputs.map((v) => v.name), ['attention_mask', 'position_ids', ...past]);
      assert.equal(engine.structure.source, 'graph');
      const { architecture, layers, heads, dModel, dHead, vocab, contextLength } = engine.info;
      assert.deepEqual(
        { architecture, layers, heads, dModel, dHead, vocab, contextLength },
        { architecture: 'llama', layers: ref.config.n_layers, heads: ref.config.n_heads, dModel: ref.config.d_model, dHead: ref.config.d_head, vocab: ref.config.vocab, contextLength: ref.config.n_ctx },
      );
      // The reference records every hook the engine offers, so the comparisons below leave none out.
      assert.deepEqual([...engine.hookNames].sort(), Object.keys(ref.clean).sort());
      assert.deepEqual(engine.tokenizer!.encode(ref.prompts[0]!.text), ref.prompts[0]!.ids);
    } finally {
      await engine.release();
    }
  });
  for (const runtime of ['node', 'wasm'] as const) {
    test(`every hook and the logits match PyTorch on ${runtime} (4 prompts batched, empty past)`, async () => {
      await assertAllHooksMatch(file, 'induction-llama', runtime);
    });
  }
});
