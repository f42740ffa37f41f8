// Attribution graph: nodes by layer (input at the bottom, logits at the top), size by score, edges by sign and
// score; click or box/lasso select to mark; "Ablate marked" re-runs the suite in the compute worker.
import type { GraphState, GraphToHost, GraphToView } from '../../protocol/graph';
import { parseNodeId, type NodeId } from '../../core/ids';
import { faithfulness, type SuiteMetrics } from '../../core/analysis/metrics';
import { METRICS, type MetricName } from '../../core/vocabulary';
import type { Change } from '../../core/analysis/compare/change';
import { Compute } from '../common/compute-client';
import { circuitRings, diffColors, diffEdges, diffNodes, diffSummary, type DiffNode } from './diff';
import { buildEdgeLod, shownEdges, traceSlice, type EdgeLod, type LodEdge } from './edge-lod';
import { edgeHover, type DrawnEdges } from './edge-hover';
import { chartColors, drawPlot, grey, restylePlot } from '../common/plot';
import { el, hostApi } from '../common/vscode-api';
import '@vscode-elements/elements/dist/vscode-button/index.js';
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';

interface PlotlyDiv extends HTMLDivElement {
  on(event: string, cb: (e: { points?: { customdata?: string }[] }) => void): void;
}

const vscode = hostApi<GraphToHost, GraphState>();
let state: GraphState | undefined = vscode.getState();
let compute: Compute | undefined;
let marked = new Set<string>(state?.marked ?? []);
/** The slider (percent of the largest |score|): saved with the state like the edge cap. */
const knownThreshold = (n: number | undefined): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 100;
let threshold = knownThreshold(state?.threshold) ? state.threshold : 0;
/** The most edges drawn (the strongest; 0: all): a model's full edge graph is tens of thousands. Saved with the
 *  state, so a reload draws as many as before. */
const EDGE_CAPS = [100, 300, 1000, 3000, 10000];
const knownCap = (n: number | undefined): n is number => n !== undefined && (n === 0 || EDGE_CAPS.includes(n));
let edgeCap = knownCap(state?.edgeCap) ? state.edgeCap : 300;
const capLimit = () => edgeCap || Infinity;

const app = document.getElementById('app')!;
const plot = el('div', { id: 'plot', class: 'plot' }) as PlotlyDiv;
const backend = el('span', { id: 'backend', class: 'badge' }, 'starting…');
const markedInfo = el('span', { id: 'marked-count', class: 'muted' });
const slider = el('input', { type: 'range', min: '0', max: '100', value: String(threshold), id: 'threshold', 'aria-label': 'Score threshold' });
const thresholdLabel = el('span', { class: 'muted', id: 'threshold-label' }, 'threshold 0');
const ablateBtn = el('vscode-button' as 'button', { id: 'ablate', title: 'Keep the marked nodes, ablate every other head and MLP, and re-run the suite' }, 'Run marked circuit (ablate the rest)');
const clearBtn = el('vscode-button' as 'button', { id: 'clear', secondary: '' }, 'Clear marks');
const saveBtn = el('vscode-button' as 'button', { id: 'save', secondary: '' }, 'Save as circuit');
const capSelect = el('vscode-single-select' as 'select', { id: 'edge-cap', 'aria-label': 'Most edges drawn' });
const edgeNote = el('p', { class: 'muted', id: 'edge-note', 'aria-live': 'polite' });
for (const n of [...EDGE_CAPS, 0]) capSelect.append(el('vscode-option' as 'option', { value: String(n), ...(n === edgeCap ? { selected: '' } : {}) }, n ? n.toLocaleString('en-US') : 'all'));
const results = el('section', { id: 'results', 'aria-live': 'polite' });
// Keyboard path to marking: every node as a checkbox, strongest first (the plot itself needs a pointer).
const nodeList = el('details', { id: 'node-list' });
const header = el('header', { class: 'toolbar' });

function layout(s: GraphState, p: Prepared) {
  header.replaceChildren(
    el('strong', {}, s.title), backend, el('span', { class: 'spacer' }),
    // Grouped, so a narrow panel wraps whole groups (the threshold value stays beside its slider).
    el('span', { class: 'group' }, el('label', { for: 'threshold' }, 'Hide |score| below '), slider, thresholdLabel),
    ...(s.edges.length ? [el('span', { class: 'group' }, el('label', { for: 'edge-cap' }, 'Edges: at most '), capSelect)] : []),
    el('span', { class: 'group' }, markedInfo, ablateBtn, clearBtn, saveBtn),
  );
  const legend = el('p', { class: 'muted', id: 'legend' }, s.edges.length
    ? `Node size: |score|. Blue supports the behaviour, red opposes it. Edges (${(s.method.split('; ')[1] ?? 'by score').replace(/^edges /, '')}): wider and more opaque for larger |score| (only the 30 strongest widest); a head's q, k, v inputs end left, middle, right under it; hover an edge for its id and score.`
    : 'Node size: |score|. Blue supports the behaviour, red opposes it.');
  app.replaceChildren(header, ...(s.diff && p.diffNodes ? [diffSummary(s, s.diff, p.diffNodes)] : [legend]), ...(s.edges.length ? [edgeNote] : []), plot, results, nodeList);
}

/** Node positions: y = 0 input, 2L+1 attention of layer L, 2L+2 MLP of layer L, top logits. */
function position(id: string, s: GraphState): [number, number] {
  const n = parseNodeId(id);
  if (n.kind === 'input') return [(s.heads - 1) / 2, 0];
  if (n.kind === 'logits') return [(s.heads - 1) / 2, 2 * s.layers + 1];
  if (n.kind === 'head') return [n.head, 2 * n.layer + 1];
  return [(s.heads - 1) / 2, 2 * n.layer + 2];
}

/** What depends only on the state, computed once per state (the diff too): redraws only pick and colour. */
interface Prepared {
  diffNodes?: DiffNode[];
  /** Per node of s.nodes: importance (|score|, or in a diff view the larger |score| of A and B), marker size,
   *  position, symbol and hover text. */
  importance: number[];
  maxAbs: number;
  size: number[];
  x: number[];
  y: number[];
  symbol: string[];
  hover: string[];
  change?: Change[];
  pos: Map<string, [number, number]>;
  lod: EdgeLod;
  kinds: readonly string[];
  ticks: { vals: number[]; text: string[] };
}

/** The y axis' row names; on a deep model every k-th row only (Plotly measures every label on each redraw, and
 *  hundreds overlap anyway). */
function rowTicks(layers: number): { vals: number[]; text: string[] } {
  const text = ['input', ...Array.from({ length: layers }, (_, l) => [`attn ${l}`, `mlp ${l}`]).flat(), 'logits'];
  const step = Math.ceil(text.length / 60);
  const vals = text.map((_, i) => i).filter((i) => i % step === 0 || i === text.length - 1);
  return { vals, text: vals.map((i) => text[i]!) };
}

function prepare(s: GraphState): Prepared {
  const dl = s.diff ? diffNodes(s, s.diff) : undefined;
  const importance = dl ? dl.map((n) => n.size) : s.nodes.map((n) => Math.abs(n.score));
  let maxAbs = 1e-9;
  for (const v of importance) if (v > maxAbs) maxAbs = v;
  const pos = new Map(s.nodes.map((n) => [n.id, position(n.id, s)]));
  const io = (id: string) => id === 'input' || id === 'logits';
  const kinds = s.diff ? (['gained', 'lost', 'unchanged'] as const) : (['pos', 'neg'] as const);
  const edges: LodEdge[] = s.diff
    ? diffEdges(s, s.diff).map((e) => ({ source: e.source, target: e.target, size: e.size, score: e.b, kind: e.change, describe: () => `${e.source} → ${e.target}\nA ${e.a.toFixed(4)} → B ${e.b.toFixed(4)} (${e.change})` }))
    : s.edges.map((e) => ({ source: e.source, target: e.target, score: e.score, size: Math.abs(e.score), kind: e.score >= 0 ? 'pos' : 'neg', describe: () => `${e.source} → ${e.target}\nscore ${e.score.toFixed(4)}` }));
  return {
    diffNodes: dl, importance, maxAbs, pos, kinds, ticks: rowTicks(s.layers),
    size: s.nodes.map((n, i) => (io(n.id) ? 16 : 10 + 34 * Math.sqrt(importance[i]! / maxAbs))),
    x: s.nodes.map((n) => pos.get(n.id)![0]), y: s.nodes.map((n) => pos.get(n.id)![1]),
    symbol: s.nodes.map((n) => (parseNodeId(n.id).kind === 'mlp' ? 'square' : 'circle')),
    hover: s.nodes.map((n, i) => (dl && !io(n.id) ? `<b>${n.id}</b><br>A ${dl[i]!.a.toFixed(4)} → B ${n.score.toFixed(4)} (${dl[i]!.change})` : `<b>${n.id}</b><br>score ${n.score.toFixed(4)}`)),
    change: dl?.map((n) => n.change),
    lod: buildEdgeLod(edges, pos, kinds),
  };
}

/** Edge lines in SVG up to this many drawn edges, WebGL above (an SVG path per trace grows slow with thousands). */
const SVG_EDGES = 1500;
/** Node markers in SVG up to this many nodes, WebGL above. */
const SVG_NODES = 2000;
/** Labels beside the nodes up to this many; above, the axes name each node's layer and head (and hover its id). */
const LABELLED_NODES = 40;

function render(): void {
  const s = state!;
  const p = prepared!;
  const cut = (threshold / 100) * p.maxAbs;
  const visible: number[] = [];
  s.nodes.forEach((n, i) => { if (n.id === 'input' || n.id === 'logits' || p.importance[i]! >= cut || marked.has(n.id)) visible.push(i); });
  const { blue: pos_, red: neg, fg, yellow: markColor } = chartColors();
  const dc = s.diff ? diffColors() : undefined;
  const colorOf = (k: string) => (dc ? dc[k as Change] : k === 'pos' ? pos_ : neg);
  // Edges below 5 % of the strongest are hidden even at threshold 0 (a model has many near-zero edges), and at
  // most `edgeCap` are drawn: the strongest (a prefix of the sorted list).
  const { lod } = p;
  const shown = shownEdges(lod, Math.max(0.05, threshold / 100) * lod.max, capLimit());
  const edgeType = shown > SVG_EDGES ? 'scattergl' : 'scatter';
  const edgeTraces: unknown[] = lod.traces.map((t) => {
    const { x, y } = traceSlice(t, shown);
    return { type: edgeType, mode: 'lines', x, y, hoverinfo: 'skip', showlegend: false, line: { color: colorOf(t.kind), width: t.width }, opacity: t.opacity };
  });
  edges = { lod, shown };
  const big = s.nodes.length > SVG_NODES;
  const io = (i: number) => s.nodes[i]!.id === 'input' || s.nodes[i]!.id === 'logits';
  const pick = <T>(a: T[]) => visible.map((i) => a[i]!);
  const ids = visible.map((i) => s.nodes[i]!.id);
  drawn = { visible, ids, trace: edgeTraces.length + (big ? 1 : 0), threshold, gl: big };
  const m = markStyle(drawn, p);
  // In SVG the nodes carry the marks (outline width per node: marking restyles widths in place, see restyleMarks);
  // in WebGL a second trace holds the marked nodes (see markTrace).
  const nodeTrace = {
    type: big ? 'scattergl' : 'scatter', uid: NODES_UID, mode: s.nodes.length > LABELLED_NODES ? 'markers' : 'markers+text', showlegend: false,
    x: pick(p.x), y: pick(p.y), text: ids, textposition: 'top center', textfont: { color: fg, size: 11 }, customdata: ids, hovertemplate: m.hover,
    marker: {
      size: pick(p.size), symbol: pick(p.symbol),
      color: visible.map((i) => (io(i) ? fg : p.change && dc ? dc[p.change[i]!] : s.nodes[i]!.score >= 0 ? pos_ : neg)),
      line: big ? { width: 0 } : { color: markColor, width: m.width },
    },
  };
  const ticks = p.ticks;
  const sizeOf = new Map(visible.map((i) => [s.nodes[i]!.id, p.size[i]!]));
  const rings = s.diff && dc ? circuitRings(s.diff, p.pos, (id) => sizeOf.get(id) ?? 10, dc) : [];
  void drawPlot(plot, [...edgeTraces, nodeTrace, ...(big ? [markTrace(drawn, p, markColor)] : []), ...rings], {
    dragmode: 'select', margin: { l: 60, r: 20, t: 10, b: 30 },
    xaxis: { title: { text: 'head' }, zeroline: false, showgrid: false, color: fg, dtick: Math.ceil(s.heads / 30) },
    yaxis: { tickvals: ticks.vals, ticktext: ticks.text, zeroline: false, color: fg, gridcolor: grey(0.2) },
    // Nodes hover only when pointed at (edges between them hover through edge-hover.ts).
    hovermode: 'closest', hoverdistance: 6, uirevision: 'graph', showlegend: rings.length > 0, legend: { orientation: 'h', x: 0, y: 1.06, font: { color: fg } },
  }, { modeBarButtonsToRemove: ['toImage'] });
  markedInfo.textContent = `${marked.size} marked`;
  for (const box of nodeList.querySelectorAll<HTMLInputElement>('input[data-node]')) box.checked = marked.has(box.dataset['node']!);
  const total = lod.edges.length;
  thresholdLabel.textContent = `${cut.toFixed(3)} (${visible.length} of ${s.nodes.length} nodes${s.edges.length ? `, ${shown} of ${total} edges` : ''})`;
  const fmt = (n: number) => n.toLocaleString('en-US');
  const capped = shown === capLimit() && shown < total;
  edgeNote.textContent = shown === 0 ? `Showing none of ${fmt(total)} edges: all are below the threshold.`
    : `Showing ${fmt(shown)} of ${fmt(total)} edges (|score| ≥ ${lod.size[shown - 1]!.toPrecision(3)}${capped ? `, the ${fmt(edgeCap)} strongest` : ''}); ${fmt(total - shown)} hidden${
      capped ? ': raise "Edges: at most" or lower the threshold to see more' : shown === total ? '' : threshold > 5 ? ' by the threshold' : ' (under 5 % of the strongest |score|)'}.`;
}

/** What the plot shows now, so marking restyles the outline trace's line widths instead of redrawing. */
interface Drawn { visible: number[]; ids: string[]; trace: number; threshold: number; gl: boolean }
let drawn: Drawn | undefined;
let prepared: Prepared | undefined;
/** The edges drawn now, for their hover. */
let edges: DrawnEdges | undefined;

/** Outline width and hover text per drawn node: marked nodes get the outline and "marked". */
function markStyle(d: Drawn, p: Prepared) {
  return {
    width: d.ids.map((id) => (marked.has(id) ? 4 : 0)),
    hover: d.visible.map((i, j) => `${p.hover[i]}${marked.has(d.ids[j]!) ? '<br>marked' : ''}<extra></extra>`),
  };
}

/** In WebGL (thousands of nodes) the marked nodes' outlines: a trace of their own over the nodes, restyled when
 *  marks change (the nodes themselves would be a second full trace of every node). */
function markTrace(d: Drawn, p: Prepared, markColor: string) {
  const m = markStyle(d, p);
  const at = d.visible.flatMap((_, j) => (marked.has(d.ids[j]!) ? [j] : []));
  const pick = <T>(a: T[]) => at.map((j) => a[d.visible[j]!]!);
  return {
    type: 'scattergl', mode: 'markers', showlegend: false, x: pick(p.x), y: pick(p.y), customdata: at.map((j) => d.ids[j]), hovertemplate: at.map((j) => m.hover[j]),
    marker: { size: pick(p.size), symbol: pick(p.symbol), color: 'rgba(0,0,0,0)', line: { color: markColor, width: 4 } },
  };
}

/** Plotly names a trace's SVG group `trace<uid>`: how the node points are found. */
const NODES_UID = 'nodes';

interface PlotInternals { data?: TraceArrays[]; _fullData?: TraceArrays[]; calcdata?: { i?: number; mlw?: number }[][] }
interface TraceArrays { marker?: { line?: { width?: number[] } }; hovertemplate?: string[] }

/**
 * Marks changed at the same threshold: only the outline trace's line widths (and hover texts) change. Plotly would
 * recompute and redraw every trace for a changed array (a restyle of an array attribute is a full replot), so on
 * SVG the widths are set on the drawn points directly, and in Plotly's data and per-point calcdata too, so that its
 * own redraws (zoom, pan) draw the same. Anything unexpected falls back to Plotly.restyle.
 */
function restyleMarks(): void {
  const d = drawn;
  const p = prepared!;
  if (!d || d.threshold !== threshold) { render(); return; }
  // A node hidden by the threshold becomes visible when marked: then the set of points changes, redraw.
  const shown = new Set(d.ids);
  if ([...marked].some((id) => !shown.has(id))) { render(); return; }
  const m = markStyle(d, p);
  if (d.gl) {
    const t = markTrace(d, p, '');
    void restylePlot(plot, { x: [t.x], y: [t.y], customdata: [t.customdata], hovertemplate: [t.hovertemplate], 'marker.size': [t.marker.size], 'marker.symbol': [t.marker.symbol] }, [d.trace]);
  } else if (!styleInPlace(d, m.width, m.hover)) void restylePlot(plot, { 'marker.line.width': [m.width], hovertemplate: [m.hover] }, [d.trace]);
  markedInfo.textContent = `${marked.size} marked`;
  for (const box of nodeList.querySelectorAll<HTMLInputElement>('input[data-node]')) box.checked = marked.has(box.dataset['node']!);
}

function styleInPlace(d: Drawn, width: number[], hover: string[]): boolean {
  const gd = plot as unknown as PlotInternals;
  const cd = gd.calcdata?.[d.trace];
  const traces = [gd.data?.[d.trace], gd._fullData?.[d.trace]];
  const points = plot.querySelectorAll<SVGPathElement & { __data__?: { i?: number } }>(`g.trace${NODES_UID} path.point`);
  if (!cd || cd.length !== width.length || points.length !== width.length) return false;
  if (traces.some((t) => !t?.marker?.line?.width || !t.hovertemplate)) return false;
  for (const pt of points) if (pt.__data__?.i === undefined) return false;
  for (const t of traces) { t!.marker!.line!.width!.splice(0, width.length, ...width); t!.hovertemplate!.splice(0, hover.length, ...hover); }
  width.forEach((w, i) => { cd[i]!.mlw = w; });
  for (const pt of points) pt.style.strokeWidth = `${width[pt.__data__!.i!]}px`;
  return true;
}

// Persisting the state (nodes, edges, prompts) is a structured clone: once things settle, not on every event.
let saveTimer: ReturnType<typeof setTimeout> | undefined;
function saveState(): void {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(() => { if (state) vscode.setState({ ...state, marked: [...marked] as NodeId[], edgeCap, threshold }); }, 300);
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
  saveState();
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
  prepared = prepare(s);
  layout(s, prepared);
  drawn = undefined;
  render();
  saveState();
  renderNodeList(s);
  if (wired) return;
  // A later state (the same suite attributed again) only redraws: listeners and the worker stay.
  wired = true;
  edgeHover(plot, () => edges);
  plot.on('plotly_click', (e) => { const id = e.points?.[0]?.customdata; if (id) toggle([id]); });
  plot.on('plotly_selected', (e) => { const ids = (e?.points ?? []).map((p) => p.customdata!).filter(Boolean); if (ids.length) toggle(ids, true); });
  slider.addEventListener('input', () => { threshold = Number(slider.value); scheduleRender(); saveState(); });
  capSelect.addEventListener('change', () => { edgeCap = Number((capSelect as unknown as { value: string }).value); scheduleRender(); saveState(); });
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
