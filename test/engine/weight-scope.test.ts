// Scopes on real models: which matrices each names, and a circuit's entries plus the rest of the attention and MLP
// entries covering them exactly once, on zoo families with fused interleaved QKV (gpt_neox), fused Conv1D-style
// Gemm QKV (gpt2) and separate q/k/v with grouped keys and a gated MLP (llama).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeModel } from '../../core/onnx/model';
import { weightScope } from '../../core/onnx/weight-scope';
import { FIXTURES } from '../helpers';

for (const [family, file, circuit] of [
  ['gpt_neox', 'gpt_neox.onnx', ['a0.h1', 'a1.h2', 'm0']], ['gpt2', 'gpt2/model.onnx', ['a1.h0', 'a1.h3', 'm1']], ['llama', 'llama/model.onnx', ['a0.h0', 'a1.h3', 'm1']],
] as const) {
  test(`${family}: attn/mlp/embed matrices; circuit and outside split attention and MLP entries`, () => {
    const p = path.join(FIXTURES, 'zoo', file);
    const model = decodeModel(new Uint8Array(fs.readFileSync(p)), p);
    const count = (kind: 'all' | 'attn' | 'mlp' | 'embed') => weightScope(model, p, { kind }).tensors;
    const [all, attn, mlp, embed] = (['all', 'attn', 'mlp', 'embed'] as const).map(count);
    assert.equal(all!.length, attn!.length + mlp!.length + embed!.length);
    assert.ok(attn!.length >= 4 && mlp!.length >= 4 && embed!.length >= 2, `${attn!.length} ${mlp!.length} ${embed!.length}`);
    // Every matrix: rank 2, float32, a channel axis from its reader.
    for (const t of all!) assert.ok(t.dims.length === 2 && (t.use.channelAxis === 0 || t.use.channelAxis === 1), `${t.tensor}: ${JSON.stringify(t.use)}`);
    const nodes = { name: 'c', nodes: circuit };
    const inside = weightScope(model, p, { kind: 'circuit', circuit: nodes }).tensors;
    const outside = weightScope(model, p, { kind: 'outside', circuit: nodes }).tensors;
    const sum = (ts: typeof all) => ts!.reduce((a, t) => a + t.count, 0);
    assert.equal(sum(inside) + sum(outside), sum(attn) + sum(mlp));
    // No entry in both.
    const byName = new Map(outside.map((t) => [t.tensor, t]));
    for (const t of inside) {
      const o = byName.get(t.tensor);
      if (!o) continue;
      for (let i = 0; i < t.dims[0]! * t.dims[1]!; i++) assert.ok(!((t.entries?.[i] ?? 1) && (o.entries?.[i] ?? 1)), `${t.tensor}[${i}] in both`);
    }
  });
}
