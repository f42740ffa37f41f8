// The conformance zoo (scripts/zoo/, test/fixtures/zoo/): tiny models mirroring Hugging Face's GPT-2, GPT-Neo,
// GPT-NeoX/Pythia, OPT, Phi, Llama, Mistral, Qwen2 and Gemma, exported with torch.onnx.export as optimum does,
// in several variants. Every capability on every model, each against PyTorch where PyTorch has the number:
//   hooks     hooks found by graph structure, dimensions as configured
//   trace     every hook and the logits vs PyTorch forward hooks (≤ 1e-4)
//   ablate    zero and mean ablation of every head and MLP, one batched call (≤ 1e-4 vs PyTorch)
//   resample  resample ablation of every head and MLP through the suite path (prepare, runSets) vs PyTorch
//   grad      d(logit diff)/d(hook_z, hook_mlp_out, hook_resid_pre) of the ONNX backward graph vs autograd (≤ 1e-4)
//   eap       node EAP and EAP-IG scores: finite, and EAP = Σ gradient · (ablated − clean) from the parity-checked gradients
//   edges     exact path patching of single edges vs PyTorch path patching written out with hooks (a third of the
//             edges and all into the logits); all of a node's outgoing edges ablated = the node ablated (vs PyTorch);
//             edge EAP: a node's outgoing edge scores sum to its node EAP score (≤ 1e-4)
//   discover  greedy discovery + verify on the suite of trained models (faithfulness ≥ 0.8)
// The cells are written to test-results/zoo-matrix.md (`npm run zoo-matrix` prints it; README carries it).
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { prepare, runSets, type EvalContext } from '../../core/analysis/evaluate';
import { edgeGradientScores } from '../../core/analysis/attribute/edges';
import { edgeWeights, prepareEdges, runEdgeSets, type EdgeContext } from '../../core/analysis/edge-context';
import { eapNodeScores } from '../../core/analysis/attribute/gradient';
import type { ResolvedPrompt } from '../../core/analysis/prompts';
import type { Ablation } from '../../core/engine/types';
import type { Engine } from '../../core/engine/engine';
import type { F32 } from '../../core/engine/runtime';
import { allComponentNodes, type NodeId } from '../../core/ids';
import { createRuntime, loadEngine, loadTokenizerFor, type RuntimeName } from '../../core/nodejs/load';
import { cli } from '../cli/run-cli';
import { decodeRef, FIXTURES, maxAbsDiff, ROOT, row, toHookZ, TOL, type Reference, type RefTensor } from '../helpers';

const ZOO = path.join(FIXTURES, 'zoo');

export interface ZooEntry {
  name: string; family: string; variant: string; model: string; reference: string | null; grads: string | null;
  tokenizer: string | null; suite: string | null; trained: boolean; accuracy: number | null; parallel: boolean; notes: string;
  /** What the engine must do with it: run everything (default) or refuse it with a message matching `refuse`. */
  expect?: 'run' | 'refuse'; refuse?: string;
}

interface GradReference { prompts: { ids: number[]; answer: number; foil: number }[]; grads: Record<string, RefTensor> }

const manifest = JSON.parse(fs.readFileSync(path.join(ZOO, 'manifest.json'), 'utf8')) as { entries: ZooEntry[] };
const read = <T>(f: string): T => JSON.parse(fs.readFileSync(path.join(ZOO, f), 'utf8'));

/** The matrix: entry → capability → cell text. */
const CAPS = ['hooks', 'trace', 'ablate', 'resample', 'grad', 'eap', 'edges', 'discover', 'wasm'] as const;
type Cap = (typeof CAPS)[number];
const matrix = new Map<string, Partial<Record<Cap, string>>>();
const cell = (e: ZooEntry, cap: Cap, text: string) => {
  const k = `${e.family} | ${e.variant}${e.name !== e.family && !e.name.endsWith(e.variant) ? ` (${e.name})` : ''}`;
  matrix.set(k, { ...(matrix.get(k) ?? {}), [cap]: text });
};
/** Runs a capability check, recording ✓ with its number or ✗ with the first line of the failure. */
async function check(e: ZooEntry, cap: Cap, fn: () => Promise<string>): Promise<void> {
  try {
    cell(e, cap, `✓ ${await fn()}`.trim());
  } catch (err) {
    cell(e, cap, '✗');
    throw err;
  }
}

/** The last position of a [B, T, V] tensor as [B, 1, V]. */
function lastPosition(t: F32): F32 {
  const [B, T, V] = t.dims as [number, number, number];
  const data = new Float32Array(B * V);
  for (let b = 0; b < B; b++) data.set(t.data.subarray((b * T + T - 1) * V, (b * T + T) * V), b * V);
  return { dims: [B, 1, V], data };
}

const fmt = (d: number) => d.toExponential(0);

async function traceAndAblate(e: ZooEntry, engine: Engine, ref: Reference, runtime: RuntimeName): Promise<{ trace: number; ablate: number }> {
  const ids = ref.prompts.map((p) => p.ids);
  const hooks = Object.keys(ref.clean).filter((h) => h !== 'logits');
  const res = await engine.run({ ids, hooks });
  let trace = maxAbsDiff(res.logits, decodeRef(ref.clean['logits']!));
  for (const h of hooks) {
    const d = maxAbsDiff(res.activations[h]!, decodeRef(ref.clean[h]!));
    assert.ok(d <= TOL, `${e.name} on ${runtime}: ${h} max abs diff ${d}`);
    trace = Math.max(trace, d);
  }
  assert.ok(trace <= TOL, `${e.name} on ${runtime}: logits max abs diff ${trace}`);
  // Every ablation of the reference, each in its own rows of one batched call.
  const means = await engine.means(ids);
  const rows: number[][] = [];
  const ablations: (Ablation | undefined)[] = [];
  for (const a of ref.ablations) ids.forEach((p) => { rows.push(p); ablations.push({ nodes: a.nodes as NodeId[], kind: a.kind }); });
  const hooksAfter = Object.keys(ref.ablations[0]!.hooks);
  const abl = await engine.run({ ids: rows, ablations, means, hooks: hooksAfter });
  let ablate = 0;
  let changed = 0;
  const clean = decodeRef(ref.clean['logits']!);
  ref.ablations.forEach((a, i) => {
    const want = decodeRef(a.logits);
    ids.forEach((_, p) => {
      // The reference keeps ablated logits at the last position (what metrics read); the hooks cover every position.
      const got = lastPosition(row(abl.logits, i * ids.length + p));
      const d = maxAbsDiff(got, row(lastPosition(want), p));
      assert.ok(d <= TOL, `${e.name} on ${runtime}: ${a.kind} ${a.nodes} prompt ${p}: logits diff ${d}`);
      ablate = Math.max(ablate, d);
    });
    for (const h of hooksAfter) {
      const want = decodeRef(a.hooks[h]!);
      ids.forEach((_, p) => {
        const d = maxAbsDiff(row(abl.activations[h]!, i * ids.length + p), row(want, p));
        assert.ok(d <= TOL, `${e.name} on ${runtime}: ${a.kind} ${a.nodes} prompt ${p}: ${h} diff ${d}`);
        ablate = Math.max(ablate, d);
      });
    }
    if (maxAbsDiff(row(abl.logits, i * ids.length), row(clean, 0)) > 1e-3) changed++;
  });
  // The ablations really change the output (a test that cannot fail proves nothing).
  assert.ok(changed >= ref.ablations.length / 2, `${e.name}: only ${changed} of ${ref.ablations.length} ablations changed the logits`);
  return { trace, ablate };
}

async function gradients(e: ZooEntry, engine: Engine, gref: GradReference): Promise<number> {
  const res = await engine.gradients({ ids: gref.prompts.map((p) => p.ids), seed: seedOf(engine, gref), residPre: true });
  let worst = 0;
  for (const [hook, tensor] of Object.entries(gref.grads)) {
    const want = decodeRef(tensor);
    const l = Number(/^blocks\.(\d+)\./.exec(hook)![1]);
    const got = hook.endsWith('attn.hook_z') ? toHookZ(res.z[l]!) : hook.endsWith('hook_mlp_out') ? res.mlp[l]! : res.residPre![l]!;
    // The last layer's MLP may be differentiated at the last position only (PyTorch's gradient is 0 elsewhere).
    const d = got.dims[1] === 1 && want.dims[1]! > 1 ? maxAbsDiff(got, lastPosition(want)) : maxAbsDiff(got, want);
    assert.ok(d <= TOL, `${e.name}: ${hook} gradient max abs diff ${d}`);
    assert.ok(want.data.some((v) => Math.abs(v) > 1e-3), `${e.name}: the reference gradient of ${hook} is ~0`);
    worst = Math.max(worst, d);
  }
  return worst;
}

function resolved(gref: GradReference): ResolvedPrompt[] {
  return gref.prompts.map((p, index) => ({ index, text: '', ids: p.ids, answer: p.answer, foil: p.foil, tags: ['task'] }));
}

for (const e of manifest.entries) {
  const file = path.join(ZOO, e.model);
  if (e.expect === 'refuse') {
    test(`${e.name} (${e.family}, ${e.variant}) is refused with a clear message`, async () => {
      const r = cli(['info', file]);
      assert.equal(r.code, 2, r.stderr + r.stdout);
      assert.match(r.stderr, new RegExp(e.refuse ?? '.'));
      cell(e, 'hooks', '✓ refused, named');
    });
    continue;
  }
  const ref = e.reference ? read<Reference>(e.reference) : undefined;
  const gref = e.grads ? read<GradReference>(e.grads) : undefined;

  describe(`zoo ${e.name} (${e.family}, ${e.variant}) on node`, () => {
    let engine: Engine;
    let ctx: EvalContext;
    before(async () => { engine = await loadEngine(file, createRuntime('node')); });
    after(async () => { await engine?.release(); });

    test('hooks found by structure, dimensions as configured', () => check(e, 'hooks', async () => {
      assert.ok(ref, 'no reference');
      assert.equal(engine.info.layers, ref.config.n_layers);
      assert.equal(engine.info.heads, ref.config.n_heads);
      assert.equal(engine.info.dModel, ref.config.d_model);
      assert.equal(engine.info.dHead, ref.config.d_head);
      assert.equal(engine.info.vocab, ref.config.vocab);
      assert.equal(engine.info.features.block === 'parallel', e.parallel, `block ${engine.info.features.block}`);
      assert.deepEqual(Object.keys(engine.info.hooks).sort(), Object.keys(ref.clean).sort());
      return engine.info.features.block === 'parallel' ? '(parallel)' : '';
    }));

    test('trace and zero/mean ablation of every node match PyTorch', async () => {
      let r: { trace: number; ablate: number } | undefined;
      await check(e, 'trace', async () => { r = await traceAndAblate(e, engine, ref!, 'node'); return fmt(r.trace); });
      cell(e, 'ablate', `✓ ${fmt(r!.ablate)}`);
    });

    const resampleFile = e.reference?.replace(/\.json$/, '.resample.json');
    if (resampleFile && fs.existsSync(path.join(ZOO, resampleFile))) {
      test('resample ablation of every head and MLP (each prompt\'s corrupted prompt: the next one) matches PyTorch', () => check(e, 'resample', async () => {
        const rs = read<{ corrupted: number[]; ablations: { nodes: string[]; logits: RefTensor }[] }>(resampleFile);
        const prompts: ResolvedPrompt[] = ref!.prompts.map((p, index) => ({ index, text: '', ids: p.ids, answer: 0, foil: 1, corruptedIds: ref!.prompts[rs.corrupted[index]!]!.ids, tags: ['task'] }));
        const rctx = await prepare(engine, prompts, 'resample');
        const { logits } = await runSets(rctx, rs.ablations.map((a) => a.nodes as NodeId[]));
        const V = engine.info.vocab;
        let worst = 0;
        rs.ablations.forEach((a, s) => {
          const want = decodeRef(a.logits);
          prompts.forEach((_, p) => {
            const d = maxAbsDiff({ dims: [1, 1, V], data: logits[s]![p]! }, row(want, p));
            worst = Math.max(worst, d);
            assert.ok(d <= TOL, `resample ${a.nodes} prompt ${p}: ${d}`);
          });
        });
        return fmt(worst);
      }));
    }

    test('gradients of the ONNX backward graph match autograd', () => check(e, 'grad', async () => fmt(await gradients(e, engine, gref!))));

    test('node EAP and EAP-IG scores', () => check(e, 'eap', async () => {
      ctx = await prepare(engine, resolved(gref!), 'zero');
      const eap = await eapNodeScores(ctx, 'logit_diff');
      const ig = await eapNodeScores(ctx, 'logit_diff', { steps: 4 });
      assert.equal(eap.length, allComponentNodes(engine.info).length);
      for (const s of [...eap, ...ig]) assert.ok(Number.isFinite(s.score), `${s.id}: ${s.score}`);
      assert.ok(eap.some((s) => Math.abs(s.score) > 1e-3), 'every EAP score is ~0');
      // Zero ablation: EAP of a node = −Σ_prompts ∂L/∂out · (0 − out) / prompts, from the gradients checked above.
      const grads = await engine.gradients({ ids: gref!.prompts.map((p) => p.ids), seed: seedOf(engine, gref!) });
      const run = await engine.run({ ids: gref!.prompts.map((p) => p.ids), hooks: Object.keys(engine.info.hooks).filter((h) => h.endsWith('hook_mlp_out')) });
      let worst = 0;
      for (let l = 0; l < engine.info.layers; l++) {
        const g = grads.mlp[l]!;
        const out = run.activations[`blocks.${l}.hook_mlp_out`]!;
        const T = out.dims[1]!;
        const D = engine.info.dModel;
        let dot = 0;
        for (let b = 0; b < gref!.prompts.length; b++) for (let t = 0; t < g.dims[1]!; t++) for (let d = 0; d < D; d++) {
          const pos = g.dims[1] === 1 ? T - 1 : t;
          dot += g.data[(b * g.dims[1]! + t) * D + d]! * out.data[(b * T + pos) * D + d]!;
        }
        const want = dot / gref!.prompts.length;
        const got = eap.find((s) => s.id === `m${l}`)!.score;
        worst = Math.max(worst, Math.abs(got - want));
        assert.ok(Math.abs(got - want) <= 1e-3 * Math.max(1, Math.abs(want)), `m${l}: EAP ${got} vs Σ grad·out ${want}`);
      }
      return `IG(4)`;
    }));

    test('edges: patching all of a node\'s outgoing edges = ablating the node; edge EAP sums to node EAP', () => check(e, 'edges', async () => {
      const prompts = ref!.prompts.map((p, index) => ({ index, text: '', ids: p.ids, answer: gref!.prompts[index]!.answer, foil: gref!.prompts[index]!.foil, tags: ['task'] }));
      let worst = 0;
      let perEdge = 0;
      let eapWorst = 0;
      const edgeFile = e.reference!.replace(/\.json$/, '.edges.json');
      for (const kind of ['zero', 'mean'] as const) {
        const ectx = await prepare(engine, prompts, kind);
        const ec: EdgeContext = await prepareEdges(ectx);
        const singles = ref!.ablations.filter((a) => a.kind === kind && a.nodes.length === 1);
        const sets = singles.map((a) => edgeWeights(ec, ec.ids.filter((id) => id.startsWith(`${a.nodes[0]}->`))));
        const logits = await runEdgeSets(ec, sets);
        singles.forEach((a, s) => {
          const want = lastPosition(decodeRef(a.logits));
          const V = engine.info.vocab;
          prompts.forEach((_, p) => {
            const d = maxAbsDiff({ dims: [1, 1, V], data: logits[s]![p]! }, row(want, p));
            worst = Math.max(worst, d);
            assert.ok(d <= TOL, `${kind} ${a.nodes[0]} via its edges, prompt ${p}: ${d}`);
          });
        });
        if (kind === 'zero' && fs.existsSync(path.join(ZOO, edgeFile))) {
          // Single edges against PyTorch path patching written out with hooks (scripts/zoo/common.py write_edge_reference).
          const er = read<{ sample: { edge: string; logits: RefTensor; eap: number }[] }>(edgeFile);
          const sets = er.sample.map((x) => edgeWeights(ec, [x.edge]));
          sets.forEach((w, i) => assert.equal(w.reduce((a, b) => a + b, 0), 1, `${er.sample[i]!.edge} is an edge of the engine`));
          const single = await runEdgeSets(ec, sets);
          const V = engine.info.vocab;
          er.sample.forEach((x, s) => {
            const want = decodeRef(x.logits);
            prompts.forEach((_, p) => {
              const d = maxAbsDiff({ dims: [1, 1, V], data: single[s]![p]! }, row(want, p));
              worst = Math.max(worst, d);
              assert.ok(d <= TOL, `edge ${x.edge} (zero), prompt ${p}: ${d}`);
            });
          });
          perEdge = er.sample.length;
          // Edge EAP against autograd through the same written-out path patching (−dL/dw at w = 0).
          const eap = new Map((await edgeGradientScores(ec, 'logit_diff')).map((x) => [`${x.source}->${x.target}`, x.score]));
          for (const x of er.sample) {
            const got = eap.get(x.edge)!;
            assert.ok(Math.abs(got - x.eap) <= 1e-4 * Math.max(1, Math.abs(x.eap)), `edge EAP ${x.edge}: ${got} vs PyTorch ${x.eap}`);
            eapWorst = Math.max(eapWorst, Math.abs(got - x.eap));
          }
          assert.ok(er.sample.some((x) => Math.abs(x.eap) > 1e-3), 'every reference edge EAP score is ~0');
        }
        if (kind === 'zero') {
          const edges = await edgeGradientScores(ec, 'logit_diff');
          const nodes = await eapNodeScores(ectx, 'logit_diff');
          for (const n of nodes) {
            const sum = edges.filter((x) => x.source === n.id).reduce((acc, x) => acc + x.score, 0);
            assert.ok(Math.abs(sum - n.score) <= 1e-4 * Math.max(1, Math.abs(n.score)), `${n.id}: outgoing edge EAP Σ ${sum} vs node EAP ${n.score}`);
          }
        }
      }
      return `${engine.edges.edges.length} edges${perEdge ? ` (${perEdge} vs PyTorch; EAP ${fmt(eapWorst)})` : ''}, ${fmt(worst)}`;
    }));

    if (e.suite) {
      test('discover + verify on its induction suite', () => check(e, 'discover', async () => {
        const out = path.join(ROOT, 'out', 'zoo', `${e.name}.circuit.json`);
        fs.mkdirSync(path.dirname(out), { recursive: true });
        const suite = path.join(ZOO, e.suite!);
        fs.rmSync(out, { force: true });
        const d = cli(['discover', suite, '--model', file, '--out', out, '--json']);
        assert.equal(d.code, 0, d.stderr);
        const v = cli(['verify', out, '--json']);
        assert.equal(v.code, 0, v.stderr);
        const vj = JSON.parse(v.stdout);
        assert.ok(vj.faithfulness >= 0.8, `faithfulness ${vj.faithfulness}`);
        const c = JSON.parse(fs.readFileSync(out, 'utf8'));
        return `${c.nodes.length} nodes, f ${vj.faithfulness.toFixed(2)}`;
      }));
    }
  });

  describe(`zoo ${e.name} (${e.family}, ${e.variant}) on wasm`, () => {
    test('trace, ablation and gradients on onnxruntime-web (WASM)', () => check(e, 'wasm', async () => {
      const engine = await loadEngine(file, createRuntime('wasm'));
      try {
        const r = await traceAndAblate(e, engine, ref!, 'wasm');
        const g = await gradients(e, engine, gref!);
        return fmt(Math.max(r.trace, r.ablate, g));
      } finally {
        await engine.release();
      }
    }));
  });
}

// The tokenizers as the families ship them: byte-level BPE (GPT-2), SentencePiece-style BPE with ▁ and byte
// fallback (Llama), Unigram (Gemma). Each encodes and decodes back through the engine's tokenizer and drives a
// traced prompt end to end.
for (const e of manifest.entries.filter((x) => x.tokenizer && x.expect !== 'refuse')) {
  test(`zoo ${e.name}: its tokenizer.json encodes, decodes and drives trace --prompt`, () => {
    const file = path.join(ZOO, e.model);
    const tok = loadTokenizerFor(file);
    assert.ok(tok, 'tokenizer.json beside the model');
    const kind = (JSON.parse(fs.readFileSync(path.join(ZOO, e.tokenizer!), 'utf8')) as { model: { type: string } }).model.type;
    const text = e.family === 'gemma' ? 'the cat sat on the mat' : 'The cat sat on the mat, café 😀';
    const ids = tok.encode(text);
    assert.ok(ids.length > 3, `${ids.length} tokens`);
    assert.equal(tok.decode(ids), text, `${kind} round trip`);
    const r = cli(['trace', file, '--prompt', text, '--hooks', 'blocks.0.attn.hook_pattern', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { ids: number[]; activations: Record<string, { shape: number[] }> };
    assert.deepEqual(j.ids, ids);
    assert.deepEqual(j.activations['blocks.0.attn.hook_pattern']!.shape.slice(1), [ids.length, ids.length]);
    if (e.family === 'llama') {
      // Byte fallback: the emoji is not in the vocabulary, so it arrives as its four UTF-8 bytes.
      assert.ok(ids.filter((i) => /^<0x[0-9A-F]{2}>$/.test(rawPiece(e, i))).length >= 4, 'byte fallback for 😀');
    }
  });
}

/** The vocabulary entry of id `i` in an entry's tokenizer.json (BPE: vocab map; Unigram: [piece, score] list). */
function rawPiece(e: ZooEntry, i: number): string {
  const j = JSON.parse(fs.readFileSync(path.join(ZOO, e.tokenizer!), 'utf8')) as { model: { vocab: Record<string, number> | [string, number][] } };
  const v = j.model.vocab;
  return Array.isArray(v) ? v[i]![0] : Object.keys(v).find((k) => v[k] === i) ?? '';
}

function seedOf(engine: Engine, gref: GradReference): Float32Array {
  const V = engine.info.vocab;
  const seed = new Float32Array(gref.prompts.length * V);
  gref.prompts.forEach((p, b) => { seed[b * V + p.answer] += 1; seed[b * V + p.foil] -= 1; });
  return seed;
}

after(() => {
  const lines = [
    `| family | variant | ${CAPS.join(' | ')} |`,
    `|---|---|${CAPS.map(() => '---').join('|')}|`,
    ...[...matrix].map(([k, caps]) => `| ${k} | ${CAPS.map((c) => caps[c] ?? '—').join(' | ')} |`),
  ];
  fs.mkdirSync(path.join(ROOT, 'test-results'), { recursive: true });
  fs.writeFileSync(path.join(ROOT, 'test-results', 'zoo-matrix.md'), lines.join('\n') + '\n');
});
