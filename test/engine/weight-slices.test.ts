// The weights a node owns (core/onnx/weight-slices.ts) are exactly that node's, on every zoo family and the demo
// models: zeroing a head's owned q/k/v/o slices changes its own hook_z (and, with grouped key/value heads, its
// group's) and no other head's; zeroing its output-projection rows alone gives the attention output with the head
// zero-ablated; zeroing an MLP's owned weights makes its output 0 and leaves the layer's heads alone.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readProtectModel } from '../../core/analysis/protect/protect';
import { Engine } from '../../core/engine/engine';
import type { F32 } from '../../core/engine/runtime';
import { allComponentNodes, headId, mlpId, type NodeId } from '../../core/ids';
import { createRuntime } from '../../core/nodejs/load';
import { floatData, type OnnxModel } from '../../core/onnx/model';
import { ownedSlices, type OwnedSlice } from '../../core/onnx/weight-slices';
import { EXAMPLES, FIXTURES } from '../helpers';

const ZOO = path.join(FIXTURES, 'zoo');
const manifest = JSON.parse(fs.readFileSync(path.join(ZOO, 'manifest.json'), 'utf8')) as {
  entries: { name: string; family: string; variant: string; model: string; reference: string | null; expect?: string }[];
};
const MODELS = [
  ...manifest.entries.filter((e) => e.expect !== 'refuse').map((e) => ({ name: e.name, file: path.join(ZOO, e.model), ref: e.reference ? path.join(ZOO, e.reference) : undefined })),
  { name: 'demo gpt2', file: path.join(EXAMPLES, 'induction-gpt2.onnx'), ref: path.join(EXAMPLES, 'references', 'induction-gpt2.json') },
  { name: 'demo llama', file: path.join(EXAMPLES, 'induction-llama.onnx'), ref: path.join(EXAMPLES, 'references', 'induction-llama.json') },
];

/** The model with the entries of `slices` set to 0 (normalised: float32 weights). */
function zeroed(bytes: Uint8Array, what: string, slices: OwnedSlice[]): OnnxModel {
  const { model } = readProtectModel(bytes, what);
  for (const s of slices) {
    const t = model.graph!.initializer.find((x) => x.name === s.initializer)!;
    const data = floatData(t)!;
    const inner = s.dims.slice(s.axis + 1).reduce((a, v) => a * v, 1);
    const size = s.dims[s.axis]!;
    for (let o = 0; o < data.length / (inner * size); o++) data.fill(0, (o * size + s.start) * inner, (o * size + s.end) * inner);
    t.rawData = new Uint8Array(data.buffer.slice(0));
    t.floatData = [];
  }
  return model;
}

/** Max |a−b| over head h of two hook_z tensors [B, T, H, D]. */
function headDiff(a: F32, b: F32, h: number): number {
  const [B, T, H, D] = a.dims as [number, number, number, number];
  let m = 0;
  for (let i = 0; i < B * T; i++) for (let d = 0; d < D; d++) m = Math.max(m, Math.abs(a.data[(i * H + h) * D + d]! - b.data[(i * H + h) * D + d]!));
  return m;
}
const maxDiff = (a: F32, b: F32) => a.data.reduce((m, v, i) => Math.max(m, Math.abs(v - b.data[i]!)), 0);
const maxAbs = (a: F32) => a.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

for (const m of MODELS) {
  describe(`weight slices: ${m.name}`, () => {
    const bytes = new Uint8Array(fs.readFileSync(m.file));
    const pm = readProtectModel(bytes, m.file);
    const layers = pm.structure.layers.length;
    // Heads per layer from a0.h0's output-projection rows: d_head of H·d_head.
    const wo = ownedSlices(pm.model.graph!, pm.structure, ['a0.h0'], m.file).get('a0.h0')!.find((s) => s.role === 'W_O')!;
    const heads = wo.dims[wo.axis]! / (wo.end - wo.start);
    const all = () => ownedSlices(pm.model.graph!, pm.structure, allComponentNodes({ layers, heads }), m.file);

    test('every head and MLP owns slices; heads of a layer share only key/value groups, MLPs nothing', () => {
      const owned = all();
      assert.ok(heads >= 2 && owned.size === layers * (heads + 1), `${owned.size} nodes for ${layers} layers`);
      const byEntry = new Map<string, string[]>();
      for (const [id, slices] of owned) {
        assert.ok(slices.length > 0, `${id} owns nothing`);
        for (const s of slices) {
          const key = `${s.initializer}|${s.axis}|${s.start}|${s.end}`;
          byEntry.set(key, [...(byEntry.get(key) ?? []), `${id}:${s.role}`]);
        }
      }
      for (const [key, owners] of byEntry) {
        if (owners.length === 1) continue;
        // Shared: only a key/value group's columns, by heads of one layer.
        assert.ok(owners.every((o) => /:(W_K|W_V|b_K|b_V)$/.test(o)), `${key} owned by ${owners}`);
        assert.equal(new Set(owners.map((o) => o.split('.')[0])).size, 1, `${key} owned by ${owners}`);
      }
    });

    const external = m.name.includes('extdata');
    test('zeroing a head\'s slices changes that head (and its key/value group) only; its W_O rows are its contribution', { skip: external && 'weights in external data' }, async () => {
      const runtime = createRuntime('node');
      const ids = (JSON.parse(fs.readFileSync(m.ref!, 'utf8')) as { prompts: { ids: number[] }[] }).prompts.slice(0, 2).map((p) => p.ids);
      const base = await Engine.create(runtime, bytes, { what: m.file });
      const H = base.info.heads;
      assert.equal(H, heads);
      const owned = all();
      try {
        for (const [l, h] of [[0, H - 1], [layers - 1, 0]] as const) {
          const id = headId(l, h);
          const hooks = [`blocks.${l}.attn.hook_z`, `blocks.${l}.hook_attn_out`];
          const ref = await base.run({ ids, hooks });
          const slices = owned.get(id)!;
          // The heads sharing its key/value columns (its group under grouped-query attention).
          const group = Array.from({ length: H }, (_, g) => g).filter((g) => owned.get(headId(l, g))!.some((s) => s.role === 'W_K' && slices.some((x) => x.role === 'W_K' && x.start === s.start && x.initializer === s.initializer)));
          const e1 = await Engine.fromModel(runtime, zeroed(bytes, m.file, slices), { what: m.file });
          const r1 = await e1.run({ ids, hooks });
          await e1.release();
          const z0 = ref.activations[hooks[0]!]!;
          const z1 = r1.activations[hooks[0]!]!;
          for (let g = 0; g < H; g++) {
            const d = headDiff(z0, z1, g);
            if (group.includes(g)) assert.ok(d > 1e-4, `${m.name} ${id}: head ${g}'s z unchanged (${d}) after zeroing ${id}'s slices`);
            else assert.ok(d <= 1e-6, `${m.name} ${id}: head ${g}'s z changed by ${d} after zeroing ${id}'s slices`);
          }
          const e2 = await Engine.fromModel(runtime, zeroed(bytes, m.file, slices.filter((s) => s.role === 'W_O')), { what: m.file });
          const r2 = await e2.run({ ids, hooks });
          await e2.release();
          const abl = await base.run({ ids, hooks, ablations: ids.map(() => ({ nodes: [id as NodeId], kind: 'zero' as const })) });
          assert.ok(maxDiff(r2.activations[hooks[0]!]!, z0) <= 1e-6, `${m.name} ${id}: W_O rows changed hook_z`);
          const d = maxDiff(r2.activations[hooks[1]!]!, abl.activations[hooks[1]!]!);
          assert.ok(d <= 1e-5, `${m.name} ${id}: attn_out with its W_O rows zeroed differs from ${id} zero-ablated by ${d}`);
          assert.ok(maxDiff(r2.activations[hooks[1]!]!, ref.activations[hooks[1]!]!) > 1e-4, `${m.name} ${id}: W_O rows changed nothing`);
        }
        const l = layers - 1;
        const hooks = [`blocks.${l}.attn.hook_z`, `blocks.${l}.hook_mlp_out`];
        const ref = await base.run({ ids, hooks });
        const e3 = await Engine.fromModel(runtime, zeroed(bytes, m.file, owned.get(mlpId(l))!), { what: m.file });
        const r3 = await e3.run({ ids, hooks });
        await e3.release();
        assert.ok(maxDiff(r3.activations[hooks[0]!]!, ref.activations[hooks[0]!]!) <= 1e-6, `${m.name} m${l}: zeroing the MLP changed the heads`);
        assert.ok(maxAbs(r3.activations[hooks[1]!]!) <= 1e-6, `${m.name} m${l}: mlp_out ${maxAbs(r3.activations[hooks[1]!]!)} with its weights zeroed`);
        assert.ok(maxAbs(ref.activations[hooks[1]!]!) > 1e-3, `${m.name} m${l}: mlp_out is ~0 to begin with`);
      } finally {
        await base.release();
      }
    });
  });
}
