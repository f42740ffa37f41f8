// bisect (core/analysis/bisect): damaged copies of real models are made here (1–3 chosen initializers broken, and
// every other float tensor jittered a little, as fine-tuning would, so that all tensors differ), a canary check
// passes on the original and fails on the copy, and bisect must name exactly the damaged tensors with their
// components, in fewer evaluations than copying the differing tensors one at a time. On the two demo models, on
// GPT-NeoX (trained for induction: its suite) and on Qwen2 (random weights: a suite of the model's own predictions
// written here).
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { bisect, type BisectResult } from '../../core/analysis/bisect/bisect';
import { minimalPassingSet } from '../../core/analysis/bisect/minimal-set';
import { createRuntime } from '../../core/nodejs/load';
import { openModelVariants } from '../../core/nodejs/model-variants';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { isUserError } from '../../core/errors';
import { damagedCopy, gaussian, type Damage } from '../damage';
import { EXAMPLES, FIXTURES } from '../helpers';

const ZOO = path.join(FIXTURES, 'zoo');
const runtime = createRuntime('node');
const ws = new NodeWorkspace(process.cwd(), runtime);
const dirs: string[] = [];
const tmp = () => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-bisect-')); dirs.push(d); return d; };
after(async () => { await ws.dispose(); for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }); });

async function run(good: string, bad: string, canary: string, check?: string): Promise<BisectResult> {
  const lines: string[] = [];
  const r = await bisect(ws, canary, openModelVariants(good, runtime), openModelVariants(bad, runtime), { check, report: (l) => lines.push(l) });
  assert.ok(lines.length >= r.groups.length, 'progress for each evaluation of round 1');
  assert.match(lines[0]!, /evaluations in [\d.]+ s \([\d.]+\/s\)/);
  console.log(`${path.basename(good)}: "${r.check}" ${r.good.value.toFixed(4)} → ${r.bad.value.toFixed(4)}; ${r.evaluations} evaluations for ${r.differing} differing tensors in ${r.groups.length} groups (${r.seconds.toFixed(1)} s); culprits ${r.culprits.map((c) => `${c.tensor} (${c.group}) ${(100 * c.restored).toFixed(1)} %`).join(', ')}`);
  return r;
}

/**
 * The result names exactly the damaged tensors, with their components and layers. `fewer`: the evaluations are
 * fewer than copying the differing tensors one at a time would take (on these 2-layer models that holds for one or
 * two culprits; with three, round 1 and the narrowing cost about as much, and only the algorithm's bound is checked).
 */
function assertFound(r: BisectResult, expected: { tensor: string; component: string; layer?: number }[], fewer = true): void {
  assert.equal(r.restores, true, JSON.stringify(r.groups));
  assert.deepEqual(r.culprits.map((c) => c.tensor).sort(), expected.map((e) => e.tensor).sort(), JSON.stringify(r.culprits));
  for (const e of expected) {
    const c = r.culprits.find((x) => x.tensor === e.tensor)!;
    assert.equal(c.component, e.component, c.tensor);
    assert.equal(c.layer, e.layer, c.tensor);
    assert.ok(c.consumers.length >= 1);
  }
  assert.equal(r.together!.passes, true);
  // Most restoring first; the set restores the whole gap or nearly (the jitter elsewhere stays).
  for (let i = 1; i < r.culprits.length; i++) assert.ok(r.culprits[i - 1]!.restored >= r.culprits[i]!.restored);
  assert.ok(r.together!.restored > 0.5, `together restores ${r.together!.restored}`);
  assert.equal(r.differing, r.initializers, 'the jitter makes every tensor differ');
  if (fewer) assert.ok(r.evaluations < r.differing + 2, `${r.evaluations} evaluations, one at a time would take ${r.differing} + 2`);
  // Baselines (BAD for each check tried, GOOD), round 1, all restored, narrowing groups and tensors, each culprit alone.
  const G = r.groups.length;
  const n = r.groups.filter((g) => r.culprits.some((c) => c.group === g.group)).reduce((s, g) => s + g.tensors.length, 0);
  assert.ok(r.evaluations <= 8 + G + 1 + (2 * G - 1) + (2 * n - 1) + r.culprits.length, `${r.evaluations} evaluations`);
}

describe('bisect on the demo models', () => {
  test('GPT-2: a layer-1 attention weight and a layer-0 MLP weight damaged (and a harmless change bigger than both)', async () => {
    const dir = tmp();
    // Noise of 5× its RMS on layer 1's MLP input projection is the biggest change, yet the check passes without it restored.
    const damage: Damage[] = [{ tensor: 'onnx::MatMul_274', kind: 'noise', scale: 1 }, { tensor: 'onnx::MatMul_272', kind: 'zero' }, { tensor: 'onnx::MatMul_283', kind: 'noise', scale: 5 }];
    const bad = damagedCopy(path.join(EXAMPLES, 'induction-gpt2.onnx'), damage, { jitter: 0.01, dir, withTokenizer: path.join(EXAMPLES, 'tokenizer.json') });
    const r = await run(path.join(EXAMPLES, 'induction-gpt2.onnx'), bad, path.join(EXAMPLES, 'induction-gpt2.canary.yaml'));
    assert.equal(r.check, 'continues repeated text', 'the first check failing on BAD');
    assert.equal(r.good.value, 1);
    assert.ok(r.bad.value < 0.95);
    assertFound(r, [{ tensor: 'onnx::MatMul_274', component: 'attention', layer: 1 }, { tensor: 'onnx::MatMul_272', component: 'mlp', layer: 0 }]);
    assert.ok(r.culprits.find((c) => c.tensor === 'onnx::MatMul_274')!.consumers.includes('/blocks.1/attn/qkv/MatMul'));
    // Round 1 saw both groups matter and the others not.
    const g = (name: string) => r.groups.find((x) => x.group === name)!;
    assert.ok(g('layer 1 attention').restored > 0.1 && g('layer 0 mlp').restored > 0.1);
    assert.ok(Math.abs(g('embedding').restored) < 0.05);

    // A top1 check on the same pair: its value is the expected token's logit margin, positive on GOOD only.
    const top1 = await run(path.join(EXAMPLES, 'induction-gpt2.onnx'), bad, path.join(EXAMPLES, 'induction-gpt2.canary.yaml'), 'one prompt\'s next token');
    assert.equal(top1.expected, 'top1 = " apple"');
    assert.ok(top1.good.value > 0 && top1.bad.value < 0, `${top1.good.value} ${top1.bad.value}`);
    assert.equal(top1.restores, true);
    assert.ok(top1.culprits.length >= 1 && top1.culprits.every((c) => damage.some((d) => d.tensor === c.tensor)), JSON.stringify(top1.culprits));
  });

  test('Llama: attention, norm and MLP weights of layer 1 damaged', async () => {
    const dir = tmp();
    const damage: Damage[] = [
      { tensor: 'onnx::MatMul_561', kind: 'zero' }, // v_proj
      { tensor: 'blocks.1.ln1.weight', kind: 'noise', scale: 3 },
      { tensor: 'onnx::MatMul_584', kind: 'noise', scale: 30 }, // down_proj
    ];
    const bad = damagedCopy(path.join(EXAMPLES, 'induction-llama.onnx'), damage, { jitter: 0.01, dir, withTokenizer: path.join(EXAMPLES, 'tokenizer.json') });
    const r = await run(path.join(EXAMPLES, 'induction-llama.onnx'), bad, path.join(EXAMPLES, 'induction-llama.canary.yaml'), 'continues repeated text');
    assertFound(r, [
      { tensor: 'onnx::MatMul_561', component: 'attention', layer: 1 },
      { tensor: 'blocks.1.ln1.weight', component: 'norm', layer: 1 },
      { tensor: 'onnx::MatMul_584', component: 'mlp', layer: 1 },
    ], false);
  });

  test('bad input: other architecture, identical weights, a check that does not regress', async () => {
    const gpt2 = path.join(EXAMPLES, 'induction-gpt2.onnx');
    const canary = path.join(EXAMPLES, 'induction-gpt2.canary.yaml');
    const reject = (p: Promise<unknown>, re: RegExp) => assert.rejects(p, (e) => isUserError(e) && re.test(e.message));
    await reject(run(gpt2, path.join(EXAMPLES, 'induction-llama.onnx'), canary), /not the same architecture with different weights: "pos_embed" is in .* only/);
    await reject(run(gpt2, gpt2, canary), /hold the same weights/);
    const bad = damagedCopy(gpt2, [], { jitter: 0.001, dir: tmp(), withTokenizer: path.join(EXAMPLES, 'tokenizer.json') });
    await reject(run(gpt2, bad, canary, 'continues repeated text'), /check "continues repeated text" passes on .*: there is no regression to bisect/);
    await reject(run(gpt2, bad, canary, 'no such check'), /has no check named "no such check"/);
  });
});

/** A canary in `dir` with one check on `suite`. */
function canaryFile(dir: string, suite: string, check: string): string {
  const f = path.join(dir, 'zoo.canary.yaml');
  fs.writeFileSync(f, `name: zoo bisect\nmodel: good.onnx\nsuite: ${JSON.stringify(suite)}\nchecks:\n${check}`);
  return f;
}

describe('bisect on zoo families', () => {
  test('GPT-NeoX (parallel blocks, fused QKV; trained for induction; GOOD keeps its weights in external data): a layer-1 QKV and a layer-0 MLP weight', async () => {
    const dir = tmp();
    const good = path.join(ZOO, 'gpt_neox-extdata.onnx');
    const damage: Damage[] = [{ tensor: 'onnx::MatMul_594', kind: 'noise', scale: 1 }, { tensor: 'onnx::MatMul_593', kind: 'noise', scale: 10 }];
    const bad = damagedCopy(path.join(ZOO, 'gpt_neox.onnx'), damage, { jitter: 0.01, dir });
    const canary = canaryFile(dir, path.join(ZOO, 'gpt_neox', 'induction.suite.yaml'), '  - name: continues repeated ids\n    tags: [task]\n    accuracy: ">= 0.9"\n');
    const r = await run(good, bad, canary);
    assertFound(r, [{ tensor: 'onnx::MatMul_594', component: 'attention', layer: 1 }, { tensor: 'onnx::MatMul_593', component: 'mlp', layer: 0 }]);
  });

  test('Qwen2 (GQA, q/k/v biases; random weights): the model\'s own predictions kept', async () => {
    const dir = tmp();
    const good = path.join(ZOO, 'qwen2.onnx');
    // The suite: random id prompts whose answers are the model's own top-1 (its foil the runner-up), kept where the
    // model is surest; the check asks that the answer keeps most of its probability.
    const engine = await openModelVariants(good, runtime).engineWith([]);
    const next = gaussian(7);
    const prompts: { ids: number[]; answer: number; foil: number; margin: number; prob: number }[] = [];
    try {
      const vocab = engine.info.vocab;
      for (let i = 0; i < 40; i++) {
        const ids = Array.from({ length: 10 }, () => Math.floor(Math.abs(next() * 1e6)) % vocab);
        const logits = (await engine.run({ ids: [ids], lastOnly: true })).logits.data;
        const order = [...logits.keys()].sort((a, b) => logits[b]! - logits[a]!);
        const z = logits.reduce((s, x) => s + Math.exp(x - logits[order[0]!]!), 0);
        prompts.push({ ids, answer: order[0]!, foil: order[1]!, margin: logits[order[0]!]! - logits[order[1]!]!, prob: 1 / z });
      }
    } finally {
      await engine.release();
    }
    const kept = prompts.sort((a, b) => b.margin - a.margin).slice(0, 12);
    const meanProb = kept.reduce((s, p) => s + p.prob, 0) / kept.length;
    const suite = path.join(dir, 'own.suite.yaml');
    fs.writeFileSync(suite, `name: qwen2-own-predictions\nmetric: prob\nablation: zero\nprompts:\n${kept.map((p) => `  - {ids: [${p.ids.join(', ')}], answer: ${p.answer}, foil: ${p.foil}}`).join('\n')}\n`);
    const canary = canaryFile(dir, suite, `  - name: keeps its predictions\n    prob: ">= ${(0.8 * meanProb).toFixed(6)}"\n`);
    const damage: Damage[] = [{ tensor: 'onnx::MatMul_698', kind: 'noise', scale: 3 }, { tensor: 'onnx::MatMul_696', kind: 'noise', scale: 3 }];
    const bad = damagedCopy(good, damage, { jitter: 0.005, dir });
    const r = await run(good, bad, canary);
    assertFound(r, [{ tensor: 'onnx::MatMul_698', component: 'attention', layer: 1 }, { tensor: 'onnx::MatMul_696', component: 'mlp', layer: 0 }]);
  });
});

describe('minimalPassingSet', () => {
  test('finds the needed items in fewer checks than one at a time', async () => {
    const items = Array.from({ length: 64 }, (_, i) => i);
    for (const needed of [[5], [3, 40], [0, 17, 63]]) {
      let checks = 0;
      const found = await minimalPassingSet(items, async (xs) => { checks++; return needed.every((n) => xs.includes(n)); });
      assert.deepEqual(found.sort((a, b) => a - b), needed);
      assert.ok(checks < 2 * needed.length * Math.log2(64 / needed.length) + 2 * needed.length + 1, `${checks} checks for ${needed}`);
    }
  });

  test('either of two alternatives: the earlier one', async () => {
    const found = await minimalPassingSet(['a', 'b', 'c', 'd'], async (xs) => xs.includes('b') || xs.includes('d'));
    assert.deepEqual(found, ['b']);
  });
});
