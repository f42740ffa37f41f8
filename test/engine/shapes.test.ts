// Symbolic shapes (core/onnx/shapes.ts) against onnxruntime: every dimension and shape value the inference claims,
// on every instrumented model we ship or test, checked against the tensors a real run produces, at several batch
// and prompt sizes and with the ablation inputs fed broadcast, per row and per position. A wrong claim would let
// the backward graph skip a sum over a broadcast axis, so this is what keeps gradients right on other exports.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { createRuntime, loadEngine } from '../../core/nodejs/load';
import { addGradients } from '../../core/onnx/autodiff';
import { detectStructure } from '../../core/onnx/detect';
import { IN, LAST_LOGITS, instrument } from '../../core/onnx/instrument';
import { DataType, decodeModel, encodeModel, int64Tensor, intAttr, type Attribute, type TensorProto } from '../../core/onnx/model';
import { inferShapes, type Dim } from '../../core/onnx/shapes';
import { EXAMPLES, FIXTURES } from '../helpers';

const MODELS = [
  path.join(EXAMPLES, 'induction-gpt2.onnx'),
  path.join(EXAMPLES, 'induction-llama.onnx'),
  path.join(FIXTURES, 'models', 'induction-gpt2-opset14.onnx'),
  path.join(FIXTURES, 'models', 'induction-llama-opset14.onnx'),
  path.join(FIXTURES, 'models', 'induction-llama-kvcache.onnx'),
];

type Layout = 'broadcast' | 'rows' | 'positions';

/** Checks one run's tensors against the claims; returns what disagrees. */
function disagreements(claims: Map<string, Dim[]>, actual: Map<string, number[]>): string[] {
  const bad: string[] = [];
  const symbols = new Map<string, number>();
  for (const [t, d] of claims) {
    const a = actual.get(t);
    if (!a) continue;
    if (a.length !== d.length) { bad.push(`${t}: rank ${d.length} claimed, ${a.length} actual`); continue; }
    d.forEach((x, i) => {
      if (typeof x === 'number' && a[i] !== x) bad.push(`${t}[${i}]: ${x} claimed, ${a[i]} actual`);
      if (typeof x === 'string') {
        if (symbols.has(x) && symbols.get(x) !== a[i]) bad.push(`${t}[${i}]: ${x} was ${symbols.get(x)} elsewhere, ${a[i]} here`);
        symbols.set(x, a[i]!);
      }
    });
  }
  for (const [t, d] of claims) {
    const a = actual.get(t);
    if (!a || a.length !== d.length) continue;
    d.forEach((x, i) => {
      if (typeof x !== 'object') return;
      const bound = typeof x.le === 'number' ? x.le : symbols.get(x.le);
      if (a[i]! < 1 || (bound !== undefined && a[i]! > bound)) bad.push(`${t}[${i}]: between 1 and ${x.le} (${bound}) claimed, ${a[i]} actual`);
    });
  }
  return bad;
}

for (const file of MODELS) {
  describe(`symbolic shapes of instrumented ${path.basename(file)} vs onnxruntime`, () => {
    test('every claimed dimension and shape value holds in real runs; the residual stream is fully known', async () => {
      const engine = await loadEngine(file, createRuntime('node'));
      const { heads, dHead, dModel, layers } = engine.info;
      await engine.release();
      const original = decodeModel(fs.readFileSync(file), file);
      const structure = detectStructure(original, file);
      const model = instrument(original, structure).model;
      const graph = model.graph!;
      // input_ids' sizes are never 0 (the engine refuses empty batches and prompts); past key/values' may be.
      const positive = (graph.input.find((v) => v.name === structure.inputIds)?.type?.tensorType?.shape?.dim ?? []).map((d) => d.dimParam!).filter(Boolean);
      const { dims, vals } = inferShapes(graph, { positive });

      // The residual stream is what most broadcasting operators touch: its dims must be proven, not fresh.
      for (const L of structure.layers) {
        const d = dims.get(L.residPre);
        assert.ok(d && d.length === 3 && d.every((x) => typeof x === 'number' || (typeof x === 'string' && !x.startsWith('?'))), `${L.residPre}: ${JSON.stringify(d)}`);
      }

      // So the backward graph from the last logits to the first layer's input sums every broadcast gradient over
      // axes fixed when it is built: none at run time (NonZero finds them). Not with a past key/value cache: the
      // keys' length is past + prompt, a sum of two sizes this does not track, so attention's sums stay at run time.
      const backward = instrument(decodeModel(fs.readFileSync(file), file), structure).model;
      addGradients(backward, LAST_LOGITS, [structure.layers[0]!.residPre], { positive });
      const runTime = backward.graph!.node.filter((n) => n.opType === 'NonZero').length;
      if (/kvcache/.test(file)) assert.ok(runTime <= 4 * layers, `${runTime} gradients summed over axes found at run time`);
      else assert.equal(runTime, 0, 'gradients summed over axes found at run time');

      // Every claimed tensor a node produces becomes a graph output (untyped: onnxruntime infers the type).
      const produced = new Set(graph.node.flatMap((n) => n.output));
      const existing = new Set(graph.output.map((o) => o.name));
      const extra = [...dims.keys()].filter((t) => produced.has(t) && !existing.has(t));
      graph.output.push(...extra.map((name) => ({ name })));
      const session = await ort.InferenceSession.create(encodeModel(model));
      let runs = 0;
      try {
        for (const [B, T] of [[2, 5], [1, 3], [3, 1]] as const) {
          for (const layout of ['broadcast', 'rows', 'positions'] as Layout[]) {
            const feeds: Record<string, ort.Tensor> = {};
            const f32 = (d: number[]) => new ort.Tensor('float32', new Float32Array(d.reduce((a, v) => a * v, 1)).fill(0.5), d);
            const i64 = (d: number[], f: (i: number) => number) => new ort.Tensor('int64', BigInt64Array.from({ length: d.reduce((a, v) => a * v, 1) }, (_, i) => BigInt(f(i))), d);
            for (const v of graph.input) {
              const name = v.name;
              if (name === structure.inputIds) feeds[name] = i64([B, T], (i) => (i * 7) % 11);
              else if (/attention_mask/.test(name)) feeds[name] = i64([B, T], () => 1);
              else if (/position_ids/.test(name)) feeds[name] = i64([B, T], (i) => i % T);
              else if (/past/.test(name)) feeds[name] = f32((v.type?.tensorType?.shape?.dim ?? []).map((d, i) => (d.dimValue ? Number(d.dimValue) : i === 0 ? B : 0)));
            }
            const Tp = layout === 'positions' ? T : 1;
            const full = layout !== 'broadcast';
            for (let l = 0; l < layers; l++) {
              feeds[IN.zMask(l)] = f32(full ? [B, heads] : [1, 1]);
              feeds[IN.zAdd(l)] = f32(full ? [B, Tp, heads, dHead] : [1, 1, 1, 1]);
              feeds[IN.mlpMask(l)] = f32(full ? [B] : [1]);
              feeds[IN.mlpAdd(l)] = f32(full ? [B, Tp, dModel] : [1, 1, 1]);
            }
            const out = await session.run(feeds);
            const actual = new Map<string, number[]>();
            for (const [name, t] of Object.entries(out)) actual.set(name, t.dims.map(Number));
            const bad = disagreements(dims, actual);
            // Shape values: the elements of small integer tensors, with the symbols this run gave.
            const symbols = new Map<string, number>();
            for (const [t, d] of dims) d.forEach((x, i) => { if (typeof x === 'string' && actual.has(t)) symbols.set(x, actual.get(t)![i]!); });
            for (const [t, v] of vals) {
              const o = out[t];
              if (!o || (o.type !== 'int64' && o.type !== 'int32')) continue;
              const data = Array.from(o.data as BigInt64Array | Int32Array, Number);
              if (data.length !== v.length) { bad.push(`${t}: ${v.length} values claimed, ${data.length} actual`); continue; }
              v.forEach((x, i) => {
                const want = typeof x === 'number' ? x : typeof x === 'string' ? symbols.get(x) : undefined;
                if (want !== undefined && want !== data[i]) bad.push(`${t} value ${i}: ${JSON.stringify(x)} (${want}) claimed, ${data[i]} actual`);
              });
            }
            assert.deepEqual(bad.slice(0, 10), [], `B ${B}, T ${T}, ablation inputs ${layout}`);
            runs++;
          }
        }
      } finally {
        await session.release();
      }
      assert.equal(runs, 9);
      assert.ok(extra.length > 50, `${extra.length} tensors checked`);
    });
  });
}

// A model whose dims the exporter left unnamed, or named differently on two inputs, must not be claimed equal.
describe('symbolic shapes: what is not proven stays unknown', () => {
  const vi = (name: string, dim: ({ dimParam: string } | { dimValue: number })[], elemType: number = DataType.FLOAT) => ({ name, type: { tensorType: { elemType, shape: { dim } } } });
  const graphOf = (inputs: ReturnType<typeof vi>[], node: { opType: string; input: string[]; output: string[]; attribute?: Attribute[] }[], initializer: TensorProto[] = []) =>
    ({ name: 'g', node: node.map((n) => ({ attribute: [], ...n, name: n.output[0]!, domain: '' })), initializer, input: inputs, output: [], valueInfo: [] });
  const fresh = (d: Dim | undefined) => typeof d === 'string' && d.startsWith('?');

  test('operator corners: split sizes not known, Reduce* with no axes as a no-op, Squeeze of an empty list, sizes that may be 0, narrowing casts', () => {
    const { dims, vals } = inferShapes(graphOf(
      [vi('x', [{ dimValue: 10 }]), vi('s', [{ dimValue: 2 }], DataType.INT64), vi('m', [{ dimValue: 2 }, { dimValue: 3 }]), vi('q', [{ dimValue: 3 }, { dimValue: 1 }]),
        vi('p', [{ dimValue: 5 }, { dimParam: 'P' }])],
      [
        { opType: 'Split', input: ['x', 's'], output: ['a', 'b'] },
        { opType: 'ReduceSum', input: ['m'], output: ['r'], attribute: [intAttr('noop_with_empty_axes', 1)] },
        { opType: 'Squeeze', input: ['q', 'none'], output: ['sq'] },
        { opType: 'Shape', input: ['p'], output: ['ps'] }, { opType: 'Gather', input: ['ps', 'one'], output: ['pp'] },
        { opType: 'Concat', input: ['pp', 'minus1'], output: ['shape'], attribute: [intAttr('axis', 0)] }, { opType: 'Reshape', input: ['p', 'shape'], output: ['rp'] },
        { opType: 'Cast', input: ['big'], output: ['big32'], attribute: [intAttr('to', DataType.INT32)] },
      ],
      [int64Tensor('none', []), int64Tensor('one', [1]), int64Tensor('minus1', [-1]), int64Tensor('big', [2 ** 62])],
    ));
    assert.ok(fresh(dims.get('a')![0]) && fresh(dims.get('b')![0]), `split by unknown sizes: ${JSON.stringify([dims.get('a'), dims.get('b')])}`);
    assert.deepEqual(dims.get('r'), [2, 3]);
    assert.deepEqual(dims.get('sq'), [3]);
    // shape ['$P', -1]: with P = 0 the 0 copies p's first size (5), so the first size is not '$P'.
    assert.ok(fresh(dims.get('rp')![0]), JSON.stringify(dims.get('rp')));
    assert.equal(vals.get('big32'), undefined);
  });

  test('different dim_params broadcast to an unknown size; the same one, and a bounded one, to itself', () => {
    const { dims } = inferShapes(graphOf(
      [vi('a', [{ dimParam: 'B' }, { dimValue: 3 }]), vi('b', [{ dimParam: 'C' }, { dimValue: 3 }]), vi('c', [{ dimParam: 'circuitlens.upto:B' }, { dimValue: 1 }])],
      [{ opType: 'Add', input: ['a', 'b'], output: ['ab'] }, { opType: 'Mul', input: ['a', 'c'], output: ['ac'] }, { opType: 'Mul', input: ['b', 'c'], output: ['bc'] }],
    ));
    const ab = dims.get('ab')!;
    assert.ok(typeof ab[0] === 'string' && ab[0].startsWith('?') && ab[1] === 3, JSON.stringify(ab));
    assert.deepEqual(dims.get('ac'), ['$B', 3]);
    assert.ok(String(dims.get('bc')![0]).startsWith('?'), JSON.stringify(dims.get('bc')));
  });
});
