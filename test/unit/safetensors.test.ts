import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { decodeSafetensors, encodeSafetensors } from '../../core/formats/safetensors';

describe('safetensors', () => {
  test('round trip: shapes, values, metadata; header length little-endian and padded to 8 bytes', () => {
    const tensors = [
      { name: 'onnx::MatMul_263', dims: [2, 3], data: Float32Array.of(1, 0.01, -2.5, 3, 4, 5) },
      { name: 'blocks.0.attn.qkv.bias', dims: [3], data: Float32Array.of(0.01, 1, 1) },
      { name: 'scalar', dims: [], data: Float32Array.of(7) },
      { name: 'empty', dims: [0, 4], data: new Float32Array(0) },
    ];
    const bytes = encodeSafetensors({ tensors, metadata: { format: 'x', pytorch_names: '{"a": "b"}' } });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert.equal(n % 8, 0);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    assert.deepEqual(header['onnx::MatMul_263'], { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
    assert.deepEqual(header['blocks.0.attn.qkv.bias'].data_offsets, [24, 36]);
    assert.equal(bytes.length, 8 + n + 4 * 10);
    const back = decodeSafetensors(bytes, 'm.safetensors');
    assert.deepEqual(back.metadata, { format: 'x', pytorch_names: '{"a": "b"}' });
    assert.deepEqual(back.tensors.map((t) => [t.name, t.dims, [...t.data]]), tensors.map((t) => [t.name, t.dims, [...t.data]]));
  });

  test('bad files are refused with the file named', () => {
    assert.throws(() => decodeSafetensors(new Uint8Array(4), 'x.safetensors'), /x\.safetensors is not a float32 safetensors file: shorter/);
    const bad = (header: object, data = 0) => {
      const json = new TextEncoder().encode(JSON.stringify(header));
      const b = new Uint8Array(8 + json.length + data);
      new DataView(b.buffer).setBigUint64(0, BigInt(json.length), true);
      b.set(json, 8);
      return b;
    };
    assert.throws(() => decodeSafetensors(bad({ t: { dtype: 'F16', shape: [1], data_offsets: [0, 2] } }, 2), 'y'), /dtype "F16"/);
    assert.throws(() => decodeSafetensors(bad({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4), 'y'), /data_offsets \[0, 4\] for shape \[2\]/);
    assert.throws(() => decodeSafetensors(bad({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 4), 'y'), /data_offsets/);
    assert.throws(() => decodeSafetensors(bad({ __metadata__: { k: 1 } }), 'y'), /__metadata__\["k"\] is not a string/);
    assert.throws(() => encodeSafetensors({ tensors: [{ name: 'a', dims: [2], data: new Float32Array(3) }], metadata: {} }), /3 values for shape \[2\]/);
  });
});
