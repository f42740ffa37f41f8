// Bench 5: the attribution-graph webview (dist/webview/graph.js + plotly.min.js, as `node esbuild.js` builds
// them) in headless Chromium (bench/src/graph-page.ts), fed a GraphState by a fake acquireVsCodeApi: GPT-2-small's
// edge graph (158 nodes, the 32,491 edges of core/ids.ts allEdges for 12 layers × 12 heads, seeded-random scores)
// and synthetic graphs of ~1k / ~10k nodes with as many edges. Measures time to the first plot and the latency of a
// threshold-slider change, a hover over a node, a click that marks a node and a zoom (each from its input event,
// or for zoom from the relayout call, to the second frame after Plotly finished drawing). With --graph-baseline
// DIR (an older build's dist/webview) both bundles are measured alternately in the same run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { seededRandom } from '../../core/analysis/sweep/stats';
import { allComponentNodes, allEdges, type NodeId } from '../../core/ids';
import type { GraphState } from '../../protocol/graph';
import { launch, serve } from './graph-page';
import { log, ROOT, round, stats, type Stats } from './harness';

export { CHROMIUM } from './graph-page';

const COMPUTE_NONE: GraphState['compute'] = { workerUri: '/missing/worker.js', wasmUri: '/missing/ort.wasm', modelUri: '/missing/model.onnx', prefer: 'wasm', what: 'none' };

function gaussian(r: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

function state(title: string, layers: number, heads: number, nodes: GraphState['nodes'], edges: GraphState['edges']): GraphState {
  return {
    version: 1, title, modelPath: '/bench/model.onnx', suitePath: '/bench/bench.suite.yaml', metric: 'logit_diff', ablation: 'zero',
    method: 'synthetic; edges by seeded-random scores', layers, heads, nodes, edges, prompts: [], meanOver: [], marked: [],
    // The compute worker is not part of this benchmark: its files 404, so the view shows "compute failed".
    compute: COMPUTE_NONE,
  };
}

/** A model's full edge graph (core/ids.ts allEdges: every head's q, k, v input from every earlier node, each MLP
 *  from every earlier node and its layer's heads, the logits from all) with heavy-tailed seeded-random scores. */
export function modelEdgeGraph(layers: number, heads: number, seed = 5): GraphState {
  const r = seededRandom(seed);
  const gauss = gaussian(r);
  const nodes: GraphState['nodes'] = [{ id: 'input', score: 0 }, ...allComponentNodes({ layers, heads }).map((id) => ({ id, score: gauss() * Math.exp(-3 * r()) })), { id: 'logits', score: 0 }];
  const edges = allEdges({ layers, heads }).map((e) => ({ source: e.source as string, target: e.target as string, score: 0.1 * gauss() * Math.exp(-4 * r()) }));
  return state(`${layers} × ${heads} edge graph`, layers, heads, nodes, edges);
}

/** A GraphState with `layers` × `heads` heads, one MLP per layer, input and logits, and `edges` random edges. */
export function syntheticGraph(layers: number, heads: number, edges: number, seed = 3): GraphState {
  const r = seededRandom(seed);
  const gauss = gaussian(r);
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
  return state(`synthetic ${nodes.length} nodes`, layers, heads, nodes, out);
}

interface Render { start: number; resolved: number; painted: number }
type Split = { beforePlotlyMs: number; plotlyReactMs: number; toFrameMs: number };

export interface GraphViewSize {
  name: string;
  /** Which bundle: `current` (dist/webview) or `baseline` (--graph-baseline). */
  bundle: string;
  nodes: number;
  edges: number;
  layers: number;
  heads: number;
  /** From the state message to the frame after the first plot was drawn. */
  firstPlotMs: Stats;
  /** From navigation start (page load, script parse included) to that frame. */
  firstPlotFromNavigationMs: Stats;
  sliderMs: Stats;
  /** From the mousemove onto a node to the second frame after its hover label appeared. */
  hoverMs: Stats;
  hoverMisses: number;
  clickMarkMs: Stats;
  clickMethod: string;
  /** Plotly.relayout of both axes' ranges (what box zoom, the zoom buttons and autoscale do) to its frame. */
  zoomMs: Stats;
  /** Long tasks (> 50 ms main-thread blocks) during the first plot, per page load: longest and total. */
  longestTaskMs: Stats;
  totalLongTasksMs: Stats;
  /** The view's threshold label and edge note at threshold 0 after the first plot. */
  shown: string;
  /** Medians of where an interaction's latency goes: the view's own JS before the Plotly call (for clicks: input
   *  dispatch and Plotly's hit-testing too), the Plotly call until its promise resolves, then to the next frame. */
  split: Partial<Record<'first' | 'slider' | 'click', Split>>;
}

export interface GraphViewResult {
  chromium: string;
  viewport: string;
  /** The machine's 1-minute load average as the section started and ended (other processes share its cores). */
  loadavg?: [number, number];
  cores?: number;
  sizes: GraphViewSize[];
  notes: string[];
}

async function measurePage(page: Page, url: string, g: GraphState, interactions: number, screenshot?: string) {
  await page.goto(url + '/');
  const first = await page.evaluate('window.__nextPaint(0)') as Render;
  const statePosted = await page.evaluate('window.__bench.statePosted') as number;
  await page.waitForTimeout(300); // let trailing work (hover layers, fonts) settle before interacting
  const shown = await page.evaluate(`[document.getElementById('threshold-label')?.textContent, document.getElementById('edge-note')?.textContent].filter(Boolean).join(' | ')`) as string;
  if (screenshot) { fs.mkdirSync(path.dirname(screenshot), { recursive: true }); await page.screenshot({ path: screenshot }); }
  const longTasks = await page.evaluate(`window.__bench.longTasks.filter((t) => t.start <= ${first.painted})`) as { start: number; duration: number }[];
  const slider: number[] = [];
  const split = { slider: [] as number[][], click: [] as number[][] };
  for (let i = 0; i < interactions; i++) {
    const value = [40, 0, 70, 10, 55, 25][i % 6]!;
    const r = await page.evaluate(`(async () => {
      const s = document.getElementById('threshold');
      const t0 = performance.now();
      s.value = '${value}';
      s.dispatchEvent(new Event('input', { bubbles: true }));
      const rec = await window.__nextPaint(t0);
      return { ms: rec.painted - t0, before: rec.start - t0, react: rec.resolved - rec.start, frame: rec.painted - rec.resolved };
    })()`) as { ms: number; before: number; react: number; frame: number };
    slider.push(r.ms);
    split.slider.push([r.before, r.react, r.frame]);
  }
  // Back to threshold 0 so every node is on the plot.
  await page.evaluate(`(async () => { const s = document.getElementById('threshold'); const t0 = performance.now(); s.value = '0'; s.dispatchEvent(new Event('input')); await window.__nextPaint(t0); })()`);
  await page.waitForTimeout(100);
  const nodeAt = (i: number) => ({ id: `a${i % g.layers}.h${(3 * i + 1) % g.heads}`, x: (3 * i + 1) % g.heads, y: 2 * (i % g.layers) + 1 });
  const pixel = async (x: number, y: number) => await page.evaluate(`(() => {
    const gd = document.getElementById('plot');
    const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
    const box = gd.getBoundingClientRect();
    return { x: box.left + xa._offset + xa.l2p(${x}), y: box.top + ya._offset + ya.l2p(${y}), before: document.getElementById('marked-count').textContent };
  })()`) as { x: number; y: number; before: string };
  // Hover: from a point between rows onto a node (real mouse moves; Plotly throttles hover to one per 50 ms).
  const hovers: number[] = [];
  let misses = 0;
  for (let i = 0; i < interactions; i++) {
    const n = nodeAt(i + 1);
    const at = await pixel(n.x, n.y);
    await page.mouse.move(at.x + 40, at.y + 25);
    await page.waitForTimeout(120);
    await page.evaluate(`window.__armHover(${JSON.stringify(n.id)})`);
    await page.mouse.move(at.x, at.y);
    const h = await page.evaluate('window.__hover') as { ms?: number; miss?: boolean };
    if (h.miss || h.ms === undefined) misses++; else hovers.push(h.ms);
  }
  // Clicks: real mouse clicks at the marker, from the mousedown to the second frame after the marked count changed.
  const clicks: number[] = [];
  let method = 'mouse';
  for (let i = 0; i < interactions; i++) {
    const n = nodeAt(i);
    const at = await pixel(n.x, n.y);
    await page.mouse.move(at.x, at.y);
    await page.waitForTimeout(60);
    const t0 = await page.evaluate('window.__armMark(), performance.now()') as number;
    await page.mouse.click(at.x, at.y);
    const r = await page.evaluate('window.__mark') as { painted?: number; miss?: boolean };
    if (r.miss || r.painted === undefined) {
      // The click did not reach a marker: fire Plotly's click event as Plotly would.
      method = 'plotly_click event (mouse click did not hit)';
      const ms = await page.evaluate(`(async () => {
        const gd = document.getElementById('plot');
        window.__armMark();
        const t0 = performance.now();
        gd.emit('plotly_click', { points: [{ customdata: '${n.id}' }] });
        const r = await window.__mark;
        return r.painted - t0;
      })()`) as number;
      clicks.push(ms);
      continue;
    }
    const down = await page.evaluate('window.__bench.lastDown') as number;
    clicks.push(r.painted - down);
    // Where the time went, when the view redrew through Plotly.
    const rec = await page.evaluate(`window.__bench.renders.find((r) => r.start >= ${t0} && r.painted)`) as Render | undefined;
    if (rec) split.click.push([rec.start - down, rec.resolved - rec.start, rec.painted - rec.resolved]);
  }
  // Zoom: into a quarter of the plot, then back out (autorange), alternately.
  const zooms: number[] = [];
  for (let i = 0; i < interactions; i++) {
    const zin = i % 2 === 0;
    const ms = await page.evaluate(`(async () => {
      const gd = document.getElementById('plot');
      const t0 = performance.now();
      ${zin ? `Plotly.relayout(gd, { 'xaxis.range': [${g.heads * 0.25}, ${g.heads * 0.6}], 'yaxis.range': [${g.layers * 0.5}, ${g.layers * 1.2}] });`
    : `Plotly.relayout(gd, { 'xaxis.autorange': true, 'yaxis.autorange': true });`}
      const rec = await window.__nextPaint(t0);
      return rec.painted - t0;
    })()`) as number;
    zooms.push(ms);
  }
  const firstSplit = [first.start - statePosted, first.resolved - first.start, first.painted - first.resolved];
  return { firstPlot: first.painted - statePosted, fromNav: first.painted, longTasks, slider, hovers, misses, clicks, zooms, method, shown, split, firstSplit };
}

function splitOf(rows: number[][]): Split | undefined {
  if (!rows.length) return undefined;
  const med = (i: number) => round(stats(rows.map((r) => r[i]!)).median, 1);
  return { beforePlotlyMs: med(0), plotlyReactMs: med(1), toFrameMs: med(2) };
}

export interface GraphViewOptions {
  reps: number;
  interactions: number;
  /** An older build's dist/webview (graph.js, optionally plotly.min.js), measured alternately with the current one. */
  baseline?: string;
  /** Where to save a screenshot of GPT-2-small's edge graph as the current bundle first draws it. */
  screenshot?: string;
  /** Some of the graphs by key: gpt2, 1k, 10k (default: all). */
  graphs?: string[];
}

export async function graphViewBench(opts: GraphViewOptions): Promise<GraphViewResult> {
  log('\n[graph view] headless Chromium: GPT-2-small edge graph and synthetic attribution graphs');
  for (const f of ['graph.js', 'plotly.min.js']) {
    if (!fs.existsSync(path.join(ROOT, 'dist', 'webview', f))) throw new Error(`dist/webview/${f} is missing: run \`node esbuild.js\` first`);
  }
  if (opts.baseline && !fs.existsSync(path.join(opts.baseline, 'graph.js'))) throw new Error(`--graph-baseline: no graph.js in ${opts.baseline}`);
  const graphs = [
    { key: 'gpt2', name: 'GPT-2-small edges (12 × 12)', g: modelEdgeGraph(12, 12) },
    // ~1k nodes: 20 layers × 49 heads (+ MLPs, input, logits) = 1002; ~10k: 100 × 99 = 10002; as many edges.
    { key: '1k', name: 'synthetic ~1k', g: syntheticGraph(20, 49, 1002) },
    { key: '10k', name: 'synthetic ~10k', g: syntheticGraph(100, 99, 10002) },
  ].filter((g) => !opts.graphs || opts.graphs.includes(g.key));
  const bundles = [{ name: 'current', dir: path.join(ROOT, 'dist', 'webview') }, ...(opts.baseline ? [{ name: 'baseline', dir: path.resolve(opts.baseline) }] : [])];
  const cases = graphs.flatMap((g) => bundles.map((b) => ({ ...g, bundle: b })));
  const load0 = os.loadavg()[0]!;
  const browser: Browser = await launch();
  const version = browser.version();
  const servers = await Promise.all(cases.map((c) => serve(c.g, c.bundle.dir)));
  const raw = cases.map(() => ({ split: { first: [] as number[][], slider: [] as number[][], click: [] as number[][] }, first: [] as number[], nav: [] as number[], slider: [] as number[], hovers: [] as number[], misses: 0, clicks: [] as number[], zooms: [] as number[], longest: [] as number[], total: [] as number[], method: 'mouse', shown: '' }));
  let shot = opts.screenshot;
  try {
    for (let r = 0; r < opts.reps; r++) {
      // Alternate the cases (and their order) from one round to the next.
      const order = cases.map((_, i) => (i + r) % cases.length);
      for (const i of order) {
        const c = cases[i]!;
        const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
        const take = shot && c.bundle.name === 'current' && c.g.edges.length > 30000 ? shot : undefined;
        if (take) shot = undefined;
        let m: Awaited<ReturnType<typeof measurePage>>;
        try { m = await measurePage(page, servers[i]!.url, c.g, opts.interactions, take); } finally { await page.close(); }
        const x = raw[i]!;
        x.first.push(m.firstPlot); x.nav.push(m.fromNav); x.slider.push(...m.slider); x.hovers.push(...m.hovers); x.misses += m.misses; x.clicks.push(...m.clicks); x.zooms.push(...m.zooms);
        x.longest.push(Math.max(0, ...m.longTasks.map((t) => t.duration))); x.total.push(m.longTasks.reduce((s, t) => s + t.duration, 0));
        if (m.method !== 'mouse') x.method = m.method;
        x.shown = m.shown;
        x.split.first.push(m.firstSplit);
        x.split.slider.push(...m.split.slider);
        x.split.click.push(...m.split.click);
        const med = (a: number[]) => (a.length ? stats(a).median.toFixed(0) : '—');
        log(`  ${c.name} [${c.bundle.name}]: first plot ${m.firstPlot.toFixed(0)} ms, slider ${med(m.slider)}, hover ${med(m.hovers)}${m.misses ? ` (${m.misses} missed)` : ''}, click ${med(m.clicks)}, zoom ${med(m.zooms)} ms`);
      }
    }
  } finally {
    await browser.close();
    for (const s of servers) await s.close();
  }
  return {
    chromium: version, viewport: '1280×800', loadavg: [round(load0, 2), round(os.loadavg()[0]!, 2)], cores: os.cpus().length,
    sizes: cases.map((c, i) => {
      const x = raw[i]!;
      return {
        name: c.name, bundle: c.bundle.name, nodes: c.g.nodes.length, edges: c.g.edges.length, layers: c.g.layers, heads: c.g.heads,
        firstPlotMs: stats(x.first), firstPlotFromNavigationMs: stats(x.nav), sliderMs: stats(x.slider), hoverMs: stats(x.hovers), hoverMisses: x.misses,
        clickMarkMs: stats(x.clicks), clickMethod: x.method, zoomMs: stats(x.zooms),
        longestTaskMs: stats(x.longest), totalLongTasksMs: stats(x.total), shown: x.shown,
        split: { first: splitOf(x.split.first), slider: splitOf(x.split.slider), click: splitOf(x.split.click) },
      };
    }),
    notes: [
      'Headless Chromium has no GPU here: WebGL runs on SwiftShader (software), so WebGL numbers are pessimistic for a desktop with a GPU.',
      'GPT-2-small\'s edge graph is the real layout (core/ids.ts allEdges for 12 layers × 12 heads: 158 nodes, 32,491 edges) with seeded-random heavy-tailed scores, not attribution scores of a real model.',
      'The compute worker is not started (its files 404): only drawing and interaction are timed.',
      `Latencies run from the input event (zoom: the Plotly.relayout call) to the second animation frame after Plotly resolved (hover: after the label appeared); ${round(opts.interactions)} of each per page load.`,
    ],
  };
}
