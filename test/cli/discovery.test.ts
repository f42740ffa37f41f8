import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { evaluateSets, prepare } from '../../core/analysis/evaluate';
import { resolvePrompts } from '../../core/analysis/prompts';
import { parseSuite } from '../../core/formats/suite';
import { allComponentNodes, type NodeId } from '../../core/ids';
import { loadEngine } from '../../core/nodejs/load';
import { EXAMPLES } from '../helpers';
import { cli, headSignatures } from './run-cli';

const SUITE = path.join(EXAMPLES, 'induction.suite.yaml');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-discover-'));

for (const name of ['induction-gpt2', 'induction-llama']) {
  const model = path.join(EXAMPLES, `${name}.onnx`);
  describe(`discover + verify on ${name}`, () => {
    for (const method of ['greedy', 'acdc']) {
      test(`${method} finds previous-token and induction heads with faithfulness ≥ 0.8`, () => {
        const out = path.join(tmp, `${name}-${method}.circuit.json`);
        const r = cli(['discover', SUITE, '--model', model, '--method', method, '--out', out, '--json']);
        assert.equal(r.code, 0, r.stderr);
        const c = JSON.parse(fs.readFileSync(out, 'utf8'));
        assert.equal(c.schemaVersion, 1);
        assert.equal(c.granularity, 'node');
        assert.match(c.model.sha256, /^[0-9a-f]{64}$/);
        assert.equal(path.resolve(path.dirname(out), c.model.path), model);
        assert.ok(c.metrics.faithfulness >= 0.8, `faithfulness ${c.metrics.faithfulness}`);
        assert.ok(c.metrics.faithfulnessByMetric.accuracy >= 0.8);
        const sig = headSignatures(model);
        const heads = (c.nodes as string[]).filter((n) => n.startsWith('a'));
        const prevHeads = heads.filter((h) => h.startsWith('a0.') && sig.get(h)!.prev > 0.4);
        const inductionHeads = heads.filter((h) => h.startsWith('a1.') && sig.get(h)!.induction > 0.8);
        assert.ok(prevHeads.length >= 1, `no previous-token head in ${heads}`);
        assert.ok(inductionHeads.length >= 1, `no induction head in ${heads}`);
        assert.ok(c.nodes.length < allComponentNodes({ layers: 2, heads: 4 }).length, 'the circuit is smaller than the model');
      });
    }

    test('verify prints the numbers a direct computation gives', async () => {
      const out = path.join(tmp, `${name}-greedy.circuit.json`);
      if (!fs.existsSync(out)) assert.equal(cli(['discover', SUITE, '--model', model, '--out', out]).code, 0);
      const r = cli(['verify', out, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const v = JSON.parse(r.stdout);
      for (const k of ['faithfulness', 'faithfulnessByMetric', 'necessity', 'minimality']) assert.ok(k in v, k);
      const nodes = JSON.parse(fs.readFileSync(out, 'utf8')).nodes as NodeId[];
      // Direct: ablate everything outside the circuit, everything, nothing, the circuit — with the engine alone.
      const engine = await loadEngine(model);
      try {
        const { suite } = parseSuite(SUITE, fs.readFileSync(SUITE, 'utf8'));
        const task = resolvePrompts(suite!, engine).prompts.filter((p) => !p.tags.includes('control'));
        const ctx = await prepare(engine, task, 'mean', { meanOver: resolvePrompts(suite!, engine).prompts });
        const all = allComponentNodes(engine.info);
        const [full, empty, circ, comp] = await evaluateSets(ctx, [[], all, all.filter((n) => !nodes.includes(n)), nodes]);
        const ld = (x: typeof full) => x!.metrics.logit_diff;
        const f = (ld(circ) - ld(empty)) / (ld(full) - ld(empty));
        const nec = 1 - (ld(comp) - ld(empty)) / (ld(full) - ld(empty));
        const acc = (circ!.metrics.accuracy - empty!.metrics.accuracy) / (full!.metrics.accuracy - empty!.metrics.accuracy);
        const kl = 1 - circ!.metrics.kl / empty!.metrics.kl;
        assert.ok(Math.abs(v.faithfulness - f) < 1e-5, `${v.faithfulness} vs ${f}`);
        assert.ok(Math.abs(v.necessity - nec) < 1e-5);
        assert.ok(Math.abs(v.faithfulnessByMetric.accuracy - acc) < 1e-5);
        assert.ok(Math.abs(v.faithfulnessByMetric.kl - kl) < 1e-5);
        // Minimality of one node: faithfulness without it.
        const n0 = nodes[0]!;
        const [without] = await evaluateSets(ctx, [all.filter((n) => !nodes.includes(n) || n === n0)]);
        assert.ok(Math.abs(v.minimality[n0] - (f - (ld(without) - ld(empty)) / (ld(full) - ld(empty)))) < 1e-5);
        assert.equal(v.curve.length, all.length + 1);
        assert.ok(v.cpr > 0 && v.cpr <= 1.1 && v.cmd >= 0);
        assert.equal(v.specificity.prompts, 17);
      } finally {
        await engine.release();
      }
    });
  });
}

describe('attribute and diff', () => {
  test('attribute --json gives a score per head and MLP equal to the single-ablation drop', () => {
    const r = cli(['attribute', SUITE, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.nodes.length, 10);
    assert.deepEqual(j.edges, []);
    const m0 = j.nodes.find((n: { id: string }) => n.id === 'm0').score;
    const run = (args: string[]) => JSON.parse(cli(['run', SUITE, ...args, '--json']).stdout);
    const taskMean = (x: { prompts: { tags: string[]; value: number }[] }) => {
      const t = x.prompts.filter((p) => !p.tags.includes('control'));
      return t.reduce((s, p) => s + p.value, 0) / t.length;
    };
    assert.ok(Math.abs(m0 - (taskMean(run([])) - taskMean(run(['--ablate', 'm0'])))) < 1e-4);
  });

  test('gradient attribution answers with the keys of patching', () => {
    assert.equal(cli(['attribute', SUITE, '--steps', '4']).code, 2, '--steps needs --method gradient');
    const r = cli(['attribute', SUITE, '--method', 'gradient', '--steps', '4', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.method, 'gradient');
    assert.equal(j.steps, 4);
    assert.deepEqual(j.edges, []);
    assert.deepEqual(j.nodes.map((n: { id: string }) => n.id).sort(), ['a0.h0', 'a0.h1', 'a0.h2', 'a0.h3', 'a1.h0', 'a1.h1', 'a1.h2', 'a1.h3', 'm0', 'm1']);
  });

  test('diff ranks heads by task-vs-control effect size', () => {
    const r = cli(['diff', SUITE, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.task, 81);
    assert.equal(j.control, 17);
    assert.equal(j.nodes.length, 10);
    for (let i = 1; i < j.nodes.length; i++) assert.ok(Math.abs(j.nodes[i - 1].effectSize) >= Math.abs(j.nodes[i].effectSize));
  });
});
