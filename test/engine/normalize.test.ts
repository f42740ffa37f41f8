// Export variants brought to plain form at load (core/onnx/normalize.ts), each checked by running the graph
// before and after on onnxruntime: weight-only QDQ and fp16 weights folded, WebGPU's Sin/Cos replaced.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { UserError } from '../../core/errors';
import { createRuntime } from '../../core/nodejs/load';
import { DataType, encodeModel, intAttr, makeNode, type OnnxModel, type TensorProto } from '../../core/onnx/model';
import { normalizeExport, preciseTrigForWebGpu } from '../../core/onnx/normalize';

function modelOf(nodes: OnnxModel['graph'] extends infer G ? G extends { node: infer N } ? N : never : never, inits: TensorProto[], inputs: string[], outputs: string[], opset = 17): OnnxModel {
  return {
    irVersion: 8, opsetImport: [{ domain: '', version: opset }], producerName: 'test', producerVersion: '', metadataProps: [],
    graph: {
      name: 'g', node: nodes, initializer: inits, valueInfo: [],
      input: inputs.map((name) => ({ name, type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimParam: 'n' }] } } } })),
      output: outputs.map((name) => ({ name, type: { tensorType: { elemType: DataType.FLOAT } } })),
    },
  };
}

async function run(model: OnnxModel, x: Float32Array, outputs: string[]): Promise<Float32Array[]> {
  const s = await createRuntime('node').createSession(encodeModel(model), []);
  try {
    const r = await s.run({ x: { type: 'float32', dims: [x.length], data: x } }, outputs);
    return outputs.map((o) => r[o]!.data as Float32Array);
  } finally {
    await s.release();
  }
}

test('Sin and Cos rewritten for WebGPU agree with the exact functions to 2e-6 over ±25,000 rad', async () => {
  const x = new Float32Array(4001);
  for (let i = 0; i < x.length; i++) x[i] = Math.fround(i < 2000 ? (i - 1000) * 0.003 : (i - 3000) * 25.1327 + (i % 7) * 0.37);
  const model = modelOf([makeNode('Sin', ['x'], ['s'], 'sin'), makeNode('Cos', ['x'], ['c'], 'cos')], [], ['x'], ['s', 'c']);
  assert.equal(preciseTrigForWebGpu(model), 2);
  assert.ok(!model.graph!.node.some((n) => n.opType === 'Sin' || n.opType === 'Cos'));
  const [s, c] = await run(model, x, ['s', 'c']);
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(s![i]! - Math.sin(x[i]!)), Math.abs(c![i]! - Math.cos(x[i]!)));
  assert.ok(worst <= 2e-6, `max error ${worst}`);
});

test('weight-only QDQ (per-channel int8) and fp16 weights fold into float32 weights with the same outputs', async () => {
  const q = new Int8Array([-128, -3, 0, 5, 127, 64]);
  const fp16 = new Uint16Array([0x3c00, 0xc000, 0x3555, 0x0001, 0x7bff, 0x0000]); // 1, -2, ~0.333, smallest subnormal, 65504, 0
  const inits: TensorProto[] = [
    { name: 'wq', dims: [2, 3], dataType: 3, rawData: new Uint8Array(q.buffer) },
    { name: 'scale', dims: [3], dataType: DataType.FLOAT, rawData: new Uint8Array(Float32Array.of(0.5, 0.25, 2).buffer) },
    { name: 'zp', dims: [3], dataType: 3, rawData: new Uint8Array(Int8Array.of(1, 0, -2).buffer) },
    { name: 'wh', dims: [2, 3], dataType: DataType.FLOAT16, rawData: new Uint8Array(fp16.buffer) },
  ];
  const nodes = () => [
    makeNode('DequantizeLinear', ['wq', 'scale', 'zp'], ['w1'], 'dq', [intAttr('axis', 1)]),
    makeNode('Cast', ['wh'], ['w2'], 'cast', [intAttr('to', DataType.FLOAT)]),
    makeNode('Add', ['w1', 'w2'], ['w'], 'add'),
    makeNode('Reshape', ['w', 'flat'], ['wf'], 'flatten'),
    makeNode('Mul', ['x', 'wf'], ['y'], 'mul'),
  ];
  const flat: TensorProto = { name: 'flat', dims: [1], dataType: DataType.INT64, rawData: new Uint8Array(BigInt64Array.of(-1n).buffer) };
  const x = Float32Array.of(1, 2, 3, 4, 5, 6);
  const before = modelOf(nodes(), [...inits, flat], ['x'], ['y'], 19);
  const after = modelOf(nodes(), [...inits.map((t) => ({ ...t })), flat], ['x'], ['y'], 19);
  const { notes } = normalizeExport(after, 'm.onnx');
  assert.deepEqual(after.graph!.node.map((n) => n.opType), ['Add', 'Reshape', 'Mul']);
  assert.match(notes.join('; '), /float16/);
  assert.match(notes.join('; '), /int8 with DequantizeLinear/);
  const [y0] = await run(before, x, ['y']);
  const [y1] = await run(after, x, ['y']);
  assert.deepEqual(Array.from(y1!), Array.from(y0!));
});

test('integer-activation quantization is refused with the operators and a node named', () => {
  const model = modelOf([makeNode('DynamicQuantizeLinear', ['x'], ['xq', 'xs', 'xz'], 'quant_x'), makeNode('Identity', ['xs'], ['y'], 'id')], [], ['x'], ['y']);
  assert.throws(() => normalizeExport(model, 'model_quantized.onnx'), (e: unknown) =>
    e instanceof UserError && /model_quantized\.onnx is quantized with integer activations \(DynamicQuantizeLinear, e\.g\. node "quant_x"\)/.test(e.message));
});
