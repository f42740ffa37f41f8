// The graph view's controls survive a reload of the webview: the built bundle (dist/webview/graph.js) in Chromium
// with a stand-in for VS Code's webview API whose saved state outlives the page (sessionStorage), as VS Code's does.
// After a reload the host sends either the state the view saved (the panel serializer, after a window reload) or
// its own state without the view's controls (a webview reloaded while its panel lived on).
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import type { GraphState } from '../../protocol/graph';
import { ROOT } from '../helpers';
import { CHROMIUM, launchChromium, serveFiles } from './chromium';

const BUNDLE = path.join(ROOT, 'dist', 'webview', 'graph.js');
const skip = !fs.existsSync(CHROMIUM) ? `Chromium not found at ${CHROMIUM} (apt-get install chromium)`
  : !fs.existsSync(BUNDLE) ? 'dist/webview/graph.js is missing: run node esbuild.js' : false;

/** 6 layers of 6 heads, every edge from a lower node to a higher one (thousands), all within 2× of the strongest. */
function graph(): GraphState {
  const layers = 6;
  const heads = 6;
  const comp = Array.from({ length: layers }, (_, l) => [...Array.from({ length: heads }, (_, h) => `a${l}.h${h}`), `m${l}`]);
  const ids = ['input', ...comp.flat(), 'logits'];
  const rank = (id: string) => (id === 'input' ? -1 : id === 'logits' ? layers : Number(/^[am](\d+)/.exec(id)![1]));
  const edges: GraphState['edges'] = [];
  let k = 0;
  for (const source of ids) {
    for (const target of ids) {
      if (rank(target) <= rank(source)) continue;
      const targets = target.startsWith('a') ? ['q', 'k', 'v'].map((x) => `${target}<${x}>`) : [target];
      for (const t of targets) edges.push({ source, target: t, score: (k++ % 2 ? -1 : 1) * (0.5 + ((k * 37) % 101) / 202) });
    }
  }
  return {
    version: 1, title: 'graph', modelPath: '/m.onnx', suitePath: '/s.suite.yaml', metric: 'logit_diff', ablation: 'mean', method: 'test; edges by score',
    layers, heads, nodes: ids.map((id, i) => ({ id: id as GraphState['nodes'][number]['id'], score: id === 'input' || id === 'logits' ? 0 : ((i % 5) - 2) / 2 })),
    edges, prompts: [], meanOver: [], marked: [],
    compute: { workerUri: '/none.js', wasmUri: '/none.wasm', modelUri: '/none.onnx', prefer: 'wasm', what: 'none' },
  };
}

/** The view's page; `?host=saved`: on ready the host sends the saved state, `?host=own`: the state it was given. */
const PAGE = `<!doctype html><html><head><link href="/webview.css" rel="stylesheet"></head>
<body data-view="graph"><div id="app" role="main"></div>
<script>
const saved = JSON.parse(sessionStorage.getItem('saved') || 'null');
const host = new URLSearchParams(location.search).get('host');
window.acquireVsCodeApi = () => ({
  postMessage(m) {
    if (m.t !== 'ready') return;
    fetch('/state.json').then((r) => r.json()).then((own) => window.postMessage({ t: 'state', state: host === 'saved' && saved ? saved : own }, '*'));
  },
  getState() { return saved ?? undefined; },
  setState(s) { sessionStorage.setItem('saved', JSON.stringify(s)); },
});
</script>
<script src="/plotly.min.js"></script><script src="/graph.js"></script></body></html>`;

describe('graph view state across a reload', { skip }, () => {
  let browser: Browser;
  let server: Awaited<ReturnType<typeof serveFiles>>;
  const state = graph();
  before(async () => {
    server = await serveFiles({
      '/graph.js': BUNDLE, '/plotly.min.js': path.join(ROOT, 'dist', 'webview', 'plotly.min.js'), '/webview.css': path.join(ROOT, 'media', 'webview.css'),
    }, { '/': PAGE, '/state.json': JSON.stringify(state) });
    browser = await launchChromium();
  });
  after(async () => { await browser?.close(); await server?.close(); });

  // Page-side code as text: these tests are compiled without the DOM's types.
  const note = (page: Page) => page.locator('#edge-note').textContent();
  const waitNote = (page: Page, text: RegExp) => page.waitForFunction(`${text}.test(document.getElementById('edge-note')?.textContent ?? '')`, undefined, { timeout: 30_000 });

  for (const host of ['saved', 'own'] as const) {
    test(`the edge cap chosen is kept (host sends ${host === 'saved' ? 'the saved state' : 'its own state'})`, async () => {
      assert.ok(state.edges.length > 1000, `${state.edges.length} edges`);
      const page = await browser.newPage();
      try {
        await page.goto(`${server.url}/?host=${host}`);
        await waitNote(page, /^Showing 300 of /);
        // What the select does when an option is picked: its value changes and it fires `change`.
        await page.evaluate(`{ const sel = document.getElementById('edge-cap'); sel.value = '1000'; sel.dispatchEvent(new Event('change')); }`);
        await waitNote(page, /^Showing 1,000 of /);
        await page.waitForFunction(`JSON.parse(sessionStorage.getItem('saved') ?? '{}').edgeCap === 1000`, undefined, { timeout: 5000 });
        await page.reload();
        await waitNote(page, /^Showing /);
        assert.match((await note(page))!, /^Showing 1,000 of /);
        assert.equal(await page.evaluate(`document.getElementById('edge-cap').value`), '1000');
      } finally {
        await page.close();
      }
    });

    test(`the score threshold chosen is kept (host sends ${host === 'saved' ? 'the saved state' : 'its own state'})`, async () => {
      const page = await browser.newPage();
      try {
        await page.goto(`${server.url}/?host=${host}`);
        await waitNote(page, /^Showing /);
        const label = () => page.locator('#threshold-label').textContent();
        assert.match((await label())!, /^0\.000 \(/);
        // What dragging the slider does: its value changes and it fires `input`.
        await page.evaluate(`{ const s = document.getElementById('threshold'); s.value = '40'; s.dispatchEvent(new Event('input')); }`);
        await page.waitForFunction(`!/^0\\.000 /.test(document.getElementById('threshold-label')?.textContent ?? '')`, undefined, { timeout: 5000 });
        const hidden = await label();
        assert.match(hidden!, /^0\.400 \(\d+ of 44 nodes/, 'the cut is 40 % of the largest |score| (1)');
        await page.waitForFunction(`JSON.parse(sessionStorage.getItem('saved') ?? '{}').threshold === 40`, undefined, { timeout: 5000 });
        await page.reload();
        await waitNote(page, /^Showing /);
        assert.equal(await page.evaluate(`document.getElementById('threshold').value`), '40');
        assert.equal(await label(), hidden, 'the same nodes and edges shown after the reload');
      } finally {
        await page.close();
      }
    });
  }
});
