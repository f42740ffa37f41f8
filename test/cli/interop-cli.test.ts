// export / import of circuits as Neuronpedia attribution-graph JSON, through the CLI as a user runs it.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXAMPLES, FIXTURES } from '../helpers';
import { cli } from './run-cli';

const CIRCUIT = path.join(EXAMPLES, 'induction-gpt2.circuit.json');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-neuronpedia-'));

const failsClearly = (args: string[], re: RegExp) => {
  const r = cli(args);
  assert.equal(r.code, 2, `exit ${r.code}\n${r.stderr}`);
  assert.match(r.stderr, re);
  assert.doesNotMatch(r.stderr, /\n\s+at |internal error/);
  assert.equal(r.stdout, '');
};

describe('export / import --format neuronpedia', () => {
  test('a circuit goes out as a Neuronpedia graph and comes back the same', () => {
    const graphPath = path.join(tmp, 'induction.json');
    const out = cli(['export', CIRCUIT, '--format', 'neuronpedia', '--prompt', 'Mary walked garden red Mary walked', '--out', graphPath]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, '');
    const g = JSON.parse(fs.readFileSync(graphPath, 'utf8'));
    const original = JSON.parse(fs.readFileSync(CIRCUIT, 'utf8'));
    assert.equal(g.metadata.scan, 'induction-gpt2');
    assert.equal(g.metadata.prompt, 'Mary walked garden red Mary walked');
    const last = g.metadata.prompt_tokens.length - 1;
    assert.ok(last >= 1, 'the prompt is tokenized');
    assert.ok(g.nodes.every((n: { ctx_idx: number }) => n.ctx_idx === last), 'every node at the last position');
    assert.deepEqual(g.nodes.map((n: { node_id: string }) => n.node_id), ['input', ...original.nodes, 'logits']);
    assert.equal(g.metadata.info.generator.name, 'CircuitLens');

    const back = path.join(tmp, 'back.circuit.json');
    const imp = cli(['import', graphPath, '--format', 'neuronpedia', '--out', back, '--json']);
    assert.equal(imp.code, 0, imp.stderr);
    assert.deepEqual(JSON.parse(imp.stdout).nodes, original.nodes.length);
    const c = JSON.parse(fs.readFileSync(back, 'utf8'));
    for (const k of ['schemaVersion', 'name', 'granularity', 'ablation', 'nodes', 'edges', 'metrics', 'notes']) assert.deepEqual(c[k], original[k], k);
  });

  test('without --out the graph is printed; without --prompt nodes sit on one pseudo-token', () => {
    const r = cli(['export', CIRCUIT, '--format', 'neuronpedia', '--scan', 'my-model', '--slug', 'induction-demo']);
    assert.equal(r.code, 0, r.stderr);
    const g = JSON.parse(r.stdout);
    assert.deepEqual([g.metadata.scan, g.metadata.slug, g.metadata.prompt_tokens], ['my-model', 'induction-demo', ['<all positions>']]);
  });

  test('a circuit-tracer feature graph is refused with the reason, exit 2', () => {
    failsClearly(['import', path.join(FIXTURES, 'neuronpedia', 'circuit-tracer-feature-graph.json'), '--format', 'neuronpedia', '--out', path.join(tmp, 'f.circuit.json')],
      /circuit-tracer-feature-graph\.json: a feature-level attribution graph \(4 "cross layer transcoder", 1 "mlp reconstruction error" of 13 nodes, scan "gemma-2-2b"[\s\S]*cannot become a CircuitLens circuit/);
    assert.ok(!fs.existsSync(path.join(tmp, 'f.circuit.json')), 'nothing written');
  });

  test('bad input: exit 2 with one clear message', () => {
    const broken = path.join(tmp, 'broken.json');
    fs.writeFileSync(broken, '{"metadata": {"slug": "x"}, "nodes": [');
    failsClearly(['import', broken, '--format', 'neuronpedia', '--out', path.join(tmp, 'b.circuit.json')], /broken\.json is not valid JSON/);
    const links = path.join(tmp, 'links.json');
    fs.writeFileSync(links, JSON.stringify({ metadata: {}, nodes: [{ node_id: 'm0', feature_type: 'cross layer transcoder' }], links: [{ source: 'm0', target: 'm9', weight: 1 }] }));
    failsClearly(['import', links, '--format', 'neuronpedia', '--out', path.join(tmp, 'l.circuit.json')], /links\.json: links\[0\] goes to "m9", which is not one of the nodes/);
    failsClearly(['export', CIRCUIT, '--format', 'eap-ig', '--scan', 'x'], /--scan applies to --format neuronpedia only/);
    failsClearly(['export', CIRCUIT, '--format', 'graphml'], /--format must be one of eap-ig, neuronpedia \(got "graphml"\)/);
    failsClearly(['import', links, '--format', 'neuronpedia'], /expected one input file and --out/);
  });
});
