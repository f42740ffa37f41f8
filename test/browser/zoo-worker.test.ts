// The webview compute worker (onnxruntime-web in a Web Worker, on WebGPU and on WASM) in real Chromium against
// PyTorch, on conformance-zoo models of Hugging Face families with different structure (test/fixtures/zoo,
// scripts/zoo/SPEC.md): GPT-2 (Conv1D as Gemm, learned positions), GPT-NeoX (parallel attention + MLP, partial
// rotary from cached tables), Llama (RMSNorm, GQA, rotary computed in the graph with Sin/Cos) and Gemma (MQA,
// scaled embeddings, (1 + w) RMSNorm, rotary in the graph).
//
// Only the worker's own protocol is used (protocol/compute.ts), with the messages the views send, under
// the extension's default backend preference ('auto', which must come out as WebGPU under Chromium's WebGPU):
//  - `trace` (attention and lens views): clean logits at every position and hook activations, compared with
//    PyTorch's directly;
//  - `evaluate` (the graph view's "ablate everything outside the marked circuit"): ablation sets under zero and
//    mean ablation, the means over all reference prompts and positions as PyTorch's. It answers per-prompt scores,
//    not logits, so the test scores one prompt several times, each with another answer token: logitDiff then
//    gives logit[answer] − logit[foil], prob the answer's probability, kl the KL to the clean run. On WASM every
//    vocabulary token is an answer, which gives the whole last-position row up to softmax's additive constant
//    (compared centred); on WebGPU (SwiftShader: ~70 ms a row) a few tokens, and kl covers the rest of the row.
//
// ONNX Runtime Web's WebGPU Sin/Cos (WGSL sin/cos, absolute error ≤ 2^-11 by the WGSL spec; ~1.9e-4 on
// SwiftShader against ~3e-8 on WASM) put ~1e-3 (up to ~8e-3 at some positions) on the logits of models that
// compute rotary angles in the graph (Llama, Mistral, Qwen2, Gemma). On WebGPU the engine computes them in float32
// arithmetic instead (core/onnx/normalize.ts preciseTrigForWebGpu), so they are held to the same tolerance; the
// test checks that such a model has Sin/Cos in its graph, so the rewrite is exercised.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { ResolvedPrompt } from '../../core/analysis/prompts';
import type { F32 } from '../../core/engine/runtime';
import type { NodeId } from '../../core/ids';
import { ModelProto } from '../../core/onnx/codec';
import type { ComputeRequest, Ready } from '../../protocol/compute';
import type { ParamsOf, ResultOf } from '../../protocol/ipc';
import { decodeRef, FIXTURES, type Reference } from '../helpers';
import { launchChromium, serveWorker, CHROMIUM } from './chromium';

const skip = fs.existsSync(CHROMIUM) ? false : `Chromium not found at ${CHROMIUM} (apt-get install chromium)`;
const ZOO = path.join(FIXTURES, 'zoo');
const VERBOSE = !!process.env.ZOO_WORKER_VERBOSE;

/** Against PyTorch (float32), max |Δ|: both backends as the Node engine (measured ≤ 2e-5). */
const TOL = 1e-4;

/**
 * Zoo entries (manifest.json names). Each costs ~5 s on WASM and ~10–15 s on WebGPU (SwiftShader compiles the
 * shaders of three sessions: the model, the hooks of trace, the metrics of evaluate), so Gemma, which adds nothing
 * the engine treats differently from Llama but MQA and its norms, runs only when asked:
 * ZOO_WORKER_FAMILIES=gpt2,gpt_neox,llama,gemma (or any manifest names); ZOO_WORKER_BACKENDS=wasm,webgpu.
 */
const FAMILIES = process.env.ZOO_WORKER_FAMILIES?.split(',') ?? ['gpt2', 'gpt_neox', 'llama'];
const BACKENDS = (process.env.ZOO_WORKER_BACKENDS?.split(',') ?? ['wasm', 'webgpu']) as Backend[];
type Backend = 'wasm' | 'webgpu';

interface Entry { name: string; family: string; model: string; reference: string; tokenizer: string | null }
const manifest: { entries: Entry[] } = JSON.parse(fs.readFileSync(path.join(ZOO, 'manifest.json'), 'utf8'));
const entries = FAMILIES.map((n) => {
  const e = manifest.entries.find((x) => x.name === n);
  if (!e) throw new Error(`zoo entry ${n} missing from manifest.json`);
  return e;
});

/** Whether the model's graph has Sin or Cos (rotary angles computed in the graph). */
function hasTrig(file: string): boolean {
  const m = ModelProto.decode(fs.readFileSync(file)) as { graph: { node: { opType: string }[] } };
  return m.graph.node.some((n) => n.opType === 'Sin' || n.opType === 'Cos');
}


type Method = Exclude<ComputeRequest['method'], 'compute/init'>;

/** A request to the worker through the page (window.call), answered by its result. */
function call<M extends Method>(page: Page, method: M, params: ParamsOf<ComputeRequest, M>): Promise<ResultOf<ComputeRequest, M>> {
  return page.evaluate((a: [string, unknown]) => (globalThis as unknown as { call(m: string, p: unknown): Promise<never> }).call(a[0], a[1]), [method, params] as [string, never]);
}

/** Last-position row of a [B, T, V] logits tensor. */
function lastRow(t: F32, b: number): Float32Array {
  const [, T, V] = t.dims as [number, number, number];
  return t.data.slice((b * T + T - 1) * V, (b * T + T) * V);
}

/** Indices of the k largest entries, largest first. */
function top(row: Float32Array, k: number): number[] {
  return Array.from(row.keys()).sort((x, y) => row[y]! - row[x]!).slice(0, k);
}

function centred(a: ArrayLike<number>): Float64Array {
  let m = 0;
  for (let i = 0; i < a.length; i++) m += a[i]!;
  m /= a.length;
  return Float64Array.from(a as ArrayLike<number>, (v) => v - m);
}

function logSoftmax(a: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < a.length; i++) max = Math.max(max, a[i]!);
  let z = 0;
  for (let i = 0; i < a.length; i++) z += Math.exp(a[i]! - max);
  const lz = max + Math.log(z);
  return Float64Array.from(a as ArrayLike<number>, (v) => v - lz);
}

/** KL(p ‖ q) of the softmaxes of two logit rows, in float64. */
function kl(p: ArrayLike<number>, q: ArrayLike<number>): number {
  const lp = logSoftmax(p);
  const lq = logSoftmax(q);
  let s = 0;
  for (let i = 0; i < lp.length; i++) s += Math.exp(lp[i]!) * (lp[i]! - lq[i]!);
  return s;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length, 'length mismatch');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m; // NaN when any is
}

/** Measured maxima (family → backend → check → max |Δ|), printed at the end. */
const measured: Record<string, Partial<Record<Backend, Record<string, number>>>> = {};

describe('webview compute worker on zoo models vs PyTorch', { skip }, () => {
  let browser: Browser;
  let server: Awaited<ReturnType<typeof serveWorker>>;
  before(async () => {
    const files: Record<string, string> = {};
    for (const e of entries) {
      files[`/${e.model}`] = path.join(ZOO, e.model);
      if (e.tokenizer) files[`/${e.tokenizer}`] = path.join(ZOO, e.tokenizer);
    }
    server = await serveWorker(files);
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    for (const [family, byBackend] of Object.entries(measured)) {
      for (const [backend, checks] of Object.entries(byBackend)) {
        const worst = Object.entries(checks).sort((a, b) => b[1] - a[1]);
        console.log(`${family} on ${backend}: max |Δ| ${worst[0]?.[1].toExponential(2)} (${worst[0]?.[0]}) over ${worst.length} checks`);
        if (VERBOSE) for (const [k, v] of worst) console.log(`  ${v.toExponential(2)}  ${k}`);
      }
    }
  });

  for (const e of entries) {
    const trig = hasTrig(path.join(ZOO, e.model));
    for (const backend of BACKENDS) {
      const tol = TOL;
      if (e.family === 'llama') assert.ok(trig, 'the Llama export computes its rotary angles with Sin/Cos');
      test(`${e.family} (${e.model}) on ${backend}: clean and ablated logits equal PyTorch's to ${tol}`, async () => {
        const ref: Reference = JSON.parse(fs.readFileSync(path.join(ZOO, e.reference), 'utf8'));
        const { n_layers: L, n_heads: H, vocab: V } = ref.config;
        const checks: Record<string, number> = ((measured[e.family] ??= {})[backend] = {});
        const page = await browser.newPage();
        await page.goto(server.url + '/');
        const t0 = Date.now();
        const lap = (what: string) => VERBOSE && console.log(`${e.family}/${backend} ${what}: ${Date.now() - t0} ms`);
        try {
          // The extension's default preference: WebGPU where there is an adapter.
          const prefer = backend === 'webgpu' ? 'auto' : 'wasm';
          const ready = await page.evaluate(([p, m, tok]) => (globalThis as unknown as { startWorker(p: string, m: string, tok?: string): Promise<Ready> }).startWorker(p, m, tok ?? undefined),
            [prefer, e.model, e.tokenizer] as const);
          lap('ready');
          assert.equal(ready.backend, backend, 'the backend the worker reports (the view\'s badge)');
          if (backend === 'webgpu') assert.ok(ready.adapter, 'a WebGPU adapter name');
          assert.equal(ready.info.layers, L);
          assert.equal(ready.info.heads, H);
          assert.equal(ready.info.vocab, V);

          // trace: every reference prompt, clean logits at every position and some hooks.
          const refLogits = decodeRef(ref.clean.logits!);
          const hooks = ['blocks.0.attn.hook_pattern', 'blocks.0.hook_mlp_out', `blocks.${L - 1}.attn.hook_z`, `blocks.${L - 1}.hook_resid_post`];
          const hookRefs = hooks.map((h) => decodeRef(ref.clean[h]!));
          for (let b = 0; b < ref.prompts.length; b++) {
            const r = await call(page, 'compute/trace', { ids: ref.prompts[b]!.ids, hooks });
            const T = ref.prompts[b]!.ids.length;
            assert.deepEqual(r.logits.dims, [1, T, V]);
            const max = (k: string, d: number) => { checks[k] = Math.max(checks[k] ?? 0, d); };
            max('trace: clean logits, last position', maxDiff(lastRow(r.logits, 0), lastRow(refLogits, b)));
            max('trace: clean logits, every position', maxDiff(r.logits.data, refLogits.data.subarray(b * T * V, (b + 1) * T * V)));
            hooks.forEach((h, i) => {
              const w = hookRefs[i]!;
              const width = w.data.length / w.dims[0]!;
              max(`trace: ${h}`, maxDiff(r.activations[h]!.data, w.data.subarray(b * width, (b + 1) * width)));
            });
          }
          lap('trace');

          // evaluate. Prompt 0 scored once per answer token (foil: its clean top-1), prompts 1–3 once each
          // (answer and foil: their clean top two).
          const clean0 = lastRow(refLogits, 0);
          const answers0 = backend === 'wasm' ? Array.from({ length: V }, (_, v) => v) : [...new Set([...top(clean0, 2), Math.floor(V / 3), V - 1])];
          const foil0 = top(clean0, 1)[0]!;
          const rows: { b: number; answer: number; foil: number }[] = answers0.map((answer) => ({ b: 0, answer, foil: foil0 }));
          for (let b = 1; b < ref.prompts.length; b++) {
            const [answer, foil] = top(lastRow(refLogits, b), 2) as [number, number];
            rows.push({ b, answer, foil });
          }
          const prompts: ResolvedPrompt[] = rows.map((r, index) => ({ index, text: '', ids: ref.prompts[r.b]!.ids, answer: r.answer, foil: r.foil, tags: [] }));
          const meanOver: ResolvedPrompt[] = ref.prompts.map((p, index) => ({ index, text: '', ids: p.ids, answer: 0, tags: [] }));
          // A head and an MLP alone, and (on WASM, where rows are cheap) a set of both kinds across layers.
          const sets: NodeId[][] = [[], [`a${L - 1}.h1`], ['m0']];
          if (backend === 'wasm') sets.push(['a0.h0', `a${L - 1}.h${Math.min(2, H - 1)}`, 'm0']);
          for (const kind of ['zero', 'mean'] as const) {
            const r = await call(page, 'compute/evaluate', { prompts, meanOver, ablation: kind, sets });
            lap(`evaluate ${kind} (${prompts.length} prompts × ${sets.length} sets)`);
            assert.equal(r.sets.length, sets.length);
            sets.forEach((set, s) => {
              if (kind === 'mean' && !set.length) return; // the clean set, as under 'zero'
              const want = set.length ? ref.ablations.find((a) => a.kind === kind && a.nodes.join() === set.join())?.logits : ref.clean.logits;
              assert.ok(want, `reference ablation ${kind} [${set}]`);
              const wantT = decodeRef(want);
              const label = `evaluate ${set.length ? `${kind} [${set.join(' ')}]` : 'clean'}`;
              const scores = r.sets[s]!.scores;
              assert.equal(scores.length, rows.length);
              let dDiff = 0;
              let dProb = 0;
              let dKl = 0;
              scores.forEach((sc, i) => {
                const { b, answer, foil } = rows[i]!;
                const row = lastRow(wantT, b);
                dDiff = Math.max(dDiff, Math.abs(sc.logitDiff - (row[answer]! - row[foil]!)));
                dProb = Math.max(dProb, Math.abs(sc.prob - Math.exp(logSoftmax(row)[answer]!)));
                dKl = Math.max(dKl, Math.abs(sc.kl - kl(lastRow(refLogits, b), row)));
                const [t1, t2] = top(row, 2) as [number, number];
                if (row[t1]! - row[t2]! > 10 * tol) assert.equal(sc.top1, t1, `${label}, prompt ${b}: top-1`);
              });
              checks[`${label}: logit[answer] − logit[foil]`] = dDiff;
              checks[`${label}: prob`] = dProb;
              checks[`${label}: KL to clean`] = dKl;
              if (backend === 'wasm') {
                const got = scores.slice(0, V).map((x) => x.logitDiff);
                const row = lastRow(wantT, 0);
                checks[`${label}: whole last row, centred`] = maxDiff(centred(got), centred(row));
              }
              // The ablation moves the reference logits far more than the engine's error (so the check tells).
              if (set.length) assert.ok(maxDiff(centred(lastRow(wantT, 0)), centred(clean0)) > 100 * TOL, `${label} changes the reference logits`);
            });
          }
          const over = (limit: number) => Object.entries(checks).filter(([, d]) => !(d <= limit)).map(([k, d]) => `${k}: ${d.toExponential(2)}`);
          assert.deepEqual(over(tol), [], `${e.family} on ${backend}: max |Δ| over ${tol}`);
        } finally {
          await page.close();
        }
      });
    }
  }
});
