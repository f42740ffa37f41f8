// circuitlens sweep's use case (core/analysis/sweep/sweep.ts) on real models: per value of the swept variable, the
// metric and accuracy equal an independent PyTorch computation (scripts/sweep_references.py expands the suite
// itself and runs the demo models' PyTorch modules with the weights of the committed .onnx files), unablated and
// with a head zero-ablated; and the sweep runs on two zoo families with other tokenizers.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openSuite } from '../../core/analysis/open-suite';
import { runSweep } from '../../core/analysis/sweep/sweep';
import { parseSuite } from '../../core/formats/suite';
import type { NodeId } from '../../core/ids';
import { loadEngine } from '../../core/nodejs/load';
import { EXAMPLES, FIXTURES } from '../helpers';

interface RefPoint { value: number; prompts: number; logit_diff: number; accuracy: number }
interface RefModel { points: RefPoint[]; critical: number | null; ablated: { nodes: string[]; kind: 'zero'; points: RefPoint[]; critical: number | null } }
const REF = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'references', 'induction-sweep.json'), 'utf8')) as { variable: string; level: number; models: Record<string, RefModel> };

async function sweepOf(suiteFile: string, model: string, ablate: NodeId[] = [], ablation?: 'zero') {
  const { suite } = parseSuite(suiteFile, fs.readFileSync(suiteFile, 'utf8'));
  assert.ok(suite, `${suiteFile} parses`);
  const engine = await loadEngine(model);
  try {
    const { opened, diagnostics } = openSuite(suite, engine, ablation);
    assert.ok(opened, JSON.stringify(diagnostics));
    return await runSweep(opened, { ablate, resamples: 200 });
  } finally {
    await engine.release();
  }
}

function assertMatches(got: Awaited<ReturnType<typeof sweepOf>>, want: RefPoint[], critical: number | null, what: string) {
  assert.deepEqual(got.points.map((p) => p.value), want.map((p) => p.value), `${what}: values`);
  got.points.forEach((p, i) => {
    const w = want[i]!;
    assert.equal(p.prompts, w.prompts, `${what} n=${p.value}: prompts`);
    assert.ok(Math.abs(p.metric - w.logit_diff) < 1e-3, `${what} n=${p.value}: logit_diff ${p.metric} vs PyTorch ${w.logit_diff}`);
    assert.equal(p.accuracy, w.accuracy, `${what} n=${p.value}: accuracy`);
    assert.ok(p.ci!.metric[0] <= p.metric && p.metric <= p.ci!.metric[1], `${what} n=${p.value}: the interval holds the mean`);
    assert.ok(p.ci!.accuracy[0] <= p.accuracy && p.accuracy <= p.ci!.accuracy[1]);
  });
  if (critical === null) assert.equal(got.critical, null, `${what}: no crossing`);
  else assert.ok(got.critical && Math.abs(got.critical.value - critical) < 1e-9, `${what}: n* ${got.critical?.value} vs PyTorch ${critical}`);
}

describe('sweep on the demo models against PyTorch', () => {
  const suite = path.join(EXAMPLES, 'induction-sweep.suite.yaml');
  for (const name of ['induction-gpt2', 'induction-llama']) {
    test(`${name}: metric, accuracy and n* per padding length`, { timeout: 300_000 }, async () => {
      const ref = REF.models[name]!;
      const r = await sweepOf(suite, path.join(EXAMPLES, `${name}.onnx`));
      assert.equal(r.variable, REF.variable);
      assertMatches(r, ref.points, ref.critical, name);
      assert.equal(r.critical?.direction, 'falls');
      const ab = await sweepOf(suite, path.join(EXAMPLES, `${name}.onnx`), ref.ablated.nodes as NodeId[], 'zero');
      assertMatches(ab, ref.ablated.points, ref.ablated.critical, `${name} with ${ref.ablated.nodes} zero-ablated`);
    });
  }
});

describe('sweep on zoo families (their own tokenizers)', () => {
  for (const family of ['gpt2', 'llama']) {
    test(`zoo ${family}: accuracy collapses past the training length`, { timeout: 300_000 }, async () => {
      const file = path.join(FIXTURES, 'sweep', `zoo-${family}.suite.yaml`);
      const r = await sweepOf(file, path.join(FIXTURES, 'zoo', family, 'model.onnx'));
      assert.equal(r.points.length, 11);
      assert.equal(r.points[0]!.accuracy, 1, 'induction works without padding');
      assert.ok(r.points.at(-1)!.accuracy < 0.2, 'and not with 40 tokens of it');
      assert.equal(r.critical?.direction, 'falls');
      assert.ok(r.critical!.value > 8 && r.critical!.value < 32, `n* ${r.critical!.value}`);
    });
  }
});
