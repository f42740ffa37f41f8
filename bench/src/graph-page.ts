// The page the graph-view benchmark (bench/src/graph-view.ts) loads in headless Chromium: the webview bundle
// (graph.js + plotly.min.js, as `node esbuild.js` builds them into dist/webview/, or an older build given by
// --graph-baseline) with a fake acquireVsCodeApi that posts a GraphState, and hooks that time Plotly's redraws and
// the hover label.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser } from 'playwright-core';
import type { GraphState } from '../../protocol/graph';
import { launchChromium, serveFiles } from '../../test/browser/chromium';
import { ROOT } from './harness';

export { CHROMIUM } from '../../test/browser/chromium';

/** The browser tests' Chromium (test/browser/chromium.ts), with WebGL on SwiftShader too (the view's scattergl). */
export function launch(): Promise<Browser> {
  return launchChromium(['--enable-unsafe-swiftshader']);
}

const PAGE = `<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8">
<link href="/media/webview.css" rel="stylesheet"><link href="/dist/webview/codicon.css" rel="stylesheet">
<title>graph bench</title></head>
<body data-view="graph"><div id="app" role="main"><p class="muted">Loading…</p></div>
<script>
window.__bench = { renders: [], longTasks: [], posted: [], setState: 0, waiters: [], lastMove: 0 };
try {
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__bench.longTasks.push({ start: e.startTime, duration: e.duration }); })
    .observe({ type: 'longtask', buffered: true });
} catch (e) { window.__bench.noLongTasks = String(e); }
// The input event a hover starts from (its timeStamp: when the browser created it).
window.addEventListener('mousemove', (e) => { window.__bench.lastMove = e.timeStamp; }, true);
window.addEventListener('mousedown', (e) => { window.__bench.lastDown = e.timeStamp; }, true);
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
  // The view redraws with Plotly.react and restyles for marks; zoom is a relayout: time each to its frame.
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
  wrap('relayout');
  window.__nextPaint = (after) => new Promise((res) => {
    const done = window.__bench.renders.find((r) => r.start >= after && r.painted);
    if (done) return res(done);
    const wait = (rec) => (rec.start >= after ? res(rec) : window.__bench.waiters.push(wait));
    window.__bench.waiters.push(wait);
  });
  // Arms a wait for the marked count to change (a click marked a node): resolves at the second frame after, with
  // the time from the mousedown (or from \`from\`, a performance.now() value).
  window.__armMark = () => {
    window.__mark = new Promise((res) => {
      const el = document.getElementById('marked-count');
      const before = el.textContent;
      const obs = new MutationObserver(() => {
        if (el.textContent === before) return;
        obs.disconnect(); clearTimeout(timer);
        requestAnimationFrame(() => requestAnimationFrame(() => res({ painted: performance.now() })));
      });
      obs.observe(el, { subtree: true, childList: true, characterData: true });
      const timer = setTimeout(() => { obs.disconnect(); res({ miss: true }); }, 3000);
    });
  };
  // Arms a wait for the hover label naming \`id\`: resolves at the second frame after it appeared, with the time
  // from the mousemove event that caused it.
  window.__armHover = (id) => {
    window.__hover = new Promise((res) => {
      const plot = document.getElementById('plot');
      let seen = false;
      const check = () => {
        if (seen) return;
        const labels = [...plot.querySelectorAll('.hoverlayer .hovertext')].map((e) => e.textContent);
        if (!labels.some((t) => t.includes(id))) return;
        seen = true;
        obs.disconnect(); clearTimeout(timer);
        const shown = performance.now();
        requestAnimationFrame(() => requestAnimationFrame(() => res({ ms: performance.now() - window.__bench.lastMove, shownMs: shown - window.__bench.lastMove })));
      };
      const obs = new MutationObserver(check);
      obs.observe(plot, { subtree: true, childList: true, characterData: true });
      const timer = setTimeout(() => { obs.disconnect(); res({ miss: true }); }, 3000);
    });
  };
})();
</script>
<script src="/dist/webview/graph.js"></script>
</body></html>`;

/** Serves the page, `state` and the bundle: graph.js (and plotly.min.js, when there) from `bundle`, the rest from dist/. */
export function serve(state: GraphState, bundle = path.join(ROOT, 'dist', 'webview')): ReturnType<typeof serveFiles> {
  const dist = path.join(ROOT, 'dist', 'webview');
  const pick = (f: string) => (fs.existsSync(path.join(bundle, f)) ? path.join(bundle, f) : path.join(dist, f));
  return serveFiles({
    '/dist/webview/graph.js': pick('graph.js'),
    '/dist/webview/plotly.min.js': pick('plotly.min.js'),
    '/dist/webview/codicon.css': path.join(dist, 'codicon.css'),
    '/dist/webview/codicon.ttf': path.join(dist, 'codicon.ttf'),
    '/media/webview.css': path.join(ROOT, 'media', 'webview.css'),
  }, { '/': PAGE, '/state.json': JSON.stringify(state) });
}
