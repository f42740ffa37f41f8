// Suite metrics and ablations through the whole pipeline (suite file → prompts → batched ablation → metrics)
// against metrics computed here, in float64, from the PyTorch reference logits.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { evaluateSets, prepare, evaluateCircuit } from '../../core/analysis/evaluate';
import { resolvePrompts } from '../../core/analysis/prompts';
import type { Engine } from '../../core/engine/engine';
import { parseSuite } from '../../core/formats/suite';
import type { NodeId } from '../../core/ids';
import { loadEngine } from '../../core/nodejs/load';
import { decodeRef, EXAMPLES, loadReference } from '../helpers';

function lastRow(logits: Float32Array, b: number, T: number, V: number): Float64Array {
  return Float64Array.from(logits.subarray((b * T + T - 1) * V, (b * T + T) * V));
}
function logSoftmax(x: Float64Array): Float64Array {
  const m = Math.max(...x);
  const lz = m + Math.log(x.reduce((s, v) => s + Math.exp(v - m), 0));
  return x.map((v) => v - lz);
}

for (const name of ['induction-gpt2', 'induction-llama']) {
  describe(`${name}: suite metrics equal metrics of the PyTorch logits`, () => {
    const ref = loadReference(name);
    const clean = decodeRef(ref.clean['logits']!);
    const [B, T, V] = clean.dims as [number, number, number];
    const cleanLast = Array.from({ length: B }, (_, b) => lastRow(clean.data, b, T, V));
    // Answer: PyTorch's own top-1; foil: the first token of the prompt.
    const answers = cleanLast.map((r) => r.indexOf(Math.max(...r)));
    const yaml = ['name: ref', 'metric: logit_diff', 'prompts:', ...ref.prompts.map((p, b) => `  - {ids: [${p.ids.join(', ')}], answer: ${answers[b]}, foil: ${p.ids[0]}}`)].join('\n');
    let engine: Engine;
    before(async () => { engine = await loadEngine(path.join(EXAMPLES, `${name}.onnx`)); });
    after(async () => { await engine.release(); });

    for (const kind of ['zero', 'mean'] as const) {
      test(`${kind} ablation: logit_diff, prob, accuracy, kl per prompt and mean`, async () => {
        const { suite } = parseSuite('ref.suite.yaml', yaml);
        const { prompts, diagnostics } = resolvePrompts(suite!, engine);
        assert.deepEqual(diagnostics, []);
        const ctx = await prepare(engine, prompts, kind);
        const abl = ref.ablations.filter((a) => a.kind === kind);
        const results = await evaluateSets(ctx, abl.map((a) => a.nodes as NodeId[]));
        abl.forEach((a, i) => {
          const logits = decodeRef(a.logits);
          let ld = 0, pr = 0, acc = 0, kl = 0;
          for (let b = 0; b < B; b++) {
            const row = lastRow(logits.data, b, T, V);
            const lp = logSoftmax(row);
            const lc = logSoftmax(cleanLast[b]!);
            const want = {
              logitDiff: row[answers[b]!]! - row[ref.prompts[b]!.ids[0]!]!,
              prob: Math.exp(lp[answers[b]!]!),
              correct: row.indexOf(Math.max(...row)) === answers[b],
              kl: lc.reduce((s, v, j) => s + Math.exp(v) * (v - lp[j]!), 0),
            };
            const got = results[i]!.scores[b]!;
            assert.ok(Math.abs(got.logitDiff - want.logitDiff) < 2e-4, `${a.nodes} row ${b} logit_diff ${got.logitDiff} vs ${want.logitDiff}`);
            assert.ok(Math.abs(got.prob - want.prob) < 1e-5, `${a.nodes} prob`);
            assert.equal(got.correct, want.correct, `${a.nodes} accuracy`);
            assert.ok(Math.abs(got.kl - want.kl) < 1e-5 + 1e-4 * want.kl, `${a.nodes} kl ${got.kl} vs ${want.kl}`);
            ld += want.logitDiff / B; pr += want.prob / B; acc += (want.correct ? 1 : 0) / B; kl += want.kl / B;
          }
          const m = results[i]!.metrics;
          assert.ok(Math.abs(m.logit_diff - ld) < 2e-4 && Math.abs(m.prob - pr) < 1e-5 && m.accuracy === acc && Math.abs(m.kl - kl) < 1e-4, `${a.nodes} means`);
        });
        // The clean run scores what PyTorch scores.
        const [c] = await evaluateSets(ctx, [[]]);
        assert.equal(c!.metrics.accuracy, 1);
        assert.ok(c!.metrics.kl < 1e-9);
      });
    }

    test('faithfulness of the whole model is 1 and of nothing is 0, under every metric', async () => {
      const { suite } = parseSuite('ref.suite.yaml', yaml);
      const ctx = await prepare(engine, resolvePrompts(suite!, engine).prompts, 'mean');
      const all = await evaluateCircuit(ctx, ['a0.h0', 'a0.h1', 'a0.h2', 'a0.h3', 'a1.h0', 'a1.h1', 'a1.h2', 'a1.h3', 'm0', 'm1']);
      const none = await evaluateCircuit(ctx, []);
      for (const m of ['logit_diff', 'prob', 'kl'] as const) {
        assert.ok(Math.abs(all.faithfulness[m] - 1) < 1e-9, `${m} full`);
        assert.ok(Math.abs(none.faithfulness[m]) < 1e-9, `${m} empty`);
        assert.ok(Math.abs(all.necessity[m] - 1) < 1e-9, `${m} necessity of everything`);
      }
    });
  });
}

describe('suite problems only the model can see', () => {
  let engine: Engine;
  before(async () => { engine = await loadEngine(path.join(EXAMPLES, 'induction-gpt2.onnx')); });
  after(async () => { await engine.release(); });

  test('multi-token answers say how they tokenize; long prompts and bad ids are caught at their lines', () => {
    const long = Array.from({ length: 65 }, () => 'Mary').join(' ');
    const { suite } = parseSuite('s.suite.yaml', [
      'name: x',
      'prompts:',
      '  - text: "Mary went home"',
      '    answer: " Mary Ann"',
      '    foil: " John"',
      `  - text: "${long}"`,
      '    answer: " Mary"',
      '    foil: " John"',
      '  - ids: [1, 2, 900]',
      '    answer: 3',
      '    foil: 4',
      '  - text: "Mary went home"',
      '    answer: " home"',
      '    foil: " John"',
      '    corrupted: "John went"',
    ].join('\n'));
    const { prompts, diagnostics } = resolvePrompts(suite!, engine);
    assert.deepEqual(diagnostics.map((d) => `${d.line}:${d.col}: ${d.message}`), [
      '4:13: answer " Mary Ann" is 2 tokens ("Mary" + "<unk>"); it must be a single token',
      '6:11: prompt is 65 tokens, longer than the model\'s context of 64 tokens; shorten it',
      '9:10: prompt has token id 900, outside the vocabulary 0..216',
      '15:16: corrupted prompt is 2 tokens but the prompt is 3; resample ablation needs equal lengths',
    ]);
    assert.equal(prompts.length, 0);
  });
});
