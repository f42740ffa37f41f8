// The webview compute worker (onnxruntime-web in a Web Worker, WASM and WebGPU) in real Chromium gives the
// Node engine's numbers, and keeps onnxruntime's warnings out of the console.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { evaluateSets, prepare } from '../../core/analysis/evaluate';
import { resolvePrompts } from '../../core/analysis/prompts';
import { parseSuite } from '../../core/formats/suite';
import type { NodeId } from '../../core/ids';
import { loadEngine } from '../../core/nodejs/load';
import type { EvaluateParams, Evaluated } from '../../protocol/compute';
import { EXAMPLES } from '../helpers';
import { launchChromium, serveWorker, CHROMIUM } from './chromium';

const skip = fs.existsSync(CHROMIUM) ? false : `Chromium not found at ${CHROMIUM} (apt-get install chromium)`;

describe('webview compute worker in Chromium', { skip }, () => {
  let browser: Browser;
  let server: Awaited<ReturnType<typeof serveWorker>>;
  before(async () => {
    server = await serveWorker({
      '/tokenizer.json': path.join(EXAMPLES, 'tokenizer.json'),
      '/induction-gpt2.onnx': path.join(EXAMPLES, 'induction-gpt2.onnx'),
      '/induction-llama.onnx': path.join(EXAMPLES, 'induction-llama.onnx'),
    });
    browser = await launchChromium();
  });
  after(async () => { await browser?.close(); await server?.close(); });

  for (const model of ['induction-gpt2', 'induction-llama']) {
    for (const prefer of ['wasm', 'webgpu'] as const) {
      test(`${model} on ${prefer}: suite metrics and ablations equal the Node engine's, onnxruntime prints no warnings`, async () => {
        const page: Page = await browser.newPage();
        // onnxruntime-web's own warnings reach a webview's console as errors unless its log level is 'error'.
        const ortLogs: string[] = [];
        page.on('console', (m) => { if (/onnxruntime/.test(m.text())) ortLogs.push(`console.${m.type()}: ${m.text()}`); });
        await page.goto(server.url + '/');
        const ready = await page.evaluate(([p, m]) => (globalThis as unknown as { startWorker(p: string, m: string, tok: string): Promise<{ backend: string; info: { layers: number } }> }).startWorker(p, m, 'tokenizer.json'), [prefer, `${model}.onnx`] as const);
        assert.equal(ready.backend, prefer);
        assert.equal(ready.info.layers, 2);
        const node = await loadEngine(path.join(EXAMPLES, `${model}.onnx`));
        try {
          const suitePath = path.join(EXAMPLES, 'induction.suite.yaml');
          const { suite } = parseSuite(suitePath, fs.readFileSync(suitePath, 'utf8'));
          const prompts = resolvePrompts(suite!, node).prompts.slice(0, 24);
          const sets = [[], ['a1.h0', 'a1.h1'], ['a0.h1', 'm0'], ['a0.h0', 'a0.h1', 'a0.h2', 'a0.h3', 'a1.h0', 'a1.h1', 'a1.h2', 'a1.h3', 'm0', 'm1']];
          const ctx = await prepare(node, prompts, 'mean');
          const want = await evaluateSets(ctx, sets as never);
          const params: EvaluateParams = { prompts, meanOver: prompts, ablation: 'mean', sets: sets as NodeId[][] };
          const got = await page.evaluate((p) => (globalThis as unknown as { call(m: string, p: unknown): Promise<Evaluated> }).call('compute/evaluate', p), params);
          want.forEach((w, i) => {
            for (const k of ['logit_diff', 'prob', 'accuracy', 'kl'] as const) {
              const a = got.sets[i]!.metrics[k]!;
              const b = w.metrics[k];
              assert.ok(Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b)), `set ${i} ${k}: webview ${a} vs node ${b}`);
            }
          });
          assert.deepEqual(ortLogs, [], 'onnxruntime logged to the console');
        } finally {
          await node.release();
          await page.close();
        }
      });
    }
  }
});
