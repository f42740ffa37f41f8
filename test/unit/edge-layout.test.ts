// Edge layout (which mask entry carries which edge) and the guard against hours-long one-edge-at-a-time work.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { checkEdgeWork, type EdgeContext } from '../../core/analysis/edge-context';
import { isUserError } from '../../core/errors';
import { formatEdgeId } from '../../core/ids';
import { edgeLayout, upstreamIndex } from '../../core/onnx/edge-layout';

test('edge layout: EAP-IG order, one mask entry per edge, upstream columns in stream order', () => {
  for (const [L, H] of [[1, 1], [2, 4], [12, 12]] as const) {
    const layout = edgeLayout(L, H);
    const slots = new Set(layout.edges.map((e) => `${e.input}|${e.row}|${e.col}`));
    assert.equal(slots.size, layout.edges.length, 'no two edges share a mask entry');
    for (const e of layout.edges) {
      const m = layout.masks.find((x) => x.name === e.input)!;
      assert.ok(e.row < m.rows && e.col < m.cols, `${formatEdgeId(e)} inside its mask`);
      assert.equal(e.col, upstreamIndex(e.source, H));
    }
    // Count: heads read 3 inputs from every earlier node, MLPs also from their own layer's heads, logits from all.
    let n = 0;
    for (let l = 0; l < L; l++) n += 3 * H * (1 + l * (H + 1)) + (1 + l * (H + 1) + H);
    n += 1 + L * (H + 1);
    assert.equal(layout.edges.length, n);
  }
  assert.equal(edgeLayout(12, 12).edges.length, 32491);
});

test('exact work over every edge of a large model is refused with advice, unless it goes to workers', () => {
  const ec = { ids: new Array(32491).fill('x'), ctx: { prompts: new Array(64) } } as unknown as EdgeContext;
  assert.throws(() => checkEdgeWork(ec, 'exact edge attribution', 'Use gradient scores.'), (e: Error) => isUserError(e) && /32491 edges on 64 prompts/.test(e.message) && /gradient/.test(e.message));
  const small = { ids: new Array(110).fill('x'), ctx: { prompts: new Array(81) } } as unknown as EdgeContext;
  assert.doesNotThrow(() => checkEdgeWork(small, 'x', 'y'));
  // Sent to workers (--broker), the same work is taken on: that is what they are for.
  assert.doesNotThrow(() => checkEdgeWork(ec, 'exact edge attribution', 'Use gradient scores.', true));
});

test('edge work on a large model gets few rows per call (memory), a small one maxRows', async () => {
  const { edgeRowsPerCall } = await import('../../core/analysis/edge-context');
  const ctx = (layers: number, heads: number, dModel: number) => ({ ctx: { maxRows: 256, engine: { info: { layers, heads, dModel } } }, ids: [] }) as unknown as EdgeContext;
  const big = ctx(12, 12, 768);
  assert.ok(edgeRowsPerCall(big, 16, 'gradient') <= 6, 'GPT-2-small gradients away from zero: a few rows (≈500 MiB each measured)');
  const eap = edgeRowsPerCall(big, 16, 'eap');
  assert.ok(eap >= 16 && eap <= 32, `GPT-2-small EAP: 45–100 MiB a row measured (sliced), ~1.6× folded; ${eap} rows`);
  assert.ok(edgeRowsPerCall(big, 16, 'forward') <= 24);
  for (const kind of ['forward', 'gradient', 'eap'] as const) assert.ok(edgeRowsPerCall(big, 1024, kind) >= 1, 'never 0');
  assert.equal(edgeRowsPerCall(ctx(2, 4, 64), 20, 'gradient'), 256, 'the demo model: maxRows');
});

test('edge graphs slice the q/k/v and output projections per head on the demo exports (no H× folded clones)', async () => {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const { EXAMPLES, FIXTURES } = await import('../helpers');
  const { decodeModel } = await import('../../core/onnx/model');
  const { detectStructure } = await import('../../core/onnx/detect');
  const { instrument } = await import('../../core/onnx/instrument');
  const { addEdgeInputs } = await import('../../core/onnx/edges');
  for (const file of [path.join(EXAMPLES, 'induction-gpt2.onnx'), path.join(EXAMPLES, 'induction-llama.onnx'), path.join(FIXTURES, 'models', 'induction-llama-kvcache.onnx')]) {
    const build = (sliceHeads: boolean) => {
      const m = decodeModel(fs.readFileSync(file), file);
      const s = detectStructure(m, file);
      const inst = instrument(m, s).model;
      addEdgeInputs(inst, s, 4, file, { sliceHeads });
      return inst.graph!.node;
    };
    const sliced = build(true);
    const folded = build(false);
    const count = (nodes: { name: string; opType: string }[], re: RegExp, op?: string) => nodes.filter((n) => re.test(n.name) && (!op || n.opType === op)).length;
    // Folded: every layer clones its projection MatMul for q, k and v (H copies each) and the output path on H + 1.
    assert.ok(count(folded, /@edges\d+[qkv]$/, 'MatMul') >= 6, path.basename(file));
    assert.ok(count(folded, /@edges\d+o$/) > 0);
    // Sliced: no projection MatMul is cloned; the clones left are the norm's (per head copy) and the head split.
    // The Llama demo has grouped key/value heads (2 for 4 query heads): sliced too, by group. In the KV-cache
    // export the value path also reads the key projection (two projections on one path): that one stays folded.
    const kv = file.includes('kvcache');
    assert.equal(count(sliced, kv ? /@edges\d+[qk]$/ : /@edges\d+[qkv]$/, 'MatMul'), 0, `${path.basename(file)}: a q/k/v projection was cloned, not sliced`);
    if (kv) assert.ok(count(sliced, /@edges\d+v$/, 'MatMul') > 0, 'KV-cache value path: folded');
    assert.equal(count(sliced, /@edges\d+o$/), 0, `${path.basename(file)}: the output projection was cloned, not sliced`);
  }
});

test('the EAP graph (edge gradients at zero) has no masks and multiplies nothing by them: no stack, one contraction per layer and block', async () => {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const { EXAMPLES } = await import('../helpers');
  const { decodeModel } = await import('../../core/onnx/model');
  const { detectStructure } = await import('../../core/onnx/detect');
  const { instrument, LAST_LOGITS } = await import('../../core/onnx/instrument');
  const { addEdgeInputs } = await import('../../core/onnx/edges');
  const { addEdgeGradientsAtZero, zeroMaskGradient } = await import('../../core/onnx/edge-gradients');
  const file = path.join(EXAMPLES, 'induction-gpt2.onnx');
  const fresh = () => { const m = decodeModel(fs.readFileSync(file), file); const s = detectStructure(m, file); return { m: instrument(m, s).model, s }; };
  const layout = edgeLayout(2, 4);
  const masked = fresh();
  addEdgeInputs(masked.m, masked.s, 4, file);
  const zero = fresh();
  const { grads } = addEdgeGradientsAtZero(zero.m, zero.s, 4, file, LAST_LOGITS, layout, {});
  const g = zero.m.graph!;
  assert.deepEqual(grads, layout.masks.map((m) => zeroMaskGradient(m.name)));
  for (const m of layout.masks) {
    assert.ok(masked.m.graph!.input.some((i) => i.name === m.name), `the masked graph reads ${m.name}`);
    assert.ok(!g.input.some((i) => i.name === m.name), `the EAP graph has no input ${m.name}`);
    assert.ok(g.output.some((o) => o.name === zeroMaskGradient(m.name)));
  }
  const masks = new Set(layout.masks.map((m) => m.name));
  assert.ok(masked.m.graph!.node.some((n) => n.opType === 'MatMul' && n.input.some((t) => masks.has(t))), 'the masked graph multiplies by masks');
  // The EAP graph's products: each layer's destination gradients by the blocks of pieces before it (one block
  // per layer on 2 layers), and the logits' by all blocks.
  const contractions = g.node.filter((n) => n.opType === 'MatMul' && /circuitlens\/edges\/circuitlens\.edges\.z/.test(n.name)).length;
  assert.equal(contractions, 1 + 2 + 2, 'layer 0: block 0; layer 1: blocks 0 and 1; logits: blocks 0 and 1');
});
