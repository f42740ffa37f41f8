// Attribution graph: nodes by layer (input at the bottom, logits at the top), size by score, edges by sign and
// score; click or box/lasso select to mark; "Ablate marked" re-runs the suite in the compute worker.
import type { GraphState, GraphToHost, GraphToView } from '../../protocol/graph';
import { parseNodeId, splitEdgeTarget, type NodeId } from '../../core/ids';
import { faithfulness, type SuiteMetrics } from '../../core/analysis/metrics';
import { METRICS, type MetricName } from '../../core/vocabulary';
import type { Change } from '../../core/analysis/compare/change';
import { Compute } from '../common/compute-client';
import { circuitRings, diffColors, diffEdges, diffNodes, diffSummary } from './diff';
import { el, hostApi, themeColor } from '../common/vscode-api';
import '@vscode-elements/elements/dist/vscode-button/index.js';

declare const Plotly: {
  react(div: HTMLElement, data: unknown[], layout: unknown, config: unknown): Promise<void>;
  restyle(div: HTMLElement, update: Record<string, unknown>, traces: number[]): Promise<void>;
};

interface PlotlyDiv extends HTMLDivElement {
  on(event: string, cb: (e: { points?: { customdata?: string }[] }) => void): void;
}

const vscode = hostApi<GraphToHost, GraphState>();
let state: GraphState | undefined = vscode.getState();
let compute: Compute | undefined;
let marked = new Set<string>(state?.marked ?? []);
let threshold = 0;

const app = document.getElementById('app')!;
const plot = el('div', { id: 'plot', class: 'plot' }) as PlotlyDiv;
const backend = el('span', { id: 'backend', class: 'badge' }, 'starting…');
const markedInfo = el('span', { id: 'marked-count', class: 'muted' });
const slider = el('input', { type: 'range', min: '0', max: '100', value: '0', id: 'threshold', 'aria-label': 'Score threshold' });
const thresholdLabel = el('span', { class: 'muted', id: 'threshold-label' }, 'threshold 0');
const ablateBtn = el('vscode-button' as 'button', { id: 'ablate', title: 'Keep the marked nodes, ablate every other head and MLP, and re-run the suite' }, 'Run marked circuit (ablate the rest)');
const clearBtn = el('vscode-button' as 'button', { id: 'clear', secondary: '' }, 'Clear marks');
const saveBtn = el('vscode-button' as 'button', { id: 'save', secondary: '' }, 'Save as circuit');
const results = el('section', { id: 'results', 'aria-live': 'polite' });
// Keyboard path to marking: every node as a checkbox, strongest first (the plot itself needs a pointer).
const nodeList = el('details', { id: 'node-list' });
const header = el('header', { class: 'toolbar' });

function layout(s: GraphState) {
  header.replaceChildren(
    el('strong', {}, s.title), backend, el('span', { class: 'spacer' }),
    // Grouped, so a narrow panel wraps whole groups (the threshold value stays beside its slider).
    el('span', { class: 'group' }, el('label', { for: 'threshold' }, 'Hide |score| below '), slider, thresholdLabel),
    el('span', { class: 'group' }, markedInfo, ablateBtn, clearBtn, saveBtn),
  );
  const legend = el('p', { class: 'muted', id: 'legend' }, s.edges.length
    ? `Node size: |score|. Blue supports the behaviour, red opposes it. Edges (${(s.method.split('; ')[1] ?? 'by score').replace(/^edges /, '')}): width by |score|; a head's q, k, v inputs end left, middle, right under it; hover the middle of an edge for its score.`
    : 'Node size: |score|. Blue supports the behaviour, red opposes it.');
  app.replaceChildren(header, ...(s.diff ? [diffSummary(s, s.diff, diffNodes(s, s.diff))] : [legend]), plot, results, nodeList);
}

/** Node positions: y = 0 input, 2L+1 attention of layer L, 2L+2 MLP of layer L, top logits. */
function position(id: string, s: GraphState): [number, number] {
  const n = parseNodeId(id);
  if (n.kind === 'input') return [(s.heads - 1) / 2, 0];
  if (n.kind === 'logits') return [(s.heads - 1) / 2, 2 * s.layers + 1];
  if (n.kind === 'head') return [n.head, 2 * n.layer + 1];
  return [(s.heads - 1) / 2, 2 * n.layer + 2];
}

function render(): void {
  const s = state!;
  // A diff view (checkpoint B against a baseline A) sizes by the larger |score| of the two and colours by change.
  const dn = s.diff ? new Map(diffNodes(s, s.diff).map((n) => [n.id, n])) : undefined;
  const dc = s.diff ? diffColors() : undefined;
  const importance = (n: { id: string; score: number }) => (dn ? dn.get(n.id)!.size : Math.abs(n.score));
  const maxAbs = Math.max(1e-9, ...s.nodes.map(importance));
  const cut = (threshold / 100) * maxAbs;
  const visible = s.nodes.filter((n) => n.id === 'input' || n.id === 'logits' || importance(n) >= cut || marked.has(n.id));
  const pos = new Map(s.nodes.map((n) => [n.id, position(n.id, s)]));
  const pos_ = themeColor('--vscode-charts-blue', '#3794ff');
  const neg = themeColor('--vscode-charts-red', '#f14c4c');
  const fg = themeColor('--vscode-editor-foreground', '#cccccc');
  const markColor = themeColor('--vscode-charts-yellow', '#cca700');
  const big = s.nodes.length > 2000;
  const allEdges = s.diff ? diffEdges(s, s.diff) : s.edges.map((e) => ({ ...e, size: Math.abs(e.score), change: undefined as Change | undefined, a: 0, b: e.score }));
  const edgeMax = Math.max(1e-9, ...allEdges.map((e) => e.size));
  // Edges below 5 % of the strongest are hidden even at threshold 0 (a model has many near-zero edges).
  const edgeCut = Math.max(0.05, threshold / 100) * edgeMax;
  const edges = allEdges.filter((e) => e.size >= edgeCut).sort((a, b) => b.size - a.size).slice(0, big ? 5000 : 20000);
  // A head's q, k and v inputs end side by side under it, so the three edges of one pair stay apart.
  const end = (id: string): [number, number] | undefined => {
    const { node, input } = splitEdgeTarget(id);
    const p = pos.get(node as NodeId);
    if (!p) return undefined;
    return input ? [p[0] + { q: -0.15, k: 0, v: 0.15 }[input], p[1] - 0.12] : p;
  };
  // Three strengths per sign: line width and opacity grow with |score|.
  const buckets = [[0, 0.2, 1, 0.35], [0.2, 0.5, 2.5, 0.6], [0.5, Infinity, 4, 0.85]] as const;
  // Line colour: by sign, or in a diff view by change.
  const kinds = dc ? (['gained', 'lost', 'unchanged'] as const) : (['pos', 'neg'] as const);
  const kindOf = (e: (typeof edges)[number]) => e.change ?? (e.score >= 0 ? 'pos' : 'neg');
  const colorOf = (k: string) => (dc ? dc[k as Change] : k === 'pos' ? pos_ : neg);
  const edgeTraces = kinds.flatMap((kind) => buckets.map(([lo, hi, width, opacity]) => {
    const xs: (number | null)[] = [];
    const ys: (number | null)[] = [];
    for (const e of edges) {
      const r = e.size / edgeMax;
      if (kindOf(e) !== kind || r < lo || r >= hi) continue;
      const a = end(e.source);
      const b = end(e.target);
      if (a && b) xs.push(a[0], b[0], null), ys.push(a[1], b[1], null);
    }
    return { type: big ? 'scattergl' : 'scatter', mode: 'lines', x: xs, y: ys, hoverinfo: 'skip', showlegend: false, line: { color: colorOf(kind), width }, opacity };
  }));
  // Hover targets at the middle of each edge: its id and score.
  const mids = edges.map((e) => { const a = end(e.source); const b = end(e.target); return a && b ? { e, x: (a[0] + b[0]) / 2, y: (a[1] + b[1]) / 2 } : undefined; }).filter((m) => m !== undefined);
  edgeTraces.push({
    type: big ? 'scattergl' : 'scatter', mode: 'markers', x: mids.map((m) => m.x), y: mids.map((m) => m.y), showlegend: false,
    marker: { size: 7, color: mids.map((m) => colorOf(kindOf(m.e))), opacity: 0.25 },
    hovertemplate: mids.map((m) => (dc
      ? `<b>${m.e.source} → ${m.e.target}</b><br>A ${m.e.a.toFixed(4)} → B ${m.e.b.toFixed(4)} (${m.e.change})<extra></extra>`
      : `<b>${m.e.source} → ${m.e.target}</b><br>score ${m.e.score.toFixed(4)}<extra></extra>`)),
  } as never);
  const nodeTrace = {
    type: big ? 'scattergl' : 'scatter', mode: big ? 'markers' : 'markers+text', showlegend: false,
    x: visible.map((n) => pos.get(n.id)![0]), y: visible.map((n) => pos.get(n.id)![1]),
    text: visible.map((n) => n.id), textposition: 'top center', textfont: { color: fg, size: 11 },
    customdata: visible.map((n) => n.id),
    hovertemplate: visible.map((n) => (dn && n.id !== 'input' && n.id !== 'logits'
      ? `<b>${n.id}</b><br>A ${dn.get(n.id)!.a.toFixed(4)} → B ${n.score.toFixed(4)} (${dn.get(n.id)!.change})<extra></extra>`
      : `<b>${n.id}</b><br>score ${n.score.toFixed(4)}<extra></extra>`)),
    marker: {
      size: visible.map((n) => (n.id === 'input' || n.id === 'logits' ? 16 : 10 + 34 * Math.sqrt(importance(n) / maxAbs))),
      color: visible.map((n) => (n.id === 'input' || n.id === 'logits' ? fg : dn && dc ? dc[dn.get(n.id)!.change] : n.score >= 0 ? pos_ : neg)),
      symbol: visible.map((n) => (parseNodeId(n.id).kind === 'mlp' ? 'square' : 'circle')),
    },
    selectedpoints: null,
  };
  drawn = {
    ids: visible.map((n) => n.id), scores: visible.map((n) => n.score), x: nodeTrace.x, y: nodeTrace.y, size: nodeTrace.marker.size,
    symbol: nodeTrace.marker.symbol, trace: edgeTraces.length + 1, markColor, threshold, type: nodeTrace.type,
  };
  const ticks = ['input', ...Array.from({ length: s.layers }, (_, l) => [`attn ${l}`, `mlp ${l}`]).flat(), 'logits'];
  const sizeOf = new Map(visible.map((n, i) => [n.id, nodeTrace.marker.size[i]!]));
  const rings = s.diff && dc ? circuitRings(s.diff, pos, (id) => sizeOf.get(id) ?? 10, dc) : [];
  void Plotly.react(plot, [...edgeTraces, nodeTrace, markTrace(drawn), ...rings], {
    paper_bgcolor: 'rgba(0,0,0,0)', plot_bgcolor: 'rgba(0,0,0,0)', font: { color: fg }, dragmode: 'select', margin: { l: 60, r: 20, t: 10, b: 30 },
    xaxis: { title: { text: 'head' }, zeroline: false, showgrid: false, color: fg, dtick: 1 },
    yaxis: { tickvals: ticks.map((_, i) => i), ticktext: ticks, zeroline: false, color: fg, gridcolor: 'rgba(128,128,128,0.2)' },
    hovermode: 'closest', uirevision: 'graph', showlegend: rings.length > 0, legend: { orientation: 'h', x: 0, y: 1.06, font: { color: fg } },
  }, { displaylogo: false, responsive: true, modeBarButtonsToRemove: ['toImage'] });
  markedInfo.textContent = `${[...marked].length} marked`;
  for (const box of nodeList.querySelectorAll<HTMLInputElement>('input[data-node]')) box.checked = marked.has(box.dataset['node']!);
  thresholdLabel.textContent = `${cut.toFixed(3)} (${visible.length} of ${s.nodes.length} nodes${s.edges.length ? `, ${edges.length} of ${s.edges.length} edges` : ''})`;
  saveState();
}

/** What the plot shows now, so marking redraws a small outline trace over the nodes instead of every trace. */
interface Drawn { ids: string[]; scores: number[]; x: number[]; y: number[]; size: number[]; symbol: string[]; trace: number; markColor: string; threshold: number; type: string }
let drawn: Drawn | undefined;

/** The marked nodes' outlines: a trace of their own over the nodes (clickable and hoverable like them). */
function markTrace(d: Drawn) {
  const at = d.ids.flatMap((id, i) => (marked.has(id) ? [i] : []));
  return {
    type: d.type, mode: 'markers', showlegend: false, x: at.map((i) => d.x[i]), y: at.map((i) => d.y[i]), customdata: at.map((i) => d.ids[i]),
    hovertemplate: at.map((i) => `<b>${d.ids[i]}</b><br>score ${d.scores[i]!.toFixed(4)}<br>marked<extra></extra>`),
    marker: { size: at.map((i) => d.size[i]), symbol: at.map((i) => d.symbol[i]), color: 'rgba(0,0,0,0)', line: { color: d.markColor, width: 4 } },
  };
}

/** Marks changed at the same threshold: only the outline trace changes. */
function restyleMarks(): void {
  const d = drawn;
  if (!d || d.threshold !== threshold) { render(); return; }
  // A node hidden by the threshold becomes visible when marked: then the set of points changes, redraw.
  const s = state!;
  const maxAbs = Math.max(1e-9, ...s.nodes.map((n) => Math.abs(n.score)));
  const cut = (threshold / 100) * maxAbs;
  const shown = new Set(d.ids);
  if (s.nodes.some((n) => marked.has(n.id) && Math.abs(n.score) < cut && !shown.has(n.id))) { render(); return; }
  const m = markTrace(d);
  void Plotly.restyle(plot, {
    x: [m.x], y: [m.y], customdata: [m.customdata], hovertemplate: [m.hovertemplate], 'marker.size': [m.marker.size], 'marker.symbol': [m.marker.symbol],
  }, [d.trace]);
  markedInfo.textContent = `${[...marked].length} marked`;
  for (const box of nodeList.querySelectorAll<HTMLInputElement>('input[data-node]')) box.checked = marked.has(box.dataset['node']!);
  saveState();
}

// Persisting the state (nodes, edges, prompts) is a structured clone: once things settle, not on every event.
let saveTimer: ReturnType<typeof setTimeout> | undefined;
function saveState(): void {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(() => { if (state) vscode.setState({ ...state, marked: [...marked] as NodeId[] }); }, 300);
}

// The slider fires an input event per step: redraw at most once per frame.
let pending = false;
function scheduleRender(): void {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

/** The keyboard node list, strongest first (the 1000 strongest on large graphs; the plot's selection reaches the rest). */
function renderNodeList(s: GraphState): void {
  const open = nodeList.open;
  const all = [...s.nodes].filter((n) => n.id !== 'input' && n.id !== 'logits').sort((a, b) => Math.abs(b.score) - Math.abs(a.score));
  const items = all.slice(0, 1000).map((n) => {
    const box = el('input', { type: 'checkbox', id: `mark-${n.id}`, 'data-node': n.id });
    box.checked = marked.has(n.id);
    box.addEventListener('change', () => toggle([n.id]));
    return el('li', {}, box, el('label', { for: `mark-${n.id}` }, `${n.id}  (score ${n.score.toFixed(4)})`));
  });
  nodeList.replaceChildren(el('summary', {}, `Nodes (${all.length > items.length ? `the ${items.length} strongest of ${all.length}` : items.length}) — mark with the keyboard`), el('ul', { class: 'node-list' }, ...items));
  nodeList.open = open;
}

function toggle(ids: string[], only = false): void {
  if (only) marked = new Set();
  for (const id of ids) {
    if (id === 'input' || id === 'logits') continue;
    if (marked.has(id) && !only) marked.delete(id); else marked.add(id);
  }
  vscode.postMessage({ t: 'marked', nodes: [...marked] as NodeId[] });
  restyleMarks();
}

let lastMetrics: Record<string, unknown> | undefined;

async function ablateMarked(): Promise<void> {
  const s = state!;
  if (!compute) { results.textContent = 'The compute worker is not ready yet.'; return; }
  const all = s.nodes.map((n) => n.id).filter((n) => n !== 'input' && n !== 'logits') as NodeId[];
  const C = all.filter((n) => marked.has(n));
  const outside = all.filter((n) => !marked.has(n));
  results.replaceChildren(el('p', { class: 'muted' }, `Running ${s.prompts.length} prompts × 4 ablation sets on ${compute.ready.backend}…`));
  const t0 = performance.now();
  const r = await compute.call('compute/evaluate', { prompts: s.prompts, meanOver: s.meanOver, ablation: s.ablation, sets: [[], all, outside, C] });
  const [full, empty, circuit, complement] = r.sets as [{ metrics: SuiteMetrics; scores: { logitDiff: number; prob: number; correct: boolean }[] }, { metrics: SuiteMetrics }, { metrics: SuiteMetrics; scores: { logitDiff: number; prob: number; correct: boolean; kl: number }[] }, { metrics: SuiteMetrics }];
  const byMetric = Object.fromEntries(METRICS.map((m) => [m, faithfulness(m, circuit.metrics, empty.metrics, full.metrics)])) as Record<MetricName, number>;
  const nec = 1 - faithfulness(s.metric, complement.metrics, empty.metrics, full.metrics);
  lastMetrics = { faithfulness: byMetric[s.metric], faithfulnessByMetric: byMetric, necessity: nec, metric: s.metric, ablation: s.ablation, prompts: s.prompts.length };
  const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '—');
  const rows = s.prompts.map((p, i) => el('tr', {},
    el('td', {}, p.text), el('td', { class: 'num' }, fmt(full.scores[i]!.logitDiff)), el('td', { class: 'num' }, fmt(circuit.scores[i]!.logitDiff)),
    el('td', { class: 'num' }, fmt(circuit.scores[i]!.logitDiff - full.scores[i]!.logitDiff)), el('td', {}, circuit.scores[i]!.correct ? '✓' : '✗')));
  results.replaceChildren(
    el('div', { class: 'metrics', id: 'metric-summary' },
      el('div', {}, el('span', { class: 'muted' }, `${s.metric} (circuit only)`), el('b', { id: 'metric-value' }, fmt(circuit.metrics[s.metric]))),
      el('div', {}, el('span', { class: 'muted' }, 'faithfulness'), el('b', { id: 'faithfulness-value' }, fmt(byMetric[s.metric]))),
      el('div', {}, el('span', { class: 'muted' }, 'by accuracy'), el('b', {}, fmt(byMetric.accuracy))),
      el('div', {}, el('span', { class: 'muted' }, 'by KL'), el('b', {}, fmt(byMetric.kl))),
      el('div', {}, el('span', { class: 'muted' }, 'necessity'), el('b', {}, fmt(nec))),
      el('div', {}, el('span', { class: 'muted' }, 'accuracy'), el('b', {}, `${fmt(full.metrics.accuracy)} → ${fmt(circuit.metrics.accuracy)}`)),
    ),
    el('p', { class: 'muted' }, `${C.length} marked nodes kept, ${outside.length} ${s.ablation}-ablated; ${s.prompts.length} prompts in ${(performance.now() - t0).toFixed(0)} ms on ${compute.ready.backend}. Faithfulness under one metric can hide a circuit that suppresses the foil instead of raising the answer: compare the columns.`),
    el('table', { class: 'prompts' }, el('thead', {}, el('tr', {}, el('th', {}, 'prompt'), el('th', {}, 'logit diff (full)'), el('th', {}, 'circuit only'), el('th', {}, 'change'), el('th', {}, 'top-1 right'))), el('tbody', {}, ...rows)),
  );
}

let wired = false;

function init(s: GraphState): void {
  state = s;
  marked = new Set(s.marked);
  layout(s);
  drawn = undefined;
  render();
  renderNodeList(s);
  if (wired) return;
  // A later state (the same suite attributed again) only redraws: listeners and the worker stay.
  wired = true;
  plot.on('plotly_click', (e) => { const id = e.points?.[0]?.customdata; if (id) toggle([id]); });
  plot.on('plotly_selected', (e) => { const ids = (e?.points ?? []).map((p) => p.customdata!).filter(Boolean); if (ids.length) toggle(ids, true); });
  slider.addEventListener('input', () => { threshold = Number(slider.value); scheduleRender(); });
  ablateBtn.addEventListener('click', () => { ablateMarked().catch((err) => { results.textContent = `Error: ${(err as Error).message}`; vscode.postMessage({ t: 'error', message: (err as Error).message }); }); });
  clearBtn.addEventListener('click', () => toggle([], true));
  saveBtn.addEventListener('click', () => vscode.postMessage({ t: 'saveCircuit', nodes: [...marked] as NodeId[], metrics: lastMetrics ?? {} }));
  {
    Compute.start(s.compute).then((c) => {
      compute = c;
      backend.textContent = c.ready.backend === 'webgpu' ? `WebGPU${c.ready.adapter ? ` (${c.ready.adapter})` : ''}` : 'WASM';
      backend.setAttribute('data-backend', c.ready.backend);
      vscode.postMessage({ t: 'status', backend: c.ready.backend, message: 'compute ready' });
    }, (err: Error) => {
      backend.textContent = 'compute failed';
      vscode.postMessage({ t: 'error', message: `compute worker: ${err.message}` });
    });
  }
}

window.addEventListener('message', (e: MessageEvent<GraphToView>) => {
  const m = e.data;
  if (m.t === 'state') init(m.state);
  else if (m.t === 'saved') results.prepend(el('p', { id: 'saved-note' }, `Saved ${m.path}`));
});
vscode.postMessage({ t: 'ready' });
