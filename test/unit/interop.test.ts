import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import { UserError } from '../../core/errors';
import { fromEapIg, toEapIg } from '../../core/formats/eap-ig';
import { fromNeuronpedia, toNeuronpedia } from '../../core/formats/neuronpedia';
import { allEdges } from '../../core/ids';
import type { Circuit } from '../../core/formats/circuit';
import { FIXTURES, ROOT } from '../helpers';

test('the edge list of a 2×4 model: q/k/v inputs of heads, residual inputs of MLPs and logits', () => {
  const edges = allEdges({ layers: 2, heads: 4 });
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
  const g = toEapIg(c, { layers: 2, heads: 4, dModel: 64 });
  assert.equal(Object.keys(g.edges).length, allEdges({ layers: 2, heads: 4 }).length);
  assert.equal(Object.values(g.edges).filter((e) => e.in_graph).length, 4);
  assert.deepEqual(g.edges['a0.h1->a1.h2<k>'], { score: -1.25, in_graph: true });
  assert.deepEqual(g.nodes['a0.h1'], { in_graph: true });
  assert.deepEqual(g.nodes['a0.h0'], { in_graph: false });
  assert.deepEqual(g.cfg, { n_layers: 2, n_heads: 4, parallel_attn_mlp: false, d_model: 64 });
  const back = JSON.parse(JSON.stringify(g));
  const c2 = fromEapIg(back, 'x.json');
  assert.deepEqual(c2.edges, c.edges);
  assert.deepEqual(c2.nodes.sort(), [...c.nodes].sort());
  assert.equal(c2.granularity, 'edge');
});

test('a node circuit exports every edge between its nodes as in_graph', () => {
  const g = toEapIg({ schemaVersion: 1, name: 'n', granularity: 'node', nodes: ['a0.h1', 'a1.h0'] }, { layers: 2, heads: 4, dModel: 64 });
  const inGraph = Object.entries(g.edges).filter(([, e]) => e.in_graph).map(([k]) => k).sort();
  assert.deepEqual(inGraph, ['a0.h1->a1.h0<k>', 'a0.h1->a1.h0<q>', 'a0.h1->a1.h0<v>', 'a0.h1->logits', 'a1.h0->logits', 'input->a0.h1<k>', 'input->a0.h1<q>', 'input->a0.h1<v>', 'input->a1.h0<k>', 'input->a1.h0<q>', 'input->a1.h0<v>', 'input->logits']);
});

// ---- EAP-IG's own files (../shared/interop/eap-ig, written by EAP-IG's Graph.to_json) ----

const EAP_IG_DIR = path.join(ROOT, '..', 'shared', 'interop', 'eap-ig');
const eapIgFile = (name: string) => JSON.parse(fs.readFileSync(path.join(EAP_IG_DIR, name), 'utf8'));

/** What EAP-IG's Graph.from_json requires of a file it reads (shared/interop/README.md). */
function assertEapIgReadable(g: ReturnType<typeof toEapIg>) {
  for (const k of ['n_layers', 'n_heads', 'parallel_attn_mlp', 'd_model'] as const) assert.ok(k in g.cfg, `cfg.${k}`);
  for (const [id, n] of Object.entries(g.nodes)) assert.equal(typeof n.in_graph, 'boolean', `node ${id} is not {"in_graph": …}`);
  const known = new Set(allEdges({ layers: g.cfg.n_layers, heads: g.cfg.n_heads }, g.cfg.parallel_attn_mlp).map((e) => `${e.source}->${e.target}`));
  for (const k of Object.keys(g.edges)) assert.ok(known.has(k), `edge ${k} is not in from_model(cfg)'s graph`);
}

for (const [file, shape, edgesIn, nodesIn] of [
  ['greedy20-2l4h.json', { layers: 2, heads: 4, dModel: 64 }, 13, 6],
  ['greedy300-gpt2small.json', { layers: 12, heads: 12, dModel: 768 }, 90, 42],
] as const) {
  test(`EAP-IG's own ${file} imports as its in-graph nodes and edges, and exports back to the same file`, () => {
    const src = eapIgFile(file);
    const c = fromEapIg(src, file);
    const wantEdges = Object.entries(src.edges as Record<string, { in_graph: boolean }>).filter(([, e]) => e.in_graph).map(([k]) => k).sort();
    const wantNodes = Object.entries(src.nodes as Record<string, { in_graph: boolean }>).filter(([id, n]) => n.in_graph && id !== 'input' && id !== 'logits').map(([id]) => id).sort();
    assert.equal(wantEdges.length, edgesIn);
    assert.equal(wantNodes.length, nodesIn);
    assert.deepEqual(c.edges!.map((e) => `${e.source}->${e.target}`).sort(), wantEdges);
    assert.deepEqual([...c.nodes].sort(), wantNodes);
    assert.equal(c.granularity, 'edge');
    // The circuit's nodes are what the file marks, not every component of the model.
    assert.ok(c.nodes.length < shape.layers * (shape.heads + 1));

    const back = toEapIg(c, shape);
    assertEapIgReadable(back);
    assert.deepEqual(back.cfg, src.cfg);
    assert.deepEqual(Object.keys(back.edges).sort(), Object.keys(src.edges).sort());
    for (const [k, e] of Object.entries(src.edges as Record<string, { in_graph: boolean; score: number }>)) {
      assert.equal(back.edges[k]!.in_graph, e.in_graph, k);
      if (e.in_graph) assert.equal(back.edges[k]!.score, e.score, k);
    }
    for (const [id, n] of Object.entries(src.nodes as Record<string, { in_graph: boolean }>)) assert.equal(back.nodes[id]!.in_graph, n.in_graph, id);
    // And once more through CircuitLens: nothing is gained or lost.
    const again = fromEapIg(JSON.parse(JSON.stringify(back)), file);
    const byKey = (es: { source: string; target: string }[]) => [...es].sort((a, b) => `${a.source}->${a.target}`.localeCompare(`${b.source}->${b.target}`));
    assert.deepEqual(byKey(again.edges!), byKey(c.edges!));
    assert.deepEqual(again.nodes, c.nodes);
  });
}

test('parallel attention and MLP (NeoX, Phi): no edge from a head to its own layer\'s MLP, in export and import', () => {
  const edges = allEdges({ layers: 3, heads: 4 }, true);
  assert.equal(edges.length, allEdges({ layers: 3, heads: 4 }).length - 3 * 4);
  assert.ok(!edges.some((e) => e.source === 'a1.h2' && e.target === 'm1'));
  assert.ok(edges.some((e) => e.source === 'a0.h2' && e.target === 'm1'));
  const c: Circuit = { schemaVersion: 1, name: 'p', granularity: 'edge', nodes: [], edges: [{ source: 'a0.h1', target: 'm2', score: 0.25 }, { source: 'm2', target: 'logits', score: 1 }] };
  const g = toEapIg(c, { layers: 3, heads: 4, dModel: 128, parallel: true });
  assertEapIgReadable(g);
  assert.equal(g.cfg.parallel_attn_mlp, true);
  assert.equal(Object.keys(g.edges).length, edges.length);
  assert.deepEqual(fromEapIg(JSON.parse(JSON.stringify(g)), 'p.json').nodes, ['a0.h1', 'm2']);
  assert.throws(() => toEapIg({ ...c, edges: [{ source: 'a2.h0', target: 'm2' }] }, { layers: 3, heads: 4, dModel: 128, parallel: true }), /not an edge of a 3-layer, 4-head model with parallel attention and MLP/);
  const bad = { ...g, edges: { ...g.edges, 'a2.h0->m2': { score: 1, in_graph: true } } };
  assert.throws(() => fromEapIg(bad, 'bad.json'), /bad.json: edge "a2.h0->m2" is not an edge of the graph its cfg describes/);
});

test('older CircuitLens exports (nodes as bare booleans, no d_model) still import', () => {
  const c = fromEapIg({ cfg: { n_layers: 2, n_heads: 4 }, nodes: { input: true, 'a0.h1': true, 'a0.h0': false, logits: true }, edges: {} }, 'old.json');
  assert.deepEqual(c.nodes, ['a0.h1']);
  assert.equal(c.granularity, 'node');
});

test('import refuses JSON that is not an EAP-IG graph', () => {
  assert.throws(() => fromEapIg({ nodes: [] }, 'bad.json'), /not an EAP-IG graph/);
  assert.throws(() => fromEapIg({ nodes: {}, edges: { 'a0.h1 a1.h2': { score: 1, in_graph: true } } }, 'bad.json'), /not of the form SRC->DST/);
});

// ---- Neuronpedia attribution-graph JSON ----

/**
 * The constraints of Neuronpedia's graph upload schema (neuronpedia apps/webapp/app/api/graph/graph-schema.json) that a
 * file must meet: required keys and their types.
 */
const NEURONPEDIA_UPLOAD = {
  type: 'object',
  required: ['metadata', 'qParams', 'nodes', 'links'],
  properties: {
    metadata: {
      type: 'object', required: ['slug', 'scan', 'prompt_tokens', 'prompt'],
      properties: { slug: { type: 'string' }, scan: { type: 'string' }, prompt_tokens: { type: 'array', items: { type: 'string' } }, prompt: { type: 'string' }, node_threshold: { type: 'number' }, info: { type: 'object' } },
    },
    qParams: { type: 'object', properties: { pinnedIds: { type: 'array', items: { type: 'string' } }, supernodes: { type: 'array' }, linkType: { type: 'string' }, clickedId: { type: 'string' }, sg_pos: { type: 'string' } } },
    nodes: {
      type: 'array',
      items: {
        type: 'object', required: ['node_id', 'feature', 'layer', 'ctx_idx', 'feature_type', 'jsNodeId', 'clerp'],
        properties: {
          node_id: { type: 'string' }, feature: { type: ['integer', 'null'] }, layer: { type: ['string', 'integer'] }, ctx_idx: { type: 'integer' },
          feature_type: { type: 'string' }, jsNodeId: { type: 'string' }, clerp: { type: 'string' }, influence: { type: ['number', 'null'] }, activation: { type: ['number', 'null'] },
        },
      },
    },
    links: { type: 'array', items: { type: 'object', required: ['source', 'target', 'weight'], properties: { source: { type: 'string' }, target: { type: 'string' }, weight: { type: 'number' } } } },
  },
};
const uploadable = new Ajv({ allErrors: true, strict: false }).compile(NEURONPEDIA_UPLOAD);
const SHAPE = { layers: 2, heads: 4, dModel: 64 };
const roundTrip = (c: Circuit) => fromNeuronpedia(JSON.parse(JSON.stringify(toNeuronpedia(c, SHAPE))), 'x.json');
const refuses = (json: unknown, re: RegExp) => assert.throws(() => fromNeuronpedia(json, 'g.json'), (e: unknown) => e instanceof UserError && /^g\.json: /.test(e.message) && re.test(e.message));

test('a node circuit becomes one Neuronpedia node per component, meeting the upload schema', () => {
  const c: Circuit = { schemaVersion: 1, name: 'Induction (GPT-2 demo)', granularity: 'node', ablation: 'mean', nodes: ['a0.h1', 'a1.h2', 'm1'], edges: [], scores: { 'a0.h1': 0.5, 'a1.h2': 1.25, m1: 0.125, 'a0.h0': -0.01 } };
  const g = toNeuronpedia(c, SHAPE, { scan: 'gpt2-small', promptTokens: ['Mary', ' walked', ' Mary'] });
  assert.ok(uploadable(g), JSON.stringify(uploadable.errors));
  assert.equal(g.metadata.slug, 'induction-gpt-2-demo');
  assert.equal(g.metadata.scan, 'gpt2-small');
  assert.deepEqual(g.nodes.map((n) => [n.node_id, n.feature_type, n.layer, n.feature, n.ctx_idx]), [
    ['input', 'embedding', 'E', 2, 2], ['a0.h1', 'lorsa', '1', 1, 2], ['a1.h2', 'lorsa', '3', 2, 2], ['m1', 'cross layer transcoder', '4', 0, 2], ['logits', 'logit', '5', 0, 2],
  ]);
  assert.match(g.nodes[2]!.clerp, /^a1\.h2: attention head 2 of layer 1 .*score 1\.25/);
  // The viewer reads a logit's probability from its clerp.
  assert.match(g.nodes[4]!.clerp, /\(p=1\.000\)/);
  assert.deepEqual(g.qParams.pinnedIds, ['a0.h1', 'a1.h2', 'm1']);
  // Adjacency along the residual stream, weight 1: no link between heads of one layer, none backwards.
  assert.deepEqual(g.links.map((l) => `${l.source}->${l.target}`).sort(), ['a0.h1->a1.h2', 'a0.h1->logits', 'a0.h1->m1', 'a1.h2->logits', 'a1.h2->m1', 'input->a0.h1', 'input->a1.h2', 'input->logits', 'input->m1', 'm1->logits']);
  assert.ok(g.links.every((l) => l.weight === 1 && l.circuitlens_edges === undefined));
});

test('node circuits round-trip through Neuronpedia JSON: ids, order, scores, metrics', () => {
  const c: Circuit = { schemaVersion: 1, name: 'n', granularity: 'node', ablation: 'resample', nodes: ['m1', 'a0.h3', 'a1.h0'], edges: [], scores: { m1: 0.3, 'a0.h3': -0.2 }, metrics: { faithfulness: 0.91 }, notes: 'kept' };
  const c2 = roundTrip(c);
  assert.deepEqual(c2.nodes, c.nodes);
  assert.deepEqual(c2.edges, []);
  assert.deepEqual(c2.scores, c.scores);
  assert.deepEqual(c2.metrics, c.metrics);
  assert.equal(c2.granularity, 'node');
  assert.equal(c2.ablation, 'resample');
  assert.equal(c2.name, 'n');
  assert.equal(c2.notes, 'kept');
});

test('edge circuits round-trip: q/k/v edges fold into one link each and come back with their scores', () => {
  const c: Circuit = {
    schemaVersion: 1, name: 'e', granularity: 'edge', nodes: ['a0.h1', 'a1.h2', 'm1'],
    edges: [
      { source: 'input', target: 'a0.h1<q>', score: 0.5 }, { source: 'a0.h1', target: 'a1.h2<k>', score: -1.25 }, { source: 'a0.h1', target: 'a1.h2<v>', score: 0.75 },
      { source: 'a0.h1', target: 'a1.h2<q>' }, { source: 'a1.h2', target: 'm1', score: 2 }, { source: 'm0', target: 'logits', score: 3 },
    ],
  };
  const g = toNeuronpedia(c, SHAPE);
  assert.ok(uploadable(g), JSON.stringify(uploadable.errors));
  const link = g.links.find((l) => l.source === 'a0.h1' && l.target === 'a1.h2')!;
  assert.deepEqual(link.circuitlens_edges, { 'a0.h1->a1.h2<k>': -1.25, 'a0.h1->a1.h2<v>': 0.75, 'a0.h1->a1.h2<q>': null });
  assert.equal(link.weight, -0.5);
  assert.equal(g.links.length, 4);
  // m0 is touched by an edge only: it is a node of the graph (and pinned), not of the circuit's node list.
  assert.ok(g.nodes.some((n) => n.node_id === 'm0'));
  assert.deepEqual(g.qParams.pinnedIds, ['a0.h1', 'a1.h2', 'm1', 'm0']);
  const c2 = roundTrip(c);
  assert.deepEqual(c2.edges, c.edges);
  assert.deepEqual(c2.nodes, c.nodes);
  assert.equal(c2.granularity, 'edge');
});

test('a component graph without the circuitlens block still imports: components from node ids, scores from weights', () => {
  const g = toNeuronpedia({ schemaVersion: 1, name: 'e', granularity: 'edge', nodes: [], edges: [{ source: 'a0.h1', target: 'm1', score: 2 }, { source: 'm1', target: 'logits', score: 0.5 }] }, SHAPE);
  const { circuitlens: _, ...metadata } = g.metadata;
  const plainGraph = { ...g, metadata, links: g.links.map(({ source, target, weight }) => ({ source, target, weight })) };
  const node = fromNeuronpedia(JSON.parse(JSON.stringify(plainGraph)), 'p.json');
  assert.equal(node.granularity, 'node');
  assert.deepEqual(node.nodes, ['a0.h1', 'm1']);
  assert.equal(node.name, 'e');
  // With the granularity said, plain links into MLPs and logits are edges whose score is the weight.
  const edge = fromNeuronpedia({ ...plainGraph, metadata: { ...metadata, circuitlens: { granularity: 'edge' } } }, 'p.json');
  assert.deepEqual(edge.edges, [{ source: 'a0.h1', target: 'm1', score: 2 }, { source: 'm1', target: 'logits', score: 0.5 }]);
  // Into a head, a plain link does not say which input it feeds.
  refuses({ ...plainGraph, metadata: { circuitlens: { granularity: 'edge' } }, nodes: [...plainGraph.nodes, { node_id: 'a1.h0', feature_type: 'lorsa' }], links: [{ source: 'a0.h1', target: 'a1.h0', weight: 1 }] }, /goes into attention head a1\.h0 without saying which input \(q, k or v\)/);
});

test('a circuit-tracer graph of transcoder features is refused with the reason', () => {
  const file = path.join(FIXTURES, 'neuronpedia', 'circuit-tracer-feature-graph.json');
  const json = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.ok(uploadable(json), 'the fixture has the layout Neuronpedia uploads');
  assert.throws(() => fromNeuronpedia(json, 'tracer.json'), (e: unknown) => {
    assert.ok(e instanceof UserError);
    assert.match(e.message, /^tracer\.json: a feature-level attribution graph \(4 "cross layer transcoder", 1 "mlp reconstruction error" of 13 nodes, scan "gemma-2-2b"; first "3_1412_4"\)/);
    assert.match(e.message, /cannot become a CircuitLens circuit/);
    assert.match(e.message, /export --format neuronpedia/);
    return true;
  });
});

test('malformed Neuronpedia graphs are refused with a message naming the file and the problem', () => {
  const ok = toNeuronpedia({ schemaVersion: 1, name: 'n', nodes: ['a0.h1'] }, SHAPE);
  const base = JSON.parse(JSON.stringify(ok));
  refuses(null, /not a Neuronpedia attribution graph/);
  refuses([], /not a Neuronpedia attribution graph/);
  refuses({ nodes: {}, links: [] }, /not a Neuronpedia attribution graph \(expected an object with "metadata" and the arrays "nodes" and "links"/);
  refuses({ ...base, nodes: [...base.nodes, 7] }, /nodes\[3\] is not an object/);
  refuses({ ...base, nodes: [{ feature_type: 'lorsa' }] }, /nodes\[0\] has no "node_id" string/);
  refuses({ ...base, nodes: [{ node_id: 'a0.h1' }] }, /node "a0\.h1" \(nodes\[0\]\) has no "feature_type" string/);
  refuses({ ...base, nodes: [...base.nodes, base.nodes[1]] }, /node id "a0\.h1" appears twice/);
  refuses({ ...base, nodes: [...base.nodes, { node_id: 'blob', feature_type: 'neuron' }] }, /node "blob" \(feature_type "neuron"\) is not a model component/);
  refuses({ ...base, links: [{ source: 'a0.h1', target: 'nowhere', weight: 1 }] }, /links\[0\] goes to "nowhere", which is not one of the nodes/);
  refuses({ ...base, links: [{ source: 'a0.h1', target: 'logits', weight: 'big' }] }, /links\[0\] \(a0\.h1 → logits\) has no finite number "weight"/);
  refuses({ ...base, links: [{ source: 'logits', target: 'a0.h1', weight: 1 }] }, /does not follow the residual stream: logits cannot feed a0\.h1/);
  refuses({ ...base, links: [{ source: 'input', target: 'a0.h1', weight: 1, circuitlens_edges: { 'm0->a0.h1<q>': 1 } }] }, /lists edge "m0->a0\.h1<q>", which does not join those nodes/);
  refuses({ ...base, links: [{ source: 'input', target: 'a0.h1', weight: 1, circuitlens_edges: { 'input->a0.h1<q>': 'high' } }] }, /gives edge "input->a0\.h1<q>" the score "high"/);
  refuses({ ...base, metadata: { ...base.metadata, circuitlens: { ...base.metadata.circuitlens, schemaVersion: 9 } } }, /written by a newer CircuitLens \(schemaVersion 9\)/);
  refuses({ ...base, metadata: { ...base.metadata, circuitlens: { nodes: ['a0.h1', 'q7'] } } }, /metadata\.circuitlens\.nodes\[1\]: unknown node id "q7"/);
  refuses({ ...base, metadata: { ...base.metadata, circuitlens: { scores: { 'a0.h1': 'x' } } } }, /metadata\.circuitlens\.scores must map node ids to numbers/);
});

test('export refuses circuits that do not fit the model or the residual stream', () => {
  assert.throws(() => toNeuronpedia({ schemaVersion: 1, name: 'n', nodes: ['a5.h0'] }, SHAPE), /node "a5\.h0" is not in this model/);
  assert.throws(() => toNeuronpedia({ schemaVersion: 1, name: 'n', nodes: [], edges: [{ source: 'm1', target: 'a0.h1<q>' }] }, SHAPE), /edge "m1->a0\.h1<q>" does not follow the residual stream/);
  assert.throws(() => toNeuronpedia({ schemaVersion: 1, name: 'n', nodes: [], edges: [{ source: 'a0.h1', target: 'm1<k>' }] }, SHAPE), /only attention heads have q, k, v inputs/);
});
