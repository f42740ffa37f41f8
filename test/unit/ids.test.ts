// Node and edge ids (DESIGN §3): one parser and one printer, and one enumeration of a model's edges.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { isUserError } from '../../core/errors';
import { allEdges, edgeTarget, formatEdgeId, headInputId, parseEdgeId, parseNodeId, splitEdgeTarget, streamRank, targetNode, tryParseNodeId } from '../../core/ids';

test('edge ids round-trip: every edge of a model, serial and parallel, prints and parses back to itself', () => {
  for (const parallel of [false, true]) {
    for (const e of allEdges({ layers: 3, heads: 4 }, parallel)) {
      const id = formatEdgeId(e);
      const p = parseEdgeId(id);
      assert.equal(p.source, e.source);
      assert.equal(edgeTarget(p), e.target);
      assert.equal(formatEdgeId({ source: p.source, target: edgeTarget(p) }), id);
      assert.equal(p.target, targetNode(e.target));
    }
  }
  assert.deepEqual(parseEdgeId('a0.h1->a1.h3<k>'), { source: 'a0.h1', target: 'a1.h3', input: 'k' });
  assert.deepEqual(parseEdgeId('a1.h3->m1'), { source: 'a1.h3', target: 'm1' });
  assert.deepEqual(parseEdgeId('m1->logits'), { source: 'm1', target: 'logits' });
  assert.deepEqual(parseEdgeId('input->a0.h0<q>'), { source: 'input', target: 'a0.h0', input: 'q' });
  assert.equal(formatEdgeId({ source: 'input', target: headInputId(2, 5, 'v') }), 'input->a2.h5<v>');
});

test('edge id errors say what is wrong and what an edge looks like', () => {
  const refuses = (id: string, re: RegExp) => assert.throws(() => parseEdgeId(id), (e: unknown) => isUserError(e) && re.test((e as Error).message), id);
  refuses('a0.h1 a1.h2<q>', /edge "a0\.h1 a1\.h2<q>" is not of the form SRC->DST \(e\.g\. a0\.h1->a1\.h3<k>/);
  refuses('->m1', /not of the form SRC->DST/);
  refuses('m0->', /not of the form SRC->DST/);
  refuses('x1->m1', /edge "x1->m1": unknown source node id "x1"/);
  refuses('m0->mlp1', /edge "m0->mlp1": unknown target node id "mlp1"/);
  refuses('a0.h1->m1<q>', /edge "a0\.h1->m1<q>": only attention heads have q, k, v inputs/);
  refuses('m0->a1.h2', /a head as target names the input it feeds: a1\.h2<q>, a1\.h2<k> or a1\.h2<v>/);
  refuses('m1->a0.h1<q>', /does not follow the residual stream/);
  refuses('a1.h0->a1.h2<k>', /does not follow the residual stream/);
  refuses('logits->m0', /does not follow the residual stream/);
  refuses('m0->input', /does not follow the residual stream/);
  refuses('a0.h1->a1.h2<x>', /unknown target node id "a1\.h2<x>"/);
});

test('node ids: one parser, with and without errors; head inputs split off', () => {
  assert.deepEqual(parseNodeId(' a1.h2 '), { kind: 'head', layer: 1, head: 2 });
  assert.equal(tryParseNodeId(' a1.h2'), undefined, 'the silent parser takes ids exactly');
  assert.equal(tryParseNodeId('a1.h2<q>'), undefined);
  assert.deepEqual(tryParseNodeId('m7'), { kind: 'mlp', layer: 7 });
  assert.throws(() => parseNodeId('q7'), /unknown node id "q7"/);
  assert.deepEqual(splitEdgeTarget('a1.h3<k>'), { node: 'a1.h3', input: 'k' });
  assert.deepEqual(splitEdgeTarget('m1'), { node: 'm1' });
  assert.ok(streamRank('input') < streamRank('a0.h3') && streamRank('a0.h3') === streamRank('a0.h0') && streamRank('a0.h0') < streamRank('m0') && streamRank('m0') < streamRank('a1.h0') && streamRank('m5') < streamRank('logits'));
});

test('allEdges: EAP-IG order, and parallel attention drops only head → own-layer MLP edges', () => {
  const edges = allEdges({ layers: 2, heads: 2 }).map(formatEdgeId);
  assert.deepEqual(edges.slice(0, 7), ['input->a0.h0<q>', 'input->a0.h0<k>', 'input->a0.h0<v>', 'input->a0.h1<q>', 'input->a0.h1<k>', 'input->a0.h1<v>', 'input->m0']);
  assert.deepEqual(edges.slice(-7), ['input->logits', 'a0.h0->logits', 'a0.h1->logits', 'm0->logits', 'a1.h0->logits', 'a1.h1->logits', 'm1->logits']);
  const par = new Set(allEdges({ layers: 2, heads: 2 }, true).map(formatEdgeId));
  assert.deepEqual(edges.filter((e) => !par.has(e)), ['a0.h0->m0', 'a0.h1->m0', 'a1.h0->m1', 'a1.h1->m1']);
});
