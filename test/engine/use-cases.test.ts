// The use-case layer every front end calls (core/analysis/open-suite, attribute/, verify/, records): its answers
// are the ones of the analysis functions underneath, its policies (task/control split, edge method choice, circuit
// checks against the model) hold for the CLI, the extension and the canaries alike.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { attribute, estimateAttribution } from '../../core/analysis/attribute/attribute';
import { patchingAttribution } from '../../core/analysis/attribute/nodes';
import { edgeGradientScores, edgePatchingScores } from '../../core/analysis/attribute/edges';
import { prepareEdges } from '../../core/analysis/edge-context';
import { verifyEdgeCircuit } from '../../core/analysis/verify/edges';
import { formatEdgeId } from '../../core/ids';
import { openSuite, prepareSuite, splitPrompts } from '../../core/analysis/open-suite';
import { defaultCircuitName, markedCircuit } from '../../core/analysis/records';
import { verifyCircuit } from '../../core/analysis/verify/nodes';
import { checkCircuitOnModel, evaluateSavedCircuit, verifySavedCircuit } from '../../core/analysis/verify/verify';
import type { Engine } from '../../core/engine/engine';
import { parseCircuit, serializeCircuit, type Circuit } from '../../core/formats/circuit';
import { parseSuite } from '../../core/formats/suite';
import { loadEngine } from '../../core/nodejs/load';
import { EXAMPLES } from '../helpers';

const SUITE = `name: small
metric: logit_diff
ablation: mean
prompts:
  - {text: "Mary walked garden red apple dog Mary walked garden red", answer: " apple", foil: " Mary"}
  - {text: "Bob ran river blue bread cat Bob ran river blue", answer: " bread", foil: " Bob"}
  - {text: "Mary ran garden blue apple cat Mary ran garden blue", answer: " apple", foil: " Mary"}
  - {text: "Bob walked river red bread dog Bob walked river red", answer: " bread", foil: " Bob"}
  - {text: "dog cat apple bread red blue garden river Mary Bob", answer: " walked", foil: " dog", tags: [control]}
`;

describe('use cases on the GPT-2 demo model', () => {
  let engine: Engine;
  before(async () => { engine = await loadEngine(path.join(EXAMPLES, 'induction-gpt2.onnx')); });
  after(async () => { await engine.release(); });

  test('openSuite splits task and control prompts; analyses refuse a suite of controls only', async () => {
    const { suite } = parseSuite('small.suite.yaml', SUITE);
    const { opened, diagnostics } = openSuite(suite!, engine);
    assert.deepEqual(diagnostics.filter((d) => d.severity === 'error'), []);
    assert.equal(opened!.all.length, 5);
    assert.equal(opened!.task.length, 4);
    assert.equal(opened!.control.length, 1);
    assert.equal(opened!.ablation, 'mean');
    assert.equal(openSuite(suite!, engine, 'zero').opened!.ablation, 'zero');
    const onlyControls = opened!.all.map((p) => ({ ...p, tags: ['control'] }));
    assert.equal(splitPrompts(onlyControls).task.length, 0);
    await assert.rejects(prepareSuite({ ...opened!, ...splitPrompts(onlyControls) }), /suite "small" has no task prompts: every prompt is tagged control/);
  });

  test('openSuite returns prompt problems as diagnostics at their line instead of throwing', () => {
    const { suite } = parseSuite('bad.suite.yaml', 'name: bad\nmetric: prob\nprompts:\n  - {text: "Mary walked", answer: " Mary walked"}\n');
    const { opened, diagnostics } = openSuite(suite!, engine);
    assert.equal(opened, undefined);
    assert.equal(diagnostics[0]!.line, 4);
  });

  test('attribute: node level equals patching attribution; edge auto picks path patching on a small model; graph has both', async () => {
    const { suite } = parseSuite('small.suite.yaml', SUITE);
    const o = openSuite(suite!, engine).opened!;
    const { task } = await prepareSuite(o);
    const direct = await patchingAttribution(task, 'logit_diff');
    const nodes = await attribute(task, o.all, 'logit_diff', { level: 'node', method: 'patching' });
    assert.deepEqual(nodes.nodes, direct.nodes);
    assert.equal(nodes.edges.length, 0);
    const ec = await prepareEdges(task, o.all);
    const exact = (await edgePatchingScores(ec, 'logit_diff')).edges;
    const auto = await attribute(task, o.all, 'logit_diff', { level: 'edge', method: 'auto' });
    assert.equal(auto.edgeMethod, 'path patching');
    assert.deepEqual(auto.edges, exact);
    const grad = await attribute(task, o.all, 'logit_diff', { level: 'edge', method: 'gradient' });
    assert.deepEqual(grad.edges, await edgeGradientScores(ec, 'logit_diff'));
    const graph = await attribute(task, o.all, 'logit_diff', { level: 'graph', method: 'auto' });
    assert.deepEqual(graph.nodes, direct.nodes);
    assert.deepEqual(graph.edges, exact);
    const est = estimateAttribution(task, { level: 'node', method: 'patching' });
    assert.equal(est.forwardRows, (engine.info.layers * (engine.info.heads + 1) + 1) * task.prompts.length);
  });

  test('verifySavedCircuit and evaluateSavedCircuit equal the node- and edge-level verifications underneath', async () => {
    const { suite } = parseSuite('small.suite.yaml', SUITE);
    const o = openSuite(suite!, engine).opened!;
    const ctxs = await prepareSuite(o, { control: true });
    assert.ok(ctxs.control);
    const nodeCircuit: Circuit = { schemaVersion: 1, name: 'n', granularity: 'node', nodes: ['a0.h1', 'a1.h0', 'm0'], edges: [] };
    const v = await verifySavedCircuit(nodeCircuit, ctxs, o.all, 'logit_diff');
    assert.equal(v.level, 'node');
    assert.deepEqual(v.verification, await verifyCircuit(ctxs.task, ['a0.h1', 'a1.h0', 'm0'], 'logit_diff', ctxs.control));
    const ev = await evaluateSavedCircuit(nodeCircuit, ctxs.task, o.all);
    assert.equal(ev.faithfulness.logit_diff, v.verification.faithfulness);

    const ec = await prepareEdges(ctxs.task, o.all);
    const edges = ['input->a0.h1<v>', 'a0.h1->a1.h0<k>', 'a1.h0->logits'];
    const edgeCircuit: Circuit = { schemaVersion: 1, name: 'e', granularity: 'edge', nodes: ['a0.h1', 'a1.h0'], edges: edges.map((e) => { const [source, target] = e.split('->'); return { source: source!, target: target! }; }) };
    const ve = await verifySavedCircuit(edgeCircuit, ctxs, o.all, 'logit_diff');
    assert.equal(ve.level, 'edge');
    const cc = await prepareEdges(ctxs.control!, o.all);
    const scores = await edgeGradientScores(ec, 'logit_diff');
    assert.deepEqual(ve.verification, await verifyEdgeCircuit(ec, edges, 'logit_diff', scores, cc));
    const eve = await evaluateSavedCircuit(edgeCircuit, ctxs.task, o.all);
    assert.equal(eve.edges, 3);
    assert.equal(eve.faithfulness.logit_diff, ve.verification.faithfulness);
    assert.ok(ec.ids.includes(formatEdgeId(edgeCircuit.edges![0]!)));
  });

  test('checkCircuitOnModel reports missing nodes and edges at their lines, and another model file as a warning', () => {
    const text = serializeCircuit({ schemaVersion: 1, name: 'x', model: { path: 'm.onnx', sha256: 'a'.repeat(64) }, granularity: 'edge', nodes: ['a0.h1', 'a7.h0'], edges: [{ source: 'a0.h1', target: 'a1.h0<k>' }, { source: 'a1.h0', target: 'a0.h1<q>' }] });
    const parsed = parseCircuit('x.circuit.json', text);
    const r = checkCircuitOnModel(parsed.circuit!, parsed.source, engine, 'b'.repeat(64));
    assert.match(r.error!.message, /names nodes the model does not have: a7\.h0/);
    const errs = r.diagnostics.filter((d) => d.severity === 'error');
    assert.equal(errs.length, 2);
    assert.equal(errs[0]!.line, text.split('\n').findIndex((l) => l.includes('"a7.h0"')) + 1);
    assert.match(errs[1]!.message, /edge "a1\.h0->a0\.h1<q>" is not an edge of this model/);
    assert.match(r.diagnostics.find((d) => d.severity === 'warning')!.message, /found on a different model file/);
    const ok = parseCircuit('y.circuit.json', serializeCircuit({ schemaVersion: 1, name: 'y', nodes: ['a0.h1'], edges: [] }));
    assert.deepEqual(checkCircuitOnModel(ok.circuit!, ok.source, engine), { diagnostics: [], error: undefined });
  });
});

test('records: a hand-marked circuit and the name new circuits are offered under', () => {
  const c = markedCircuit(['a0.h1', 'm0'], { name: 'mine', ablation: 'mean', model: { path: 'm.onnx', sha256: 'f'.repeat(64) }, suite: 's.suite.yaml', scores: { 'a0.h1': 0.5 }, method: 'exact patching' });
  const parsed = parseCircuit('mine.circuit.json', serializeCircuit(c));
  assert.ok(parsed.circuit, JSON.stringify(parsed.diagnostics));
  assert.deepEqual(parsed.circuit!.nodes, ['a0.h1', 'm0']);
  assert.equal(parsed.circuit!.granularity, 'node');
  assert.match(parsed.circuit!.notes!, /Marked by hand.*exact patching/);
  assert.equal(defaultCircuitName('/w/examples/induction.suite.yaml', '/w/examples/induction-gpt2.onnx'), 'induction-induction-gpt2');
  assert.equal(defaultCircuitName('C:\\w\\a.suite.yml', 'C:\\w\\M.ONNX'), 'a-M');
});
