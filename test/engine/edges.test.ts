// Edge-level ablation and edge gradients vs an explicit PyTorch implementation of path patching with split
// q/k/v inputs (scripts/edge_references.py → examples/references/<model>.edges.json).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRuntime, loadEngine } from '../../core/nodejs/load';
import type { Engine } from '../../core/engine/engine';
import type { EdgeValues } from '../../core/engine/types';
import type { F32 } from '../../core/engine/runtime';
import { allEdges } from '../../core/ids';
import { decodeRef, EXAMPLES, FIXTURES, maxAbsDiff, type RefTensor } from '../helpers';

interface EdgeRef {
  edges: string[];
  prompts: { ids: number[]; answer: number; foil: number }[];
  cases: { edges: string[]; kind: 'zero' | 'mean'; weight: number; logits: RefTensor }[];
  eapGrads: RefTensor;
}

/** Means of every node's output over the prompts and positions, from an edge run's outputs. */
function meansOf(o: EdgeValues): EdgeValues {
  const mean = (t: F32): F32 => {
    const [B, T] = t.dims as [number, number];
    const w = t.data.length / (B * T);
    const m = new Float32Array(w);
    for (let i = 0; i < B * T; i++) for (let j = 0; j < w; j++) m[j]! += t.data[i * w + j]! / (B * T);
    return { dims: [1, 1, ...t.dims.slice(2)], data: m };
  };
  return { input: mean(o.input), heads: o.heads.map(mean), mlp: o.mlp.map(mean) };
}

// The demo models, and the same weights exported otherwise: opset 14, and optimum's decoder-with-past signature
// (attention_mask, position_ids, empty past key/values feeding the cloned paths).
// Each also without head-sliced projections (the folded-heads clone every unrecognised export gets), for two.
const MODELS: [string, string, boolean][] = [
  ['induction-gpt2', path.join(EXAMPLES, 'induction-gpt2.onnx'), true],
  ['induction-llama', path.join(EXAMPLES, 'induction-llama.onnx'), true],
  ['induction-gpt2', path.join(FIXTURES, 'models', 'induction-gpt2-opset14.onnx'), true],
  ['induction-llama', path.join(FIXTURES, 'models', 'induction-llama-opset14.onnx'), true],
  ['induction-llama', path.join(FIXTURES, 'models', 'induction-llama-kvcache.onnx'), true],
  ['induction-gpt2', path.join(EXAMPLES, 'induction-gpt2.onnx'), false],
  ['induction-llama', path.join(FIXTURES, 'models', 'induction-llama-kvcache.onnx'), false],
];

for (const [name, file, sliced] of MODELS) {
  test(`${path.basename(file)}${sliced ? '' : ' (heads folded, not sliced)'}: edge ablation and edge gradients match PyTorch path patching (split q/k/v inputs)`, async () => {
    const ref: EdgeRef = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'references', `${name}.edges.json`), 'utf8'));
    const engine: Engine = await loadEngine(file, createRuntime(), { edgeHeadSlicing: sliced });
    try {
      const layout = engine.edges;
      // The engine's edge order is the EAP-IG order of core/ids.ts allEdges and the reference's.
      assert.deepEqual(layout.edges.map((e) => `${e.source}->${e.target}`), ref.edges);
      assert.deepEqual(allEdges(engine.info).map((e) => `${e.source}->${e.target}`), ref.edges);
      const index = new Map(ref.edges.map((e, i) => [e, i]));
      const ids = ref.prompts.map((p) => p.ids);
      const E = ref.edges.length;
      const clean = await engine.runEdges({ ids, outputs: true });
      const means = meansOf(clean.outputs!);
      let worst = 0;
      for (const c of ref.cases) {
        const w = new Float32Array(E);
        for (const e of c.edges) w[index.get(e)!] = c.weight;
        const res = await engine.runEdges({ ids, weights: ids.map(() => w), ablated: c.kind === 'mean' ? means : undefined });
        const expected = decodeRef(c.logits);
        const d = maxAbsDiff({ dims: [ids.length, engine.info.vocab], data: res.logits.data }, expected);
        worst = Math.max(worst, d);
        assert.ok(d < 1e-4, `${c.kind} ablation of ${c.edges.length} edges (${c.edges.slice(0, 3).join(', ')}...): max |Δ logits| ${d}`);
      }
      // The cases change the logits (a test of nothing would pass too).
      const w0 = new Float32Array(E);
      w0[index.get(`a0.h1->a1.h2<k>`)!] = 1;
      const moved = maxAbsDiff((await engine.runEdges({ ids, weights: ids.map(() => w0) })).logits, clean.logits);
      assert.ok(moved > 1e-3, `one edge moves the logits (${moved})`);

      // One row per prompt, each with a different single-edge ablation, equals separate runs.
      const rows = ids.map((_, b) => { const w = new Float32Array(E); w[(b * 17) % E] = 1; return w; });
      const batched = await engine.runEdges({ ids, weights: rows });
      for (let b = 0; b < ids.length; b++) {
        const single = await engine.runEdges({ ids: [ids[b]!], weights: [rows[b]!] });
        const V = engine.info.vocab;
        assert.ok(maxAbsDiff({ dims: [1, V], data: batched.logits.data.subarray(b * V, (b + 1) * V) }, { dims: [1, V], data: single.logits.data }) < 1e-5);
      }

      // Gradients with respect to every edge weight at 0, per prompt.
      const V = engine.info.vocab;
      const seed = new Float32Array(ids.length * V);
      ref.prompts.forEach((p, b) => { seed[b * V + p.answer] += 1; seed[b * V + p.foil] -= 1; });
      const g = await engine.edgeGradients({ ids, seed });
      const gd = maxAbsDiff({ dims: [ids.length, E], data: g.grads }, decodeRef(ref.eapGrads));
      assert.ok(gd < 1e-4, `edge gradients vs PyTorch autograd: ${gd}`);
      console.log(`# ${path.basename(file)}: ${ref.cases.length} edge ablations max |Δ| ${worst.toExponential(2)}; ${E} edge gradients max |Δ| ${gd.toExponential(2)}`);
    } finally {
      await engine.release();
    }
  });
}

test('onnxruntime-web (WASM) runs the edge graphs too: same ablations and gradients as PyTorch', async () => {
  const ref: EdgeRef = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'references', 'induction-llama.edges.json'), 'utf8'));
  const engine = await loadEngine(path.join(EXAMPLES, 'induction-llama.onnx'), createRuntime('wasm'));
  try {
    const index = new Map(ref.edges.map((e, i) => [e, i]));
    const ids = ref.prompts.map((p) => p.ids);
    const E = ref.edges.length;
    for (const c of ref.cases.filter((x) => x.kind === 'zero')) {
      const w = new Float32Array(E);
      for (const e of c.edges) w[index.get(e)!] = c.weight;
      const res = await engine.runEdges({ ids, weights: ids.map(() => w) });
      assert.ok(maxAbsDiff({ dims: [ids.length, engine.info.vocab], data: res.logits.data }, decodeRef(c.logits)) < 1e-4);
    }
    const V = engine.info.vocab;
    const seed = new Float32Array(ids.length * V);
    ref.prompts.forEach((p, b) => { seed[b * V + p.answer] += 1; seed[b * V + p.foil] -= 1; });
    const g = await engine.edgeGradients({ ids, seed });
    assert.ok(maxAbsDiff({ dims: [ids.length, E], data: g.grads }, decodeRef(ref.eapGrads)) < 1e-4);
  } finally {
    await engine.release();
  }
});

test('edge gradients away from zero (EAP-IG steps) use the full backward graph: they match finite differences, and at zero equal the EAP graph', async () => {
  const ref: EdgeRef = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'references', 'induction-gpt2.edges.json'), 'utf8'));
  const engine = await loadEngine(path.join(EXAMPLES, 'induction-gpt2.onnx'));
  try {
    const ids = ref.prompts.slice(0, 2).map((p) => p.ids);
    const E = ref.edges.length;
    const V = engine.info.vocab;
    const seed = new Float32Array(ids.length * V);
    ref.prompts.slice(0, 2).forEach((p, b) => { seed[b * V + p.answer] += 1; seed[b * V + p.foil] -= 1; });
    const metric = (logits: Float32Array) => { let m = 0; for (let i = 0; i < seed.length; i++) m += seed[i]! * logits[i]!; return m; };
    // At zero: the EAP graph (no weights: each destination's copy of the stream, its gradient contracted with
    // the upstream outputs) and the full graph (weights of 1e-30, not zero, select it) agree, whatever the
    // contraction's blocks (one layer each, both layers in one, more layers than the model has).
    const eap = await engine.edgeGradients({ ids, seed });
    const full0 = await engine.edgeGradients({ ids, seed, weights: ids.map(() => new Float32Array(E).fill(1e-30)) });
    assert.ok(maxAbsDiff({ dims: [ids.length, E], data: eap.grads }, { dims: [ids.length, E], data: full0.grads }) < 1e-5);
    for (const eapBlockLayers of [1, 2, 3]) {
      const other = await loadEngine(path.join(EXAMPLES, 'induction-gpt2.onnx'), undefined, { eapBlockLayers });
      try {
        const b = await other.edgeGradients({ ids, seed });
        assert.ok(maxAbsDiff({ dims: [ids.length, E], data: b.grads }, { dims: [ids.length, E], data: full0.grads }) < 1e-5, `blocks of ${eapBlockLayers} layers`);
      } finally {
        await other.release();
      }
    }
    // At 0.5 on every edge (an EAP-IG step): gradients against central differences of the edge forward.
    const base = new Float32Array(E).fill(0.5);
    const g = await engine.edgeGradients({ ids, seed, weights: ids.map(() => base) });
    const eps = 1e-2;
    let largest = 0;
    for (let e = 0; e < E; e += 5) {
      const plus = base.slice(); plus[e] += eps;
      const minus = base.slice(); minus[e] -= eps;
      const fd = (metric((await engine.runEdges({ ids, weights: ids.map(() => plus) })).logits.data) - metric((await engine.runEdges({ ids, weights: ids.map(() => minus) })).logits.data)) / (2 * eps);
      const an = g.grads[e]! + g.grads[E + e]!;
      largest = Math.max(largest, Math.abs(an));
      assert.ok(Math.abs(fd - an) < 5e-4 + 2e-3 * Math.abs(fd), `${ref.edges[e]}: finite difference ${fd} vs gradient ${an} at weights 0.5`);
    }
    assert.ok(largest > 1, `some gradient is not tiny (${largest})`);
    // And they differ from the gradients at zero (the point of the full graph).
    assert.ok(maxAbsDiff({ dims: [ids.length, E], data: g.grads }, { dims: [ids.length, E], data: eap.grads }) > 1e-2);
  } finally {
    await engine.release();
  }
});
