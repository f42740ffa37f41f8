import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { allEdges, fromEapIg, toEapIg } from '../../core/formats/interop';
import type { Circuit } from '../../core/formats/circuit';

test('the edge list of a 2×4 model: q/k/v inputs of heads, residual inputs of MLPs and logits', () => {
  const edges = allEdges(2, 4);
  // heads of layer 0: input → 4 heads × 3; m0: input + 4 heads; layer 1 heads: (1+4+1) × 4 × 3; m1: 6 + 4; logits: 11.
  assert.equal(edges.length, 12 + 5 + 72 + 10 + 11);
  assert.ok(edges.some((e) => e.source === 'a0.h1' && e.target === 'a1.h3<k>'));
  assert.ok(edges.some((e) => e.source === 'a1.h3' && e.target === 'm1'));
  assert.ok(!edges.some((e) => e.source === 'm1' && e.target === 'a1.h0<q>'));
});

test('edge ids and scores round-trip through EAP-IG JSON', () => {
  const c: Circuit = {
    schemaVersion: 1, name: 'x', granularity: 'edge', nodes: ['a0.h1', 'a1.h2', 'm1'],
    edges: [
      { source: 'input', target: 'a0.h1<q>', score: 0.5 }, { source: 'a0.h1', target: 'a1.h2<k>', score: -1.25 },
      { source: 'a1.h2', target: 'm1', score: 2 }, { source: 'm1', target: 'logits', score: 3 },
    ],
  };
  const g = toEapIg(c, { layers: 2, heads: 4 });
  assert.equal(Object.keys(g.edges).length, allEdges(2, 4).length);
  assert.equal(Object.values(g.edges).filter((e) => e.in_graph).length, 4);
  assert.deepEqual(g.edges['a0.h1->a1.h2<k>'], { score: -1.25, in_graph: true });
  assert.equal(g.nodes['a0.h1'], true);
  assert.equal(g.nodes['a0.h0'], false);
  const back = JSON.parse(JSON.stringify(g));
  const c2 = fromEapIg(back, 'x.json');
  assert.deepEqual(c2.edges, c.edges);
  assert.deepEqual(c2.nodes.sort(), [...c.nodes].sort());
  assert.equal(c2.granularity, 'edge');
});

test('a node circuit exports every edge between its nodes as in_graph', () => {
  const g = toEapIg({ schemaVersion: 1, name: 'n', granularity: 'node', nodes: ['a0.h1', 'a1.h0'] }, { layers: 2, heads: 4 });
  const inGraph = Object.entries(g.edges).filter(([, e]) => e.in_graph).map(([k]) => k).sort();
  assert.deepEqual(inGraph, ['a0.h1->a1.h0<k>', 'a0.h1->a1.h0<q>', 'a0.h1->a1.h0<v>', 'a0.h1->logits', 'a1.h0->logits', 'input->a0.h1<k>', 'input->a0.h1<q>', 'input->a0.h1<v>', 'input->a1.h0<k>', 'input->a1.h0<q>', 'input->a1.h0<v>', 'input->logits']);
});

test('import refuses JSON that is not an EAP-IG graph', () => {
  assert.throws(() => fromEapIg({ nodes: [] }, 'bad.json'), /not an EAP-IG graph/);
  assert.throws(() => fromEapIg({ nodes: {}, edges: { 'a0.h1 a1.h2': { score: 1, in_graph: true } } }, 'bad.json'), /not of the form SRC->DST/);
});
