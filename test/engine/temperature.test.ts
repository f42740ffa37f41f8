// Softmax temperature per head (core/onnx/temperature.ts), on every model of the zoo and the demo models:
//   neutral   τ = 1 on the temperature session is bit-identical to the plain run (every hook and the logits)
//   pattern   the tempered head's pattern = softmax(log p / τ) of its clean pattern p (the same distribution as
//             softmax(scores / τ) over the keys the query may see), masked keys stay exactly 0, other heads of
//             the layer and every earlier layer are untouched; rows of one call carry different heads and τ
//   pytorch   patterns and logits vs PyTorch with the head's scores divided by τ (scripts/temperature_references.py)
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { evaluateTemperatures } from '../../core/analysis/attention/temperature';
import { prepare } from '../../core/analysis/evaluate';
import { scorePrompt } from '../../core/analysis/metrics';
import type { ResolvedPrompt } from '../../core/analysis/prompts';
import type { Engine } from '../../core/engine/engine';
import type { F32 } from '../../core/engine/runtime';
import type { HeadTemperature } from '../../core/engine/types';
import { parseNodeId, type NodeId } from '../../core/ids';
import { createRuntime, loadEngine } from '../../core/nodejs/load';
import { decodeRef, EXAMPLES, FIXTURES, maxAbsDiff, row, type Reference, type RefTensor } from '../helpers';

const ZOO = path.join(FIXTURES, 'zoo');
interface Entry { name: string; model: string; reference: string | null; expect?: string }
const manifest = JSON.parse(fs.readFileSync(path.join(ZOO, 'manifest.json'), 'utf8')) as { entries: Entry[] };

/** The models: every zoo entry the engine runs, and the two demo models. */
const MODELS: { name: string; file: string; reference: string }[] = [
  ...manifest.entries.filter((e) => e.expect !== 'refuse' && e.reference).map((e) => ({ name: `zoo/${e.name}`, file: path.join(ZOO, e.model), reference: path.join(ZOO, e.reference!) })),
  ...['induction-gpt2', 'induction-llama'].map((n) => ({ name: n, file: path.join(EXAMPLES, `${n}.onnx`), reference: path.join(EXAMPLES, 'references', `${n}.json`) })),
];

/** softmax(log p / τ) per query row of one head's [T, T] pattern. */
function tempered(p: Float32Array, T: number, tau: number): Float32Array {
  const out = new Float32Array(T * T);
  for (let q = 0; q < T; q++) {
    const logits = Array.from({ length: T }, (_, k) => (p[q * T + k]! > 0 ? Math.log(p[q * T + k]!) / tau : -Infinity));
    const max = Math.max(...logits);
    const e = logits.map((x) => Math.exp(x - max));
    const z = e.reduce((a, b) => a + b, 0);
    e.forEach((x, k) => { out[q * T + k] = x / z; });
  }
  return out;
}

/** Head h of row b of a [B, H, T, T] pattern. */
function headSlice(t: F32, b: number, h: number): Float32Array {
  const [, H, T] = t.dims as [number, number, number, number];
  const off = (b * H + h) * T * T;
  return t.data.subarray(off, off + T * T);
}

function identical(a: F32, b: F32, what: string): void {
  assert.deepEqual(a.dims, b.dims, `${what}: shape`);
  const i = a.data.findIndex((x, j) => !Object.is(x, b.data[j]));
  assert.equal(i, -1, `${what}: differs at ${i} (${a.data[i]} vs ${b.data[i]})`);
}

for (const m of MODELS) {
  describe(`temperature: ${m.name}`, () => {
    let engine: Engine;
    let ref: Reference;
    before(async () => {
      engine = await loadEngine(m.file, createRuntime('node'));
      ref = JSON.parse(fs.readFileSync(m.reference, 'utf8'));
    });
    after(async () => { await engine?.release(); });

    test('τ = 1 is bit-identical to the run without temperatures', async () => {
      const ids = ref.prompts.slice(0, 2).map((p) => p.ids);
      const hooks = engine.hookNames;
      const plain = await engine.run({ ids, hooks });
      const neutral = await engine.run({ ids, hooks, temperatures: ids.map(() => [{ head: 'a0.h0', temperature: 1 }]) });
      identical(neutral.logits, plain.logits, 'logits');
      for (const h of hooks) identical(neutral.activations[h]!, plain.activations[h]!, h);
      const last = await engine.run({ ids, lastOnly: true, temperatures: ids.map(() => [{ head: `a${engine.info.layers - 1}.h0` as NodeId, temperature: 1 }]) });
      const plainLast = await engine.run({ ids, lastOnly: true });
      identical(last.logits, plainLast.logits, 'last-position logits');
    });

    test('a tempered head\'s pattern is softmax(scores / τ); nothing before it changes', async () => {
      const { layers, heads } = engine.info;
      const ids = ref.prompts[0]!.ids;
      const T = ids.length;
      const patterns = Array.from({ length: layers }, (_, l) => `blocks.${l}.attn.hook_pattern`);
      const clean = await engine.run({ ids: [ids], hooks: patterns });
      // One call: each row tempers one head (first and last of each layer) at one τ.
      const cases: HeadTemperature[] = [];
      for (let l = 0; l < layers; l++) for (const h of new Set([0, heads - 1])) for (const tau of [0.5, 2]) cases.push({ head: `a${l}.h${h}`, temperature: tau });
      const res = await engine.run({ ids: cases.map(() => ids), hooks: patterns, temperatures: cases.map((c) => [c]) });
      let worst = 0;
      cases.forEach((c, b) => {
        const n = parseNodeId(c.head) as { layer: number; head: number };
        for (let l = 0; l < n.layer; l++) identical(row(res.activations[patterns[l]!]!, b), clean.activations[patterns[l]!]!, `${c.head} τ=${c.temperature}: layer ${l}`);
        const got = res.activations[patterns[n.layer]!]!;
        const want = clean.activations[patterns[n.layer]!]!;
        for (let h = 0; h < heads; h++) {
          const g = headSlice(got, b, h);
          if (h !== n.head) { identical({ dims: [T, T], data: g }, { dims: [T, T], data: headSlice(want, 0, h) }, `${c.head} τ=${c.temperature}: head ${h}`); continue; }
          const expect = tempered(headSlice(want, 0, h), T, c.temperature);
          for (let q = 0; q < T; q++) for (let k = q + 1; k < T; k++) assert.equal(g[q * T + k], 0, `${c.head} τ=${c.temperature}: masked key ${k} of query ${q} has weight ${g[q * T + k]}`);
          worst = Math.max(worst, maxAbsDiff({ dims: [T, T], data: g }, { dims: [T, T], data: expect }));
        }
        // The pattern changed where it should: τ ≠ 1 moves a head that is not uniform.
        assert.ok(maxAbsDiff({ dims: [T, T], data: headSlice(got, b, n.head) }, { dims: [T, T], data: headSlice(want, 0, n.head) }) > 1e-4, `${c.head} τ=${c.temperature}: pattern did not change`);
      });
      assert.ok(worst < 2e-5, `max |pattern − softmax(log p / τ)| = ${worst}`);
      console.log(`${m.name}: ${cases.length} tempered rows, max |pattern − softmax(log p / τ)| ${worst.toExponential(1)}`);
    });
  });
}

/** scripts/temperature_references.py: PyTorch with one head's scores divided by τ. */
interface TemperatureReference {
  model: string;
  prompts: { ids: number[] }[];
  cases: { temperatures: { head: NodeId; temperature: number }[]; patterns: Record<string, RefTensor>; logits: RefTensor }[];
}

const REFERENCES: { name: string; file: string; reference: string }[] = [
  ...['induction-gpt2', 'induction-llama'].map((n) => ({ name: n, file: path.join(EXAMPLES, `${n}.onnx`), reference: path.join(EXAMPLES, 'references', `${n}.temperature.json`) })),
  ...['opt', 'qwen2'].map((n) => ({ name: `zoo/${n}`, file: path.join(ZOO, `${n}.onnx`), reference: path.join(ZOO, `${n}.temperature.json`) })),
];

for (const m of REFERENCES) {
  test(`temperature vs PyTorch: ${m.name}`, async () => {
    const ref = JSON.parse(fs.readFileSync(m.reference, 'utf8')) as TemperatureReference;
    const engine = await loadEngine(m.file, createRuntime('node'));
    try {
      const ids = ref.prompts.map((p) => p.ids);
      // Every case × prompt in one call.
      const rows = ref.cases.flatMap((c) => ids.map(() => c.temperatures));
      const hooks = [...new Set(ref.cases.flatMap((c) => Object.keys(c.patterns)))];
      const res = await engine.run({ ids: ref.cases.flatMap(() => ids), hooks, temperatures: rows, lastOnly: true });
      let worst = 0;
      ref.cases.forEach((c, i) => {
        const slice = (t: F32) => {
          const w = t.data.length / t.dims[0]!;
          return { dims: [ids.length, ...t.dims.slice(1)], data: t.data.subarray(i * ids.length * w, (i + 1) * ids.length * w) };
        };
        const want = decodeRef(c.logits);
        worst = Math.max(worst, maxAbsDiff(slice(res.logits), { dims: [ids.length, 1, want.dims[1]!], data: want.data }));
        for (const [h, t] of Object.entries(c.patterns)) worst = Math.max(worst, maxAbsDiff(slice(res.activations[h]!), decodeRef(t)));
      });
      assert.ok(worst <= 1e-4, `max |engine − PyTorch| = ${worst}`);
      console.log(`${m.name}: ${ref.cases.length} cases, max |engine − PyTorch| ${worst.toExponential(1)}`);
    } finally {
      await engine.release();
    }
  });
}

test('evaluateTemperatures: settings × prompts of several lengths, cut into calls, equal one run per prompt', async () => {
  const engine = await loadEngine(path.join(EXAMPLES, 'induction-gpt2.onnx'), createRuntime('node'));
  try {
    const tok = engine.tokenizer!;
    const texts = ['Mary walked garden red apple dog Mary walked garden red', 'Bob ran river blue', 'Mary walked garden red apple dog Mary walked', 'Bob ran river blue bread cat Bob ran river'];
    const prompts: ResolvedPrompt[] = texts.map((text, index) => ({ index, text, ids: tok.encode(text), answer: tok.encode(' apple')[0]!, foil: tok.encode(' Mary')[0]!, tags: [] }));
    const ctx = await prepare(engine, prompts, 'zero', { maxRows: 3 });
    const settings: HeadTemperature[][] = [[], [{ head: 'a1.h0', temperature: 2 }], [{ head: 'a0.h3', temperature: 0.5 }, { head: 'a1.h2', temperature: 1.5 }]];
    const got = await evaluateTemperatures(ctx, settings);
    for (const [s, setting] of settings.entries()) {
      for (const [i, p] of prompts.entries()) {
        const one = await engine.run({ ids: [p.ids], lastOnly: true, temperatures: [setting] });
        const want = scorePrompt(one.logits.data, p.answer, p.foil, ctx.cleanLogProbs[i]);
        const g = got[s]!.scores[i]!;
        assert.ok(Math.abs(g.logitDiff - want.logitDiff) < 1e-5 && g.top1 === want.top1 && Math.abs(g.kl - want.kl) < 1e-7, `setting ${s}, prompt ${i}`);
      }
    }
    assert.ok(got[1]!.metrics.kl > 0 && got[0]!.metrics.kl < 1e-9);
  } finally {
    await engine.release();
  }
});
