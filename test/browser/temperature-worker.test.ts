// The attention view's softmax-temperature sweep (compute/temperature) in the webview compute worker, in real
// Chromium on WASM and WebGPU: the head's patterns and the scores at each τ equal the Node engine's.
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { sweepPrompt } from '../../core/analysis/attention/temperature';
import { DEFAULT_TEMPERATURES } from '../../core/analysis/attention/stats';
import { loadEngine } from '../../core/nodejs/load';
import type { TemperatureParams, TemperatureSwept } from '../../protocol/compute';
import { EXAMPLES } from '../helpers';
import { launchChromium, serveWorker, CHROMIUM } from './chromium';

const skip = fs.existsSync(CHROMIUM) ? false : `Chromium not found at ${CHROMIUM} (apt-get install chromium)`;

describe('softmax temperature in the webview compute worker', { skip }, () => {
  let browser: Browser;
  let server: Awaited<ReturnType<typeof serveWorker>>;
  before(async () => {
    server = await serveWorker({
      '/tokenizer.json': path.join(EXAMPLES, 'tokenizer.json'),
      '/induction-llama.onnx': path.join(EXAMPLES, 'induction-llama.onnx'),
    });
    browser = await launchChromium();
  });
  after(async () => { await browser?.close(); await server?.close(); });

  for (const prefer of ['wasm', 'webgpu'] as const) {
    test(`induction-llama on ${prefer}: patterns and scores at each τ equal the Node engine's`, async () => {
      const page: Page = await browser.newPage();
      await page.goto(server.url + '/');
      const ready = await page.evaluate(([p, m]) => (globalThis as unknown as { startWorker(p: string, m: string, tok: string): Promise<{ backend: string }> }).startWorker(p, m, 'tokenizer.json'), [prefer, 'induction-llama.onnx'] as const);
      assert.equal(ready.backend, prefer);
      const node = await loadEngine(path.join(EXAMPLES, 'induction-llama.onnx'));
      try {
        const ids = node.tokenizer!.encode('Mary walked garden red apple dog Mary walked garden red');
        const params: TemperatureParams = { ids, head: 'a1.h2', temperatures: DEFAULT_TEMPERATURES };
        const want = await sweepPrompt(node, ids, params.head, params.temperatures);
        const got = await page.evaluate((p) => (globalThis as unknown as { call(m: string, p: unknown): Promise<TemperatureSwept> }).call('compute/temperature', p), params);
        assert.deepEqual(got.patterns.dims, want.patterns.dims);
        const data = Object.values(got.patterns.data as unknown as Record<string, number>);
        let worst = 0;
        data.forEach((x, i) => { worst = Math.max(worst, Math.abs(x - want.patterns.data[i]!)); });
        assert.ok(worst < 1e-4, `patterns: max diff ${worst}`);
        assert.equal(got.target, want.target);
        got.scores.forEach((s, i) => {
          assert.equal(s.top1, want.scores[i]!.top1);
          assert.ok(Math.abs(s.prob - want.scores[i]!.prob) < 1e-4, `τ=${DEFAULT_TEMPERATURES[i]} prob ${s.prob} vs ${want.scores[i]!.prob}`);
        });
        // τ = 2 flattens the head: its pattern moves.
        const T = ids.length;
        const at = (k: number) => want.patterns.data.subarray(k * T * T, (k + 1) * T * T);
        assert.ok(at(4).some((x, i) => Math.abs(x - at(2)[i]!) > 1e-3));
      } finally {
        await node.release();
        await page.close();
      }
    });
  }
});
