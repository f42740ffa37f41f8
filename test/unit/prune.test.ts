// The pruning plans of core/onnx/prune.ts on small hand-made matrices: global magnitude threshold, ties broken by
// position, the circuit's entries never pruned (and the sparsity capped), layer waves from the last layer.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { floatData } from '../../core/onnx/model';
import { sliceMasks } from '../../core/onnx/owned-masks';
import { pruneRanking, withOwned, type PruneScope } from '../../core/onnx/prune';

function scope(): PruneScope {
  return {
    tensors: [
      { name: 'a0', dims: [2, 2], component: 'attention', layer: 0, data: Float32Array.from([0.5, -0.1, 0.3, 0.2]) },
      { name: 'm0', dims: [2, 2], component: 'mlp', layer: 0, data: Float32Array.from([-0.2, 0.9, 0.05, 0.4]) },
      { name: 'a1', dims: [2, 2], component: 'attention', layer: 1, data: Float32Array.from([0.7, 0.2, -0.6, 0.8]) },
    ],
    total: 12, skipped: [], ownedEntries: 0,
  };
}

const values = (plan: { replacements: { name: string }[] }, name: string, s: PruneScope) => {
  const r = plan.replacements.find((t) => t.name === name);
  return r ? [...floatData(r as never)!] : [...s.tensors.find((t) => t.name === name)!.data];
};

describe('pruning plans', () => {
  test('magnitude: the k smallest |w| over every matrix; equal |w| pruned in file order, then row-major', () => {
    const s = scope();
    const r = pruneRanking(s, 'magnitude');
    // |w| sorted: 0.05, 0.1, 0.2 (a0[3]), 0.2 (m0[0]), 0.2 (a1[1]), 0.3, ...; k = round(0.25·12) = 3 takes one 0.2: a0's.
    const p = r.plan(0.25);
    assert.equal(p.pruned, 3);
    assert.deepEqual(values(p, 'a0', s).map((x) => Number(x.toFixed(2))), [0.5, 0, 0.3, 0]);
    assert.deepEqual(values(p, 'm0', s).map((x) => Number(x.toFixed(2))), [-0.2, 0.9, 0, 0.4]);
    assert.deepEqual(p.replacements.map((t) => t.name), ['a0', 'm0']);
    assert.equal(p.reached, 3 / 12);
    assert.equal(p.capped, false);
    // One more: m0's 0.2 (it comes before a1 in the file).
    const q = r.plan(4 / 12);
    assert.equal(values(q, 'm0', s)[0], 0);
    assert.notEqual(values(q, 'a1', s)[1], 0);
    assert.deepEqual(r.plan(0).replacements, []);
    assert.equal(r.plan(1).reached, 1);
    // The original values are never changed.
    assert.deepEqual([...s.tensors[0]!.data].map((x) => Number(x.toFixed(2))), [0.5, -0.1, 0.3, 0.2]);
  });

  test('outside-circuit: the circuit\'s entries are no candidates; sparsity is of every entry, capped at the rest', () => {
    // The circuit owns column 1 of a0 and row 0 of a1 (4 entries of 12).
    const s = withOwned(scope(), sliceMasks(new Map([['c', [
      { initializer: 'a0', role: 'W_Q', dims: [2, 2], axis: 1, start: 1, end: 2 },
      { initializer: 'a1@x', role: 'W_O', dims: [2, 2], axis: 0, start: 0, end: 1 },
      { initializer: 'bias', role: 'b_Q', dims: [2], axis: 0, start: 0, end: 1 },
    ]]]), (n) => n.replace('@x', '')).masks);
    assert.equal(s.ownedEntries, 4);
    const r = pruneRanking(s, 'outside-circuit');
    assert.equal(r.candidates, 8);
    const p = r.plan(0.25);
    // Candidates by |w|: m0 0.05, m0 0.2, a0 0.3, ... (a0's -0.1 and 0.2 are the circuit's).
    assert.deepEqual(values(p, 'a0', s).map((x) => Number(x.toFixed(2))), [0.5, -0.1, 0, 0.2]);
    assert.deepEqual(values(p, 'm0', s).map((x) => Number(x.toFixed(2))), [0, 0.9, 0, 0.4]);
    const all = r.plan(0.9);
    assert.equal(all.capped, true);
    assert.equal(all.pruned, 8);
    assert.equal(all.reached, 8 / 12);
    assert.deepEqual(values(all, 'a1', s).map((x) => Number(x.toFixed(2))), [0.7, 0.2, 0, 0]);
    assert.throws(() => pruneRanking(scope(), 'outside-circuit'), /needs the circuit's slices/);
  });

  test('layer-waves: the last layer is emptied before the one below it is touched', () => {
    const s = scope();
    const r = pruneRanking(s, 'layer-waves');
    const p = r.plan(0.25);
    // 3 entries, all from layer 1, smallest first: 0.2, -0.6, 0.7.
    assert.deepEqual(values(p, 'a1', s).map((x) => Number(x.toFixed(2))), [0, 0, 0, 0.8]);
    assert.deepEqual(p.replacements.map((t) => t.name), ['a1']);
    assert.deepEqual(p.byLayer, { 0: 0, 1: 0.75 });
    const q = r.plan(0.5);
    assert.deepEqual(q.byLayer, { 0: 0.25, 1: 1 });
    // In layer 0, the smallest |w| of both matrices: m0's 0.05.
    assert.equal(values(q, 'm0', s)[2], 0);
  });

  test('sparsity outside [0, 1] is refused', () => {
    assert.throws(() => pruneRanking(scope(), 'magnitude').plan(1.5), /not in \[0, 1\]/);
  });
});
