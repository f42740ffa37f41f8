// prune's points and sensitivity's rows on "workers" (core/analysis/distributed/variants.ts), without Redis: each
// job goes through JSON as BullMQ stores it and is measured on a model opened apart from the coordinator's (its own
// weights, its own baseline), as `circuitlens worker` does. The reports, unrounded, must equal the local run's exactly
// (but sensitivity's seconds); job ids are the same when the same run is asked again.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { VariantWork } from '../../core/analysis/distributed/plan';
import type { ChunkJob, JobRunner } from '../../core/analysis/distributed/run';
import { computeVariant, openVariantBench, variantsOnWorkers, type VariantBench } from '../../core/analysis/distributed/variants';
import { runPrune } from '../../core/analysis/prune/prune';
import { runSensitivity } from '../../core/analysis/sensitivity/sensitivity';
import { circuitComponents, parseCircuit } from '../../core/formats/circuit';
import { parseSuite } from '../../core/formats/suite';
import { createRuntime } from '../../core/nodejs/load';
import { openModelVariants } from '../../core/nodejs/model-variants';
import { EXAMPLES } from '../helpers';

const SUITE = path.join(EXAMPLES, 'induction.suite.yaml');
const MODEL = path.join(EXAMPLES, 'induction-gpt2.onnx');
const CIRCUIT = path.join(EXAMPLES, 'induction-gpt2.circuit.json');
const hash = (s: string) => crypto.createHash('sha256').update(s).digest('hex');
const roundTrip = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

/** Jobs measured by a worker of its own (its own copy of the model's weights), as BullMQ would hand them over. */
function fakeWorkers(): { jobs: JobRunner; ids: string[]; benches: () => number } {
  const worker = openModelVariants(MODEL, createRuntime('node', { flushDenormals: true }));
  const benches = new Map<string, Promise<VariantBench>>();
  const ids: string[] = [];
  return {
    ids, benches: () => benches.size,
    jobs: {
      async run(js, done) {
        const out = [];
        // Last first: results must be put back in the order asked.
        for (const j of [...js].reverse()) {
          const d = roundTrip(j.data) as ChunkJob & { work: VariantWork };
          assert.equal(d.work.kind, 'variant');
          assert.ok(!JSON.stringify(d).includes('rawData'), 'a job carries no weights');
          const key = `${d.context.key}:${hash(JSON.stringify(d.work.circuit ?? null))}`;
          if (!benches.has(key)) benches.set(key, openVariantBench(worker, parseSuite(d.context.suite.path, d.context.suite.text).suite!, d.context, d.work.circuit));
          const r = roundTrip({ point: await computeVariant(await benches.get(key)!, d.work), worker: 'test', ms: 0 });
          ids.push(j.id);
          done(j.rows, j.id, r);
          out.unshift(r);
        }
        return out;
      },
    },
  };
}

const source = { version: 'test', model: { path: MODEL, sha256: 'ab' }, suite: { path: SUITE, text: fs.readFileSync(SUITE, 'utf8') }, runtime: 'node' as const };

test('prune on workers: every point (unrounded) equals the local run; the same run asked again has the same job ids', async () => {
  const suite = parseSuite(SUITE, source.suite.text).suite!;
  const circuit = parseCircuit(CIRCUIT, fs.readFileSync(CIRCUIT, 'utf8')).circuit!;
  const v = openModelVariants(MODEL, createRuntime('node', { flushDenormals: true }));
  const o = { strategies: ['magnitude', 'outside-circuit', 'layer-waves'] as const, sparsities: [0.2, 0.6, 0.95], circuit, ablation: 'resample' as const };
  const { bench: _, ...local } = await runPrune(suite, v, MODEL, { ...o, strategies: [...o.strategies] });
  const w = fakeWorkers();
  const lines: string[] = [];
  const { bench: __, ...remote } = await runPrune(suite, v, MODEL, { ...o, strategies: [...o.strategies], workers: variantsOnWorkers(source, { jobs: w.jobs, hash }), report: (l) => lines.push(l) });
  assert.deepEqual(remote, local);
  assert.equal(w.ids.length, 9);
  assert.equal(new Set(w.ids).size, 9);
  assert.ok(w.ids.every((id) => /^cl-[0-9a-f]{32}-0-1$/.test(id)), w.ids[0]);
  assert.equal(w.benches(), 1, 'one baseline on the worker for the run');
  assert.equal(lines.filter((l) => /pruned models in/.test(l)).length, 9, 'a progress line per point');
  assert.ok(local.curves.some((c) => c.points.some((p) => p.capped)) && local.curves[0]!.points[2]!.accuracy < 1, 'the points differ from the baseline');
  // Asked again (a restarted coordinator): the same ids; without the circuit: other ids.
  const again = fakeWorkers();
  await runPrune(suite, v, MODEL, { ...o, strategies: [...o.strategies], workers: variantsOnWorkers(source, { jobs: again.jobs, hash }) });
  assert.deepEqual(again.ids, w.ids);
  const bare = fakeWorkers();
  await runPrune(suite, v, MODEL, { strategies: ['magnitude'], sparsities: [0.2], ablation: 'resample', workers: variantsOnWorkers(source, { jobs: bare.jobs, hash }) });
  assert.ok(!w.ids.includes(bare.ids[0]!), 'the circuit is part of the id (its faithfulness is measured)');
});

test('sensitivity on workers: every row (unrounded) equals the local run, drops included', async () => {
  const suite = parseSuite(SUITE, source.suite.text).suite!;
  const circuit = parseCircuit(CIRCUIT, fs.readFileSync(CIRCUIT, 'utf8')).circuit!;
  const v = openModelVariants(MODEL, createRuntime('node', { flushDenormals: true }));
  const c = { name: 'c', nodes: circuitComponents(circuit) };
  for (const quantize of [{ scheme: 'int4' as const }, { scheme: 'int8' as const, groupSize: 16 }]) {
    const o = { quantize, scopes: [{ kind: 'all' as const }, { kind: 'embed' as const }, { kind: 'circuit' as const, circuit: c }, { kind: 'outside' as const, circuit: c }], circuit };
    const { seconds: _, ...local } = await runSensitivity(suite, v, o);
    const w = fakeWorkers();
    const { seconds: __, ...remote } = await runSensitivity(suite, v, { ...o, workers: variantsOnWorkers(source, { jobs: w.jobs, hash }) });
    assert.deepEqual(remote, local, quantize.scheme);
    assert.equal(new Set(w.ids).size, 4);
    assert.ok(local.rows.every((r) => r.kl > 0 && r.faithfulnessDrop !== undefined), JSON.stringify(local.rows[0]));
  }
});
