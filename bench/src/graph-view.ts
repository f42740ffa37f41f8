// Bench 5: the attribution-graph webview (dist/webview/graph.js + plotly.min.js, as `node esbuild.js` builds
// them) in headless Chromium, fed a synthetic GraphState of ~1k / ~10k nodes and as many edges by a fake
// acquireVsCodeApi. Measures time to the first plot, and the latency of a threshold-slider change and of a
// click that marks a node (from the input event to the frame after Plotly finished drawing).
import { seededRandom } from '../../core/analysis/sweep/stats';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { GraphState } from '../../protocol/graph';
import type { NodeId } from '../../core/ids';
import { log, ROOT, round, stats, type Stats } from './harness';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The launch flags of test/browser/chromium.ts (headless, offline, WebGL/WebGPU on SwiftShader: no GPU here). */
async function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu-sandbox', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader', '--use-webgpu-adapter=swiftshader'],
  });
}

/** A GraphState with `layers` × `heads` heads, one MLP per layer, input and logits, and `edges` edges. */
export function syntheticGraph(layers: number, heads: number, edges: number, seed = 3): GraphState {
  const r = seededRandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const nodes: GraphState['nodes'] = [{ id: 'input', score: 0 }];
  for (let l = 0; l < layers; l++) {
    for (let h = 0; h < heads; h++) nodes.push({ id: `a${l}.h${h}` as NodeId, score: gauss() * Math.exp(-3 * r()) });
    nodes.push({ id: `m${l}` as NodeId, score: gauss() * Math.exp(-3 * r()) });
  }
  nodes.push({ id: 'logits', score: 0 });
  const comp = nodes.slice(1, -1).map((n) => n.id);
  const layerOf = (id: string) => Number(/^[am](\d+)/.exec(id)![1]);
  const out: GraphState['edges'] = [];
  while (out.length < edges) {
    const src = r() < 0.05 ? 'input' : comp[Math.floor(r() * comp.length)]!;
    const dstPick = r();
    let target: string;
    if (dstPick < 0.05) target = 'logits';
    else {
      const dst = comp[Math.floor(r() * comp.length)]!;
      if (src !== 'input' && layerOf(dst) <= layerOf(src)) continue;
      target = dst.startsWith('a') ? `${dst}<${'qkv'[Math.floor(r() * 3)]}>` : dst;
    }
    out.push({ source: src, target, score: gauss() * 0.1 });
  }
  return {
    version: 1, title: `synthetic ${nodes.length} nodes`, modelPath: '/bench/model.onnx', suitePath: '/bench/bench.suite.yaml', metric: 'logit_diff', ablation: 'zero',
    method: 'synthetic', layers, heads, nodes, edges: out, prompts: [], meanOver: [], marked: [],
    // The compute worker is not part of this benchmark: its files 404, so the view shows "compute failed".
    compute: { workerUri: '/missing/worker.js', wasmUri: '/missing/ort.wasm', modelUri: '/missing/model.onnx', prefer: 'wasm', what: 'none' },
  };
}

const PAGE = `<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8">
<link href="/media/webview.css" rel="stylesheet"><link href="/dist/webview/codicon.css" rel="stylesheet">
<title>graph bench</title></head>
<body data-view="graph"><div id="app" role="main"><p class="muted">Loading…</p></div>
<script>
window.__bench = { renders: [], longTasks: [], posted: [], setState: 0, waiters: [] };
try {
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__bench.longTasks.push({ start: e.startTime, duration: e.duration }); })
    .observe({ type: 'longtask', buffered: true });
} catch (e) { window.__bench.noLongTasks = String(e); }
window.acquireVsCodeApi = () => ({
  postMessage(m) {
    window.__bench.posted.push(m.t);
    if (m.t === 'ready') fetch('/state.json').then((r) => r.json()).then((state) => {
      window.__bench.statePosted = performance.now();
      window.postMessage({ t: 'state', state }, '*');
    });
  },
  getState() { return undefined; },
  setState() { window.__bench.setState++; },
});
</script>
<script src="/dist/webview/plotly.min.js"></script>
<script>
(() => {
  // The view redraws with Plotly.react and, for marks, restyles the node trace only: time both.
  const wrap = (name) => {
  const orig = Plotly[name];
  Plotly[name] = function (...args) {
    const rec = { start: performance.now(), method: name };
    window.__bench.renders.push(rec);
    const p = orig.apply(this, args);
    p.then(() => {
      rec.resolved = performance.now();
      requestAnimationFrame(() => requestAnimationFrame(() => {
        rec.painted = performance.now();
        const ws = window.__bench.waiters; window.__bench.waiters = [];
        for (const w of ws) w(rec);
      }));
    });
    return p;
  };
  };
  wrap('react');
  wrap('restyle');
  window.__nextPaint = (after) => new Promise((res) => {
    const done = window.__bench.renders.find((r) => r.start >= after && r.painted);
    if (done) return res(done);
    const wait = (rec) => (rec.start >= after ? res(rec) : window.__bench.waiters.push(wait));
    window.__bench.waiters.push(wait);
  });
})();
</script>
<script src="/dist/webview/graph.js"></script>
</body></html>`;

async function serve(state: GraphState): Promise<{ url: string; close(): Promise<void> }> {
  const files: Record<string, string> = {
    '/dist/webview/graph.js': path.join(ROOT, 'dist', 'webview', 'graph.js'),
    '/dist/webview/plotly.min.js': path.join(ROOT, 'dist', 'webview', 'plotly.min.js'),
    '/dist/webview/codicon.css': path.join(ROOT, 'dist', 'webview', 'codicon.css'),
    '/dist/webview/codicon.ttf': path.join(ROOT, 'dist', 'webview', 'codicon.ttf'),
    '/media/webview.css': path.join(ROOT, 'media', 'webview.css'),
  };
  const json = JSON.stringify(state);
  const type = (p: string) => (p.endsWith('.js') ? 'text/javascript' : p.endsWith('.css') ? 'text/css' : p.endsWith('.json') ? 'application/json' : 'application/octet-stream');
  const server = http.createServer((req, res) => {
    const p = (req.url ?? '/').split('?')[0]!;
    if (p === '/') { res.writeHead(200, { 'content-type': 'text/html' }); res.end(PAGE); return; }
    if (p === '/state.json') { res.writeHead(200, { 'content-type': type(p) }); res.end(json); return; }
    const f = files[p];
    if (!f || !fs.existsSync(f)) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': type(p) });
    fs.createReadStream(f).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}

interface Render { start: number; resolved: number; painted: number }

export interface GraphViewSize {
  nodes: number;
  edges: number;
  layers: number;
  heads: number;
  trace: string;
  /** From the state message to the frame after the first plot was drawn. */
  firstPlotMs: Stats;
  /** From navigation start (page load, script parse included) to that frame. */
  firstPlotFromNavigationMs: Stats;
  sliderMs: Stats;
  clickMarkMs: Stats;
  clickMethod: string;
  /** Long tasks (> 50 ms main-thread blocks) during the first plot, per page load: longest and total. */
  longestTaskMs: Stats;
  totalLongTasksMs: Stats;
  visibleAfterSlider: string;
  /** Medians of where an interaction's latency goes: render()'s own JS before Plotly.react (for clicks: input
   *  dispatch and Plotly's hit-testing too), Plotly.react until its promise resolves, then to the next frame. */
  split: Record<'first' | 'slider' | 'click', { beforePlotlyMs: number; plotlyReactMs: number; toFrameMs: number }>;
}

export interface GraphViewResult { chromium: string; viewport: string; sizes: GraphViewSize[]; notes: string[] }

async function measurePage(browser: Browser, url: string, state: GraphState, interactions: number) {
  const page: Page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  try {
    await page.goto(url + '/');
    const first = await page.evaluate('window.__nextPaint(0)') as Render;
    const statePosted = await page.evaluate('window.__bench.statePosted') as number;
    await page.waitForTimeout(300); // let trailing work (hover layers, fonts) settle before interacting
    const longTasks = await page.evaluate(`window.__bench.longTasks.filter((t) => t.start <= ${first.painted})`) as { start: number; duration: number }[];
    const slider: number[] = [];
    const split = { slider: [] as number[][], click: [] as number[][] };
    let visible = '';
    for (let i = 0; i < interactions; i++) {
      const value = [40, 0, 70, 10, 55, 25][i % 6]!;
      const r = await page.evaluate(`(async () => {
        const s = document.getElementById('threshold');
        const t0 = performance.now();
        s.value = '${value}';
        s.dispatchEvent(new Event('input', { bubbles: true }));
        const rec = await window.__nextPaint(t0);
        return { ms: rec.painted - t0, before: rec.start - t0, react: rec.resolved - rec.start, frame: rec.painted - rec.resolved, label: document.getElementById('threshold-label').textContent };
      })()`) as { ms: number; before: number; react: number; frame: number; label: string };
      slider.push(r.ms);
      split.slider.push([r.before, r.react, r.frame]);
      if (value === 40) visible = r.label;
    }
    // Back to threshold 0 so every node is on the plot, then click nodes (real mouse clicks at the marker).
    await page.evaluate(`(async () => { const s = document.getElementById('threshold'); const t0 = performance.now(); s.value = '0'; s.dispatchEvent(new Event('input')); await window.__nextPaint(t0); })()`);
    const clicks: number[] = [];
    let method = 'mouse';
    for (let i = 0; i < interactions; i++) {
      const id = `a${i % state.layers}.h${(3 * i + 1) % state.heads}`;
      const x = (3 * i + 1) % state.heads;
      const y = 2 * (i % state.layers) + 1;
      const at = await page.evaluate(`(() => {
        const gd = document.getElementById('plot');
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        const box = gd.getBoundingClientRect();
        return { x: box.left + xa._offset + xa.l2p(${x}), y: box.top + ya._offset + ya.l2p(${y}), before: document.getElementById('marked-count').textContent };
      })()`) as { x: number; y: number; before: string };
      await page.mouse.move(at.x, at.y);
      await page.waitForTimeout(60);
      const t0 = await page.evaluate('performance.now()') as number;
      await page.mouse.click(at.x, at.y);
      const rec = await Promise.race([
        page.evaluate(`window.__nextPaint(${t0})`) as Promise<Render>,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 10000)),
      ]);
      const after = await page.evaluate(`document.getElementById('marked-count').textContent`) as string;
      if (!rec || after === at.before) {
        // The click did not reach a marker (e.g. WebGL hit-testing): fire Plotly's click event as Plotly would.
        method = 'plotly_click event (mouse click did not hit)';
        const r = await page.evaluate(`(async () => {
          const gd = document.getElementById('plot');
          const t0 = performance.now();
          gd.emit('plotly_click', { points: [{ customdata: '${id}' }] });
          const rec = await window.__nextPaint(t0);
          return { ms: rec.painted - t0 };
        })()`) as { ms: number };
        clicks.push(r.ms);
        continue;
      }
      clicks.push(rec.painted - t0);
      split.click.push([rec.start - t0, rec.resolved - rec.start, rec.painted - rec.resolved]);
    }
    const firstSplit = [first.start - statePosted, first.resolved - first.start, first.painted - first.resolved];
    return { firstPlot: first.painted - statePosted, fromNav: first.painted, longTasks, slider, clicks, method, visible, split, firstSplit };
  } finally {
    await page.close();
  }
}

function splitOf(rows: number[][]): { beforePlotlyMs: number; plotlyReactMs: number; toFrameMs: number } {
  const med = (i: number) => round(stats(rows.map((r) => r[i]!)).median, 1);
  return { beforePlotlyMs: med(0), plotlyReactMs: med(1), toFrameMs: med(2) };
}

export async function graphViewBench(opts: { reps: number; interactions: number; sizes: { layers: number; heads: number }[] }): Promise<GraphViewResult> {
  log('\n[graph view] headless Chromium, synthetic attribution graphs');
  for (const f of ['graph.js', 'plotly.min.js']) {
    if (!fs.existsSync(path.join(ROOT, 'dist', 'webview', f))) throw new Error(`dist/webview/${f} is missing: run \`node esbuild.js\` first`);
  }
  const browser = await launch();
  const version = browser.version();
  const graphs = opts.sizes.map(({ layers, heads }) => { const n = layers * (heads + 1) + 2; return syntheticGraph(layers, heads, n); });
  const servers = await Promise.all(graphs.map((g) => serve(g)));
  const raw = graphs.map(() => ({ split: { first: [] as number[][], slider: [] as number[][], click: [] as number[][] }, first: [] as number[], nav: [] as number[], slider: [] as number[], clicks: [] as number[], longest: [] as number[], total: [] as number[], method: 'mouse', visible: '' }));
  try {
    for (let r = 0; r < opts.reps; r++) {
      // Alternate the sizes (and their order) from one round to the next.
      const order = graphs.map((_, i) => (i + r) % graphs.length);
      for (const i of order) {
        const m = await measurePage(browser, servers[i]!.url, graphs[i]!, opts.interactions);
        const x = raw[i]!;
        x.first.push(m.firstPlot); x.nav.push(m.fromNav); x.slider.push(...m.slider); x.clicks.push(...m.clicks);
        x.longest.push(Math.max(0, ...m.longTasks.map((t) => t.duration))); x.total.push(m.longTasks.reduce((s, t) => s + t.duration, 0));
        if (m.method !== 'mouse') x.method = m.method;
        x.visible = m.visible;
        x.split.first.push(m.firstSplit);
        x.split.slider.push(...m.split.slider);
        x.split.click.push(...m.split.click);
        log(`  ${graphs[i]!.nodes.length} nodes: first plot ${m.firstPlot.toFixed(0)} ms (${m.fromNav.toFixed(0)} ms from navigation), slider ${stats(m.slider).median.toFixed(0)} ms, click ${stats(m.clicks).median.toFixed(0)} ms`);
      }
    }
  } finally {
    await browser.close();
    for (const s of servers) await s.close();
  }
  return {
    chromium: version, viewport: '1280×800',
    sizes: graphs.map((g, i) => {
      const x = raw[i]!;
      return {
        nodes: g.nodes.length, edges: g.edges.length, layers: g.layers, heads: g.heads, trace: g.nodes.length > 2000 ? 'scattergl (WebGL, SwiftShader here)' : 'scatter (SVG)',
        firstPlotMs: stats(x.first), firstPlotFromNavigationMs: stats(x.nav), sliderMs: stats(x.slider), clickMarkMs: stats(x.clicks), clickMethod: x.method,
        longestTaskMs: stats(x.longest), totalLongTasksMs: stats(x.total), visibleAfterSlider: x.visible,
        split: {
          first: splitOf(x.split.first),
          slider: splitOf(x.split.slider),
          click: splitOf(x.split.click),
        },
      };
    }),
    notes: [
      'Headless Chromium has no GPU here: WebGL (scattergl, used above 2000 nodes) runs on SwiftShader, so 10k-node numbers are pessimistic for a desktop with a GPU.',
      'The compute worker is not started (its files 404): only drawing and interaction are timed.',
      `Latencies run from the input event to the second animation frame after Plotly.react resolved; ${round(opts.interactions)} slider changes and clicks per page load.`,
    ],
  };
}
