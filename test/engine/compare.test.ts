// The compare use case (core/analysis/compare/compare.ts) on the GPT-2 demo model and its fine-tuned checkpoint
// (scripts/make_checkpoints.py), each number checked independently: node scores against `attribute` on each model
// alone, faithfulness against `verify` on each, the re-discovered circuit against `discover` on B, and the suite's
// metrics of both checkpoints against a PyTorch forward of the weights read from each ONNX file
// (examples/references/checkpoints.json). Then on two zoo families, against a perturbed copy of each.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { attribute } from '../../core/analysis/attribute/attribute';
import { checkSameArchitecture, compareModels, jaccard, rediscoveryOptions, type Comparison } from '../../core/analysis/compare/compare';
import { comparisonRecord } from '../../core/analysis/compare/record';
import { discoverCircuit } from '../../core/analysis/discover/discover';
import { evaluateSets } from '../../core/analysis/evaluate';
import { openSuite, prepareSuite, type OpenedSuite } from '../../core/analysis/open-suite';
import { verifySavedCircuit } from '../../core/analysis/verify/verify';
import type { Engine } from '../../core/engine/engine';
import { parseCircuit, type Circuit } from '../../core/formats/circuit';
import { parseSuite, type Suite } from '../../core/formats/suite';
import { loadEngine } from '../../core/nodejs/load';
import type { AblationKind } from '../../core/vocabulary';
import { DataType, decodeModel, dimsOf, encodeModel, floatData } from '../../core/onnx/model';
import { EXAMPLES, FIXTURES } from '../helpers';

const A_PATH = path.join(EXAMPLES, 'induction-gpt2.onnx');
const B_PATH = path.join(EXAMPLES, 'checkpoints', 'induction-gpt2-finetuned.onnx');

interface RefSide { task: { logit_diff: number; accuracy: number; prob: number; prompts: number }; control: { accuracy: number; prompts: number }; prompts: { text: string; logitDiff: number; prob: number; correct: number }[] }
const REF = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'references', 'checkpoints.json'), 'utf8')) as { models: Record<string, RefSide> };

function readSuite(file: string): Suite {
  const { suite, diagnostics } = parseSuite(file, fs.readFileSync(file, 'utf8'));
  assert.ok(suite, JSON.stringify(diagnostics));
  return suite;
}

function open(suite: Suite, engine: Engine, ablation?: AblationKind): OpenedSuite {
  const { opened, diagnostics } = openSuite(suite, engine, ablation);
  assert.ok(opened, JSON.stringify(diagnostics));
  return opened;
}

const close = (x: number, y: number, tol: number, what: string) => assert.ok(Math.abs(x - y) <= tol, `${what}: ${x} vs ${y} (tolerance ${tol})`);

describe('compare: the GPT-2 demo model vs its fine-tuned checkpoint', () => {
  let A: Engine;
  let B: Engine;
  let suite: Suite;
  let circuit: Circuit;
  let cmp: Comparison;
  before(async () => {
    A = await loadEngine(A_PATH);
    B = await loadEngine(B_PATH);
    suite = readSuite(path.join(EXAMPLES, 'induction.suite.yaml'));
    const file = path.join(EXAMPLES, 'induction-gpt2.circuit.json');
    circuit = parseCircuit(file, fs.readFileSync(file, 'utf8')).circuit!;
    cmp = await compareModels(open(suite, A), open(suite, B), { circuit, rediscoverOnA: true });
  });
  after(async () => { await A.release(); await B.release(); });

  test('the suite metrics of both checkpoints equal a PyTorch forward of their ONNX weights; the fine-tune lowered them', async (t) => {
    for (const [side, rel] of [[cmp.a, 'induction-gpt2.onnx'], [cmp.b, 'checkpoints/induction-gpt2-finetuned.onnx']] as const) {
      const ref = REF.models[rel]!;
      assert.equal(side.task.prompts, ref.task.prompts);
      close(side.task.logitDiff!, ref.task.logit_diff, 1e-4, `${rel} task logit_diff`);
      close(side.task.accuracy, ref.task.accuracy, 1e-9, `${rel} task accuracy`);
      close(side.task.prob, ref.task.prob, 1e-4, `${rel} task prob`);
      assert.equal(side.control!.prompts, ref.control.prompts);
      close(side.control!.accuracy, ref.control.accuracy, 1e-9, `${rel} control accuracy`);
    }
    // Per prompt too, on B (the model no reference was trained into).
    const o = open(suite, B);
    const { task } = await prepareSuite(o);
    const [clean] = await evaluateSets(task, [[]]);
    const byText = new Map(REF.models['checkpoints/induction-gpt2-finetuned.onnx']!.prompts.map((p) => [p.text, p]));
    let worst = 0;
    task.prompts.forEach((p, i) => {
      const r = byText.get(p.text)!;
      worst = Math.max(worst, Math.abs(clean!.scores[i]!.logitDiff - r.logitDiff));
      close(clean!.scores[i]!.logitDiff, r.logitDiff, 1e-4, p.text);
      assert.equal(clean!.scores[i]!.correct ? 1 : 0, r.correct, p.text);
    });
    t.diagnostic(`B per prompt: max |logit_diff − PyTorch| ${worst.toExponential(2)}; task accuracy ${cmp.a.task.accuracy} → ${cmp.b.task.accuracy}, logit_diff ${cmp.a.task.logitDiff!.toFixed(3)} → ${cmp.b.task.logitDiff!.toFixed(3)}`);
    // The drop is visible: fewer prompts right, a smaller logit difference, but induction is not gone.
    assert.ok(cmp.b.task.accuracy < cmp.a.task.accuracy - 0.05, `accuracy ${cmp.a.task.accuracy} → ${cmp.b.task.accuracy}`);
    assert.ok(cmp.b.task.accuracy > 0.1);
    assert.ok(cmp.b.task.logitDiff! < cmp.a.task.logitDiff! - 1);
  });

  test('node scores are attribute\'s on each model alone; delta = scoreB − scoreA', async () => {
    for (const [engine, key] of [[A, 'scoreA'], [B, 'scoreB']] as const) {
      const o = open(suite, engine);
      const { task } = await prepareSuite(o);
      const alone = await attribute(task, o.all, suite.metric, { level: 'node', method: 'patching' });
      assert.deepEqual(cmp.nodes.map((n) => n.id), alone.nodes.map((n) => n.id));
      alone.nodes.forEach((n, i) => close(cmp.nodes[i]![key], n.score, 1e-9, `${n.id} ${key}`));
    }
    for (const n of cmp.nodes) assert.equal(n.delta, n.scoreB - n.scoreA);
    assert.ok(cmp.nodes.some((n) => Math.abs(n.delta) > 0.5), 'the fine-tune moved some node by more than 0.5 logits');
  });

  test('faithfulness on each equals verify on each; the circuit loses faithfulness', async () => {
    const k = cmp.circuit!;
    for (const [engine, f, by] of [[A, k.faithfulnessA, k.a], [B, k.faithfulnessB, k.b]] as const) {
      const o = open(suite, engine, circuit.ablation);
      const ctxs = await prepareSuite(o, { control: true });
      const v = (await verifySavedCircuit(circuit, ctxs, o.all, suite.metric)).verification;
      close(f, v.faithfulness, 1e-5, 'faithfulness');
      for (const m of ['logit_diff', 'accuracy', 'kl', 'prob'] as const) {
        close(by.faithfulness[m], v.faithfulnessByMetric[m], 1e-5, `faithfulness ${m}`);
        close(by.necessity[m], v.necessityByMetric[m], 1e-5, `necessity ${m}`);
      }
    }
    assert.equal(k.drop, k.faithfulnessA - k.faithfulnessB);
    assert.ok(k.faithfulnessA > 0.8, `faithfulness on A ${k.faithfulnessA}`);
    assert.ok(k.drop > 0.05, `faithfulness ${k.faithfulnessA} → ${k.faithfulnessB}`);
  });

  test('the circuit re-discovered on B is discover\'s, with the circuit\'s options (defaults: the file records none)', async () => {
    const k = cmp.circuit!;
    const { options, from } = rediscoveryOptions(circuit);
    assert.equal(from, 'defaults');
    assert.deepEqual(options, { level: 'node', method: 'greedy', scoring: 'patching', steps: 1, target: 0.8, threshold: 0.02 });
    const o = open(suite, B, circuit.ablation);
    const ctxs = await prepareSuite(o, { control: true });
    const d = await discoverCircuit(ctxs.task, ctxs.control, o.all, suite.metric, options);
    assert.deepEqual(k.rediscoveredB.members, d.nodes);
    assert.ok(d.verification.faithfulness >= 0.8);
    assert.equal(k.jaccard, jaccard(circuit.nodes, d.nodes));
    assert.deepEqual(k.entered, d.nodes.filter((n) => !circuit.nodes.includes(n)));
    assert.deepEqual(k.left, circuit.nodes.filter((n) => !d.nodes.includes(n)));
    assert.ok(k.rediscoveredA && k.jaccardRediscovered !== undefined);
    // The record keeps the DESIGN §7 keys.
    const r = comparisonRecord(cmp) as Record<string, Record<string, unknown>>;
    assert.deepEqual(Object.keys(r.a!), ['task', 'control']);
    for (const key of ['faithfulnessA', 'faithfulnessB', 'jaccard', 'entered', 'left']) assert.ok(key in r.circuit!, key);
  });

  test('a recorded discovery is re-run with its own options', () => {
    const c: Circuit = { ...circuit, granularity: 'node', metrics: { method: 'acdc', threshold: 0.05, scores: 'gradient', steps: 4 } };
    assert.deepEqual(rediscoveryOptions(c), { options: { level: 'node', method: 'acdc', scoring: 'gradient', steps: 4, target: 0.8, threshold: 0.05 }, from: 'circuit' });
  });

  test('two architectures are refused with what differs', async () => {
    const llama = await loadEngine(path.join(EXAMPLES, 'induction-llama.onnx'));
    try {
      assert.throws(() => checkSameArchitecture(A, llama, ['gpt2.onnx', 'llama.onnx']), (e: Error) =>
        e.name === 'UserError' && /gpt2\.onnx and llama\.onnx are not two checkpoints of one architecture \(architecture gpt2 vs llama; hooks only in gpt2\.onnx: hook_pos_embed\)/.test(e.message));
      await assert.rejects(compareModels(open(suite, A), open(suite, llama)), /not two checkpoints of one architecture/);
    } finally {
      await llama.release();
    }
  });
});

/** A copy of a zoo model with one weight scaled: the last MLP's output projection (the rank-2 initializer before the unembedding). */
function perturbedCopy(model: string, dir: string, scale: number): { file: string; tensor: string } {
  const m = decodeModel(new Uint8Array(fs.readFileSync(model)), model);
  const weights = m.graph!.initializer.filter((t) => t.dataType === DataType.FLOAT && dimsOf(t).length === 2);
  const t = weights[weights.length - 2]!;
  const x = floatData(t)!.map((v) => v * scale);
  t.rawData = new Uint8Array(x.buffer);
  t.floatData = [];
  const file = path.join(dir, 'perturbed.onnx');
  fs.writeFileSync(file, encodeModel(m));
  // The tokenizer (where the model has one) beside the copy.
  const tok = path.join(path.dirname(model), 'tokenizer.json');
  if (fs.existsSync(tok)) fs.copyFileSync(tok, path.join(dir, 'tokenizer.json'));
  return { file, tensor: t.name };
}

for (const family of ['gpt2', 'llama', 'gpt_neox']) {
  test(`compare on the zoo's ${family}: itself gives zero deltas, a perturbed copy moves the scores`, async (t) => {
    const suite = readSuite(path.join(FIXTURES, 'zoo', family, 'induction.suite.yaml'));
    const modelPath = path.resolve(path.dirname(suite.file), suite.model!);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `cl-compare-${family}-`));
    const { file, tensor } = perturbedCopy(modelPath, dir, 0.5);
    const A = await loadEngine(modelPath);
    const B = await loadEngine(file);
    try {
      assert.ok(!/embed|wte/.test(tensor), tensor);
      const same = await compareModels(open(suite, A), open(suite, A));
      assert.ok(same.nodes.every((n) => n.delta === 0));
      assert.deepEqual(same.a, same.b);
      const cmp = await compareModels(open(suite, A), open(suite, B));
      const o = open(suite, B);
      const alone = await attribute((await prepareSuite(o)).task, o.all, suite.metric, { level: 'node', method: 'patching' });
      alone.nodes.forEach((n, i) => close(cmp.nodes[i]!.scoreB, n.score, 1e-9, n.id));
      assert.ok(cmp.nodes.some((n) => Math.abs(n.delta) > 1e-3), `scaling ${tensor} moved no node score`);
      assert.notEqual(cmp.a.task.logitDiff, cmp.b.task.logitDiff);
      const most = [...cmp.nodes].sort((x, y) => Math.abs(y.delta) - Math.abs(x.delta))[0]!;
      t.diagnostic(`${family}: ${tensor} × 0.5: task logit_diff ${cmp.a.task.logitDiff!.toFixed(3)} → ${cmp.b.task.logitDiff!.toFixed(3)}, largest |delta| ${most.id} ${most.scoreA.toFixed(3)} → ${most.scoreB.toFixed(3)}`);
    } finally {
      await A.release();
      await B.release();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}
