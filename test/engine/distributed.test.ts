// The distributed path the CLI and the extension share (core/analysis/distributed/run.ts onWorkers, computeChunk),
// without Redis: contexts with a remote whose jobs are computed by a "worker" context prepared apart from the
// coordinator's (its own clean run, as `circuitlens worker` prepares it), every job sent through JSON as BullMQ
// stores it. The graph panel's attribution (level graph, method auto: node patching and edge path patching),
// discovery (greedy, ACDC) and verification with control prompts must equal the local run exactly; so must the
// sweep, whose own context (the prompts of a variable) workers prepare without its clean run.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { attribute } from '../../core/analysis/attribute/attribute';
import { discoverCircuit } from '../../core/analysis/discover/discover';
import { computeChunk, onWorkers, prepareForChunks, workersFor, type ChunkJob, type ContextSpec, type JobRunner, type Prepared } from '../../core/analysis/distributed/run';
import { openSuite, prepareSuite } from '../../core/analysis/open-suite';
import { runSweep } from '../../core/analysis/sweep/sweep';
import { verifyCircuit } from '../../core/analysis/verify/nodes';
import type { AblationKind } from '../../core/vocabulary';
import { parseSuite } from '../../core/formats/suite';
import { loadEngine } from '../../core/nodejs/load';
import { EXAMPLES } from '../helpers';

/**
 * A "worker" as `circuitlens worker` is: each job through JSON as BullMQ stores it (`seen` is told of it), computed
 * on a context prepared apart from the coordinator's, once per context key (`prepare`), its rows back through JSON.
 */
function chunkWorker(prepare: (c: ContextSpec) => Promise<Prepared>, seen: (data: ChunkJob, id: string, rows: number) => void): { jobs: JobRunner; contexts: () => number } {
  const contexts = new Map<string, Promise<Prepared>>();
  return {
    contexts: () => contexts.size,
    jobs: {
      async run(js, done) {
        const out = [];
        for (const j of js) {
          const data = JSON.parse(JSON.stringify(j.data)) as ChunkJob;
          seen(data, j.id, j.rows);
          const c = data.context;
          if (!contexts.has(c.key)) contexts.set(c.key, prepare(c));
          out.push(JSON.parse(JSON.stringify({ rows: await computeChunk(await contexts.get(c.key)!, data), worker: 'test', ms: 0 })));
          done(j.rows);
        }
        return out;
      },
    },
  };
}

test('onWorkers: attribution (graph, auto), discovery and verification through chunk jobs equal the local run exactly', async () => {
  const file = path.join(EXAMPLES, 'induction.suite.yaml');
  const text = fs.readFileSync(file, 'utf8');
  const suite = parseSuite(file, text).suite!;
  const engine = await loadEngine(path.join(EXAMPLES, 'induction-gpt2.onnx'));
  try {
    const opened = openSuite(suite, engine).opened!;
    const local = await prepareSuite(opened, { control: true });
    const remote = await prepareSuite(opened, { control: true });
    assert.ok(local.control, 'the demo suite has control prompts');

    // The worker's side, prepared on its own as `circuitlens worker` does, by the jobs' context.
    const kinds = new Map<string, number>();
    let chunks = 0;
    const worker = chunkWorker((c) => prepareForChunks(opened, c.prompts), (data, id) => {
      assert.equal(data.format, 2);
      assert.match(id, /^cl-[0-9a-f]{32}-\d+-\d+$/);
      kinds.set(data.work.kind, (kinds.get(data.work.kind) ?? 0) + 1);
      chunks++;
    });
    const jobs = worker.jobs;
    const hash = (s: string) => crypto.createHash('sha256').update(s).digest('hex');
    onWorkers(remote, { version: 'test', model: { path: '/models/m.onnx', sha256: 'ab' }, suite: { path: file, text }, runtime: 'node' }, { jobs, hash, targetRows: 200 });

    const o = { level: 'graph' as const, method: 'auto' as const };
    const [want, got] = [await attribute(local.task, opened.all, suite.metric, o), await attribute(remote.task, opened.all, suite.metric, o)];
    assert.deepEqual(got, want);
    assert.ok(got.nodes.length === 10 && got.edges.length === 110, `${got.nodes.length} nodes, ${got.edges.length} edges`);
    assert.deepEqual([...kinds.keys()].sort(), ['edge-patching', 'sets']);

    for (const method of ['greedy', 'acdc'] as const) {
      const d = { level: 'node' as const, method, scoring: 'patching' as const, steps: 1, target: 0.8, threshold: 0.02 };
      assert.deepEqual(await discoverCircuit(remote.task, remote.control, opened.all, suite.metric, d), await discoverCircuit(local.task, local.control, opened.all, suite.metric, d), method);
    }
    const circuit = ['a0.h1', 'm0', 'a1.h0', 'a1.h2', 'm1'] as const;
    assert.deepEqual(await verifyCircuit(remote.task, [...circuit], suite.metric, remote.control), await verifyCircuit(local.task, [...circuit], suite.metric, local.control));
    assert.equal(worker.contexts(), 2, 'the task and the control prompts, each prepared once');
    const eap = await attribute(remote.task, opened.all, suite.metric, { level: 'edge', method: 'gradient', steps: 2 });
    assert.deepEqual(eap, await attribute(local.task, opened.all, suite.metric, { level: 'edge', method: 'gradient', steps: 2 }));
    assert.ok(kinds.get('edge-gradient')! > 0 && chunks > 20, `${chunks} chunks`);
    // Node gradients, EAP and EAP-IG (a clean forward per prompt-length group on the worker), under every ablation.
    for (const steps of [1, 3]) {
      const want = await attribute(local.task, opened.all, suite.metric, { level: 'node', method: 'gradient', steps });
      assert.deepEqual(await attribute(remote.task, opened.all, suite.metric, { level: 'node', method: 'gradient', steps }), want, `node gradients, ${steps} steps`);
    }
    assert.ok(kinds.get('node-gradient')! > 0, 'node gradients went to the worker');

    // A context made from a distributed one for other prompts is refused, not computed on the suite's prompts.
    const other = { ...remote.task, prompts: remote.task.prompts.slice(1) };
    await assert.rejects(attribute(other, opened.all, suite.metric, { level: 'node', method: 'patching' }), /prompts, ablation or batch size changed/);
  } finally {
    await engine.release();
  }
});

test('runSweep on workers (single-set chunks): equal to the local sweep exactly, nothing ablated and ablated (zero, mean, resample)', async () => {
  const file = path.join(EXAMPLES, 'induction-sweep.suite.yaml');
  // The demo sweep with a corrupted counterpart per template (the first occurrence scrambled), for resample.
  const text = fs.readFileSync(file, 'utf8')
    .replace(/sweep:\n  n: \[.*\]/, 'sweep:\n  n: [0, 8, 12, 16, 32]')
    .replace(`answer: " {E}"`, `answer: " {E}"\n    corrupted: "{repeat(n, 'the ')}{B} {A} {C} {D} {E} {A} {B} {C} {D}"`)
    .replace(`answer: " {F}"`, `answer: " {F}"\n    corrupted: "{repeat(n, 'the ')}{A} {B} {D} {C} {E} {F} {C} {D} {E}"`);
  const parsed = parseSuite(file, text);
  assert.ok(parsed.suite, JSON.stringify(parsed.diagnostics));
  const suite = parsed.suite!;
  for (const model of ['induction-gpt2.onnx', 'induction-llama.onnx']) {
    const engine = await loadEngine(path.join(EXAMPLES, model));
    try {
      for (const [ablation, ablate] of [['zero', []], ['mean', ['a1.h0', 'm0']], ['zero', ['a0.h1']], ['resample', ['a1.h2']]] as [AblationKind, string[]][]) {
        const opened = openSuite(suite, engine, ablation).opened!;
        const kinds = new Set<string>();
        let rows = 0;
        const { jobs } = chunkWorker((c) => prepareForChunks(openSuite(suite, engine, c.ablation).opened!, c.prompts), (data, _id, n) => {
          assert.deepEqual(data.context.prompts, { sweep: 'n' });
          kinds.add(data.work.kind);
          rows += n;
        });
        const hash = (s: string) => crypto.createHash('sha256').update(s).digest('hex');
        const remote = workersFor({ version: 'test', model: { path: `/models/${model}`, sha256: 'ab' }, suite: { path: file, text }, runtime: 'node' }, { jobs, hash, targetRows: 50 });
        const o = { ablate: ablate as never[], resamples: 50 };
        const want = await runSweep(opened, o);
        const got = await runSweep(opened, { ...o, remote });
        assert.deepEqual(got, want, `${model} ${ablation} ${ablate.join(',')}`);
        assert.deepEqual([...kinds], ['single-set']);
        assert.equal(rows, opened.task.length, 'every prompt once');
        if (!ablate.length) assert.ok(want.points.some((p) => p.accuracy > 0.5) && want.points.some((p) => p.accuracy < 1), `${model}: a sweep that varies: ${JSON.stringify(want.points.map((p) => [p.value, p.accuracy]))}`);
      }
    } finally {
      await engine.release();
    }
  }
});
