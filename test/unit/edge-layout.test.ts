// Edge layout (which mask entry carries which edge) and the guard against hours-long one-edge-at-a-time work.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { checkEdgeWork, type EdgeContext } from '../../core/analysis/edges';
import { isUserError } from '../../core/errors';
import { allEdges } from '../../core/formats/interop';
import { edgeLayout, upstreamIndex } from '../../core/onnx/edges';

test('edge layout: EAP-IG order, one mask entry per edge, upstream columns in stream order', () => {
  for (const [L, H] of [[1, 1], [2, 4], [12, 12]] as const) {
    const layout = edgeLayout(L, H);
    assert.deepEqual(layout.edges.map((e) => `${e.source}->${e.target}`), allEdges(L, H).map((e) => `${e.source}->${e.target}`));
    const slots = new Set(layout.edges.map((e) => `${e.input}|${e.row}|${e.col}`));
    assert.equal(slots.size, layout.edges.length, 'no two edges share a mask entry');
    for (const e of layout.edges) {
      const m = layout.masks.find((x) => x.name === e.input)!;
      assert.ok(e.row < m.rows && e.col < m.cols, `${e.source}->${e.target} inside its mask`);
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

test('exact work over every edge of a large model is refused with advice', () => {
  const ec = { ids: new Array(32491).fill('x'), ctx: { prompts: new Array(64) } } as unknown as EdgeContext;
  assert.throws(() => checkEdgeWork(ec, 'exact edge attribution', 'Use gradient scores.'), (e: Error) => isUserError(e) && /32491 edges on 64 prompts/.test(e.message) && /gradient/.test(e.message));
  const small = { ids: new Array(110).fill('x'), ctx: { prompts: new Array(81) } } as unknown as EdgeContext;
  assert.doesNotThrow(() => checkEdgeWork(small, 'x', 'y'));
});

test('edge work on a large model gets few rows per call (memory), a small one maxRows', async () => {
  const { edgeRowsPerCall } = await import('../../core/analysis/edges');
  const ctx = (layers: number, heads: number, dModel: number) => ({ ctx: { maxRows: 256, engine: { info: { layers, heads, dModel } } }, ids: [] }) as unknown as EdgeContext;
  const big = ctx(12, 12, 768);
  assert.ok(edgeRowsPerCall(big, 16, true) <= 4, 'GPT-2-small gradients: a few rows (≈1 GiB each measured)');
  assert.ok(edgeRowsPerCall(big, 16, false) <= 24);
  assert.ok(edgeRowsPerCall(big, 1024, true) >= 1, 'never 0');
  assert.equal(edgeRowsPerCall(ctx(2, 4, 64), 20, true), 256, 'the demo model: maxRows');
});
