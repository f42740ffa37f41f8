// Edge level end to end: attribute (patching and gradient), discover (greedy and ACDC) and verify on both demo
// models, checked against direct engine computations and the heads' attention signatures.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { edgeWeights, evaluateEdgeSets, prepareEdges } from '../../core/analysis/edge-context';
import { prepare } from '../../core/analysis/evaluate';
import { resolvePrompts } from '../../core/analysis/prompts';
import { parseSuite } from '../../core/formats/suite';
import type { Engine } from '../../core/engine/engine';
import { loadEngine } from '../../core/nodejs/load';
import { EXAMPLES } from '../helpers';
import { cli, headSignatures } from './run-cli';

const SUITE = path.join(EXAMPLES, 'induction.suite.yaml');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-edges-'));

/** Spearman rank correlation. */
function spearman(a: number[], b: number[]): number {
  const rank = (x: number[]) => { const r = new Array<number>(x.length); [...x.keys()].sort((i, j) => x[i]! - x[j]!).forEach((i, k) => { r[i] = k; }); return r; };
  const [ra, rb] = [rank(a), rank(b)];
  const n = a.length;
  const d2 = ra.reduce((s, r, i) => s + (r - rb[i]!) ** 2, 0);
  return 1 - (6 * d2) / (n * (n * n - 1));
}

/** The suite's task prompts with mean edge ablation (means over every prompt), as the CLI prepares them. */
async function taskEdges(engine: Engine) {
  const { suite } = parseSuite(SUITE, fs.readFileSync(SUITE, 'utf8'));
  const all = resolvePrompts(suite!, engine).prompts;
  const task = all.filter((x) => !x.tags.includes('control'));
  return prepareEdges(await prepare(engine, task, 'mean', { meanOver: all }), all);
}

for (const name of ['induction-gpt2', 'induction-llama']) {
  const model = path.join(EXAMPLES, `${name}.onnx`);
  describe(`edge level on ${name}`, () => {
    test('attribute --level edge: patching scores equal single-edge drops; gradient scores agree in rank', async () => {
      const p = cli(['attribute', SUITE, '--model', model, '--level', 'edge', '--json']);
      assert.equal(p.code, 0, p.stderr);
      const g = cli(['attribute', SUITE, '--model', model, '--level', 'edge', '--method', 'gradient', '--steps', '8', '--json']);
      assert.equal(g.code, 0, g.stderr);
      const pj = JSON.parse(p.stdout);
      const gj = JSON.parse(g.stdout);
      assert.equal(pj.level, 'edge');
      assert.equal(pj.edges.length, 110);
      assert.deepEqual(gj.edges.map((e: { source: string; target: string }) => `${e.source}->${e.target}`), pj.edges.map((e: { source: string; target: string }) => `${e.source}->${e.target}`));
      const rho = spearman(pj.edges.map((e: { score: number }) => e.score), gj.edges.map((e: { score: number }) => e.score));
      console.log(`# ${name}: EAP-IG(8) vs exact path patching over 110 edges: Spearman ${rho.toFixed(3)}`);
      assert.ok(rho > 0.5, `rank agreement ${rho}`);
      // One score, directly: the drop in the task prompts' mean logit difference when that edge alone is ablated.
      const engine = await loadEngine(model);
      try {
        const ec = await taskEdges(engine);
        const top = [...pj.edges].sort((a: { score: number }, b: { score: number }) => b.score - a.score)[0];
        const [clean, abl] = await evaluateEdgeSets(ec, [edgeWeights(ec, []), edgeWeights(ec, [`${top.source}->${top.target}`])]);
        assert.ok(Math.abs(top.score - (clean!.logit_diff - abl!.logit_diff)) < 1e-3, `${top.score} vs ${clean!.logit_diff - abl!.logit_diff}`);
      } finally {
        await engine.release();
      }
    });

    test('discover --level edge (ACDC) finds a faithful edge circuit through previous-token and induction heads; verify agrees', async () => {
      const out = path.join(tmp, `${name}-acdc.circuit.json`);
      const r = cli(['discover', SUITE, '--model', model, '--level', 'edge', '--method', 'acdc', '--out', out, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const c = JSON.parse(fs.readFileSync(out, 'utf8'));
      assert.equal(c.granularity, 'edge');
      assert.ok(c.edges.length > 0 && c.edges.length < 110, `${c.edges.length} edges`);
      assert.ok(c.metrics.faithfulness >= 0.8, `faithfulness ${c.metrics.faithfulness}`);
      assert.ok(c.metrics.faithfulnessByMetric.accuracy >= 0.8, `accuracy faithfulness ${c.metrics.faithfulnessByMetric.accuracy}`);
      const sig = headSignatures(model);
      const heads = (c.nodes as string[]).filter((n) => n.startsWith('a'));
      assert.ok(heads.some((h) => h.startsWith('a0.') && sig.get(h)!.prev > 0.4), `no previous-token head in ${heads}`);
      assert.ok(heads.some((h) => h.startsWith('a1.') && sig.get(h)!.induction > 0.8), `no induction head in ${heads}`);
      // An induction head reads its keys from layer 0 (directly or through m0): K-composition.
      const kEdges = (c.edges as { source: string; target: string }[]).filter((e) => /^a1\.h\d+<k>$/.test(e.target) && e.source !== 'input');
      assert.ok(kEdges.length > 0, 'no layer-0 → induction-head key edge');

      // verify recomputes the same faithfulness; a direct computation with the engine agrees.
      const v = cli(['verify', out, '--json']);
      assert.equal(v.code, 0, v.stderr);
      const vj = JSON.parse(v.stdout);
      assert.ok(Math.abs(vj.faithfulness - c.metrics.faithfulness) < 1e-6);
      assert.equal(Object.keys(vj.minimality).length, c.edges.length);
      const engine = await loadEngine(model);
      try {
        const ec = await taskEdges(engine);
        const ids = (c.edges as { source: string; target: string }[]).map((e) => `${e.source}->${e.target}`);
        const [full, empty, circ, comp] = await evaluateEdgeSets(ec, [edgeWeights(ec, []), edgeWeights(ec, ec.ids), edgeWeights(ec, ids, true), edgeWeights(ec, ids)]);
        const f = (circ!.logit_diff - empty!.logit_diff) / (full!.logit_diff - empty!.logit_diff);
        const nec = 1 - (comp!.logit_diff - empty!.logit_diff) / (full!.logit_diff - empty!.logit_diff);
        assert.ok(Math.abs(vj.faithfulness - f) < 1e-5, `${vj.faithfulness} vs ${f}`);
        assert.ok(Math.abs(vj.necessity - nec) < 1e-5);
      } finally {
        await engine.release();
      }

      // A canary over the edge circuit checks it at edge level (same faithfulness as verify).
      const canary = path.join(tmp, `${name}-edges.canary.yaml`);
      fs.writeFileSync(canary, [
        `model: ${model}`, `suite: ${SUITE}`, 'checks:',
        '  - name: edge circuit is faithful', '    tags: [task]', `    circuit: ${out}`, '    faithfulness: ">= 0.8"',
        '  - name: edge circuit is unfaithful (fails)', '    tags: [task]', `    circuit: ${out}`, '    faithfulness: "<= 0.5"', '',
      ].join('\n'));
      const cr = cli(['canary', canary, '--reporter', 'json']);
      assert.equal(cr.code, 1, cr.stderr);
      const checks = JSON.parse(cr.stdout).canaries[0].checks as { status: string; actual: number; message: string }[];
      assert.deepEqual(checks.map((x) => x.status), ['passed', 'failed']);
      assert.ok(Math.abs(checks[0]!.actual - vj.faithfulness) < 1e-5, `${checks[0]!.actual} vs ${vj.faithfulness}`);
      assert.match(checks[0]!.message, /\d+ edges/);

      // Edge ids round-trip through EAP-IG / MIB JSON.
      const eap = path.join(tmp, `${name}.eap-ig.json`);
      assert.equal(cli(['export', out, '--format', 'eap-ig', '--model', model, '--out', eap]).code, 0);
      const back = path.join(tmp, `${name}-back.circuit.json`);
      const imp = cli(['import', eap, '--format', 'eap-ig', '--out', back]);
      assert.equal(imp.code, 0, imp.stderr);
      const b = JSON.parse(fs.readFileSync(back, 'utf8'));
      const key = (e: { source: string; target: string }) => `${e.source}->${e.target}`;
      assert.deepEqual(b.edges.map(key).sort(), c.edges.map(key).sort());
    });
  });
}

test('discover --level edge greedy by gradient scores reaches the target faithfulness', () => {
  const out = path.join(tmp, 'greedy.circuit.json');
  const r = cli(['discover', SUITE, '--level', 'edge', '--scores', 'gradient', '--steps', '4', '--faithfulness', '0.8', '--out', out, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.ok(j.faithfulness >= 0.8, String(j.faithfulness));
  assert.ok(j.edges.length < 110);
});
