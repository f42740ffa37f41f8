// Attention patterns: per-head heatmaps with token labels on both axes, layer and head pickers, entropy per head
// and position, and the selected head's pattern and next-token scores when its softmax temperature changes.
import type { PromptState, PromptToHost } from '../../protocol/prompt';
import type { TemperatureSwept } from '../../protocol/compute';
import { DEFAULT_TEMPERATURES, entropyPerPosition, maxEntropyAt, meanOverPositions } from '../../core/analysis/attention/stats';
import { headId } from '../../core/ids';
import { Compute } from '../common/compute-client';
import { chartColors, drawPlot } from '../common/plot';
import { drawStates, el, hostApi } from '../common/vscode-api';
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';

interface PlotDiv extends HTMLElement { on?(event: 'plotly_click', f: (e: { points: { y: string }[] }) => void): void }

const vscode = hostApi<PromptToHost, PromptState & { layer?: number; head?: number }>();
const app = document.getElementById('app')!;
let compute: Compute | undefined;
let patterns: Record<string, { dims: number[]; data: Float32Array }> = {};

async function show(s: PromptState & { layer?: number; head?: number }): Promise<void> {
  const layerSel = el('vscode-single-select' as 'select', { id: 'layer', 'aria-label': 'Layer' });
  const headSel = el('vscode-single-select' as 'select', { id: 'head', 'aria-label': 'Head' });
  for (let l = 0; l < s.layers; l++) layerSel.append(el('vscode-option' as 'option', { value: String(l) }, `layer ${l}`));
  for (let h = 0; h < s.heads; h++) headSel.append(el('vscode-option' as 'option', { value: String(h) }, `head ${h}`));
  const backend = el('span', { class: 'badge', id: 'backend' }, 'starting…');
  const plot = el('div', { id: 'plot', class: 'plot square' });
  const entropyMap: PlotDiv = el('div', { id: 'entropy-map', class: 'plot entropy-map' });
  const table = el('div', { id: 'entropy' });
  const tempTitle = el('h3', {}, 'Softmax temperature');
  const tempPlots = el('div', { id: 'temperature-plots', class: 'small-multiples' });
  const tempTable = el('div', { id: 'temperature-table' });
  const tempPanel = el('section', { id: 'temperature', 'aria-label': 'Softmax temperature' }, tempTitle,
    el('p', { class: 'muted' }, 'The head\'s attention scores divided by τ before its softmax (τ > 1 flattens the pattern, τ < 1 sharpens it); every τ is a row of one batched run.'),
    tempPlots, tempTable);
  app.replaceChildren(
    el('header', { class: 'toolbar' }, el('strong', {}, 'Attention'), el('span', { class: 'muted' }, `“${s.text}”`), backend, el('span', { class: 'spacer' }), layerSel, headSel),
    el('div', { class: 'split' }, plot, el('div', { class: 'side' }, entropyMap, table)),
    tempPanel,
  );
  let layer = s.layer ?? s.layers - 1;
  let head = s.head ?? 0;
  (layerSel as unknown as { value: string }).value = String(layer);
  (headSel as unknown as { value: string }).value = String(head);
  compute ??= await Compute.start(s.compute);
  const c = compute;
  backend.textContent = c.ready.backend === 'webgpu' ? 'WebGPU' : 'WASM';
  vscode.postMessage({ t: 'status', backend: c.ready.backend, message: 'compute ready' });
  const hooks = Array.from({ length: s.layers }, (_, l) => `blocks.${l}.attn.hook_pattern`);
  const r = await c.call('compute/trace', { ids: s.ids, hooks });
  patterns = r.activations;
  const T = s.ids.length;
  const H = s.heads;
  const labels = s.tokens.map((t, i) => `${i}:${t}`);
  const entropies = hooks.map((h) => entropyPerPosition(patterns[h]!.data, H, T));
  const tok = (i: number) => s.vocab[i] ?? `#${i}`;
  let sweep = 0;
  let clickBound = false;

  const pick = (l: number, h: number) => {
    layer = l; head = h;
    (layerSel as unknown as { value: string }).value = String(l);
    (headSel as unknown as { value: string }).value = String(h);
    draw();
  };

  const drawTemperature = async () => {
    const id = headId(layer, head);
    const mine = ++sweep;
    tempTitle.textContent = `Softmax temperature of ${id}`;
    tempTable.replaceChildren(el('p', { class: 'muted' }, `running ${DEFAULT_TEMPERATURES.length} temperatures…`));
    let res: TemperatureSwept;
    try {
      res = await c.call('compute/temperature', { ids: s.ids, head: id, temperatures: DEFAULT_TEMPERATURES, answer: s.answer, foil: s.foil });
    } catch (err) {
      if (mine === sweep) tempTable.replaceChildren(el('p', { class: 'muted' }, `Error: ${(err as Error).message}`));
      return;
    }
    if (mine !== sweep) return;
    const n = DEFAULT_TEMPERATURES.length;
    // Placed before they are drawn: plotly sizes a plot from its container.
    const cells = DEFAULT_TEMPERATURES.map((t) => el('div', { class: 'plot small', 'aria-label': `${id} at temperature ${t}` }));
    tempPlots.replaceChildren(...cells);
    DEFAULT_TEMPERATURES.forEach((t, i) => {
      const div = cells[i]!;
      const p = res.patterns.data.subarray(i * T * T, (i + 1) * T * T);
      const z = Array.from({ length: T }, (_, q) => Array.from({ length: T }, (_, k) => (k <= q ? p[q * T + k]! : null)));
      const meanH = meanOverPositions(entropyPerPosition(p, 1, T), 1, T)[0]!;
      void drawPlot(div, [{ type: 'heatmap', z, x: labels, y: labels, colorscale: 'Viridis', zmin: 0, zmax: 1, showscale: false, hovertemplate: 'query %{y}<br>key %{x}<br>attention %{z:.3f}<extra></extra>' }], {
        margin: { l: 8, r: 8, t: 40, b: 8 },
        title: { text: `τ = ${t}${t === 1 ? ' (model)' : ''}<br><span style="font-size:11px">mean entropy ${meanH.toFixed(2)}</span>`, font: { size: 12 } },
        xaxis: { showticklabels: false, ticks: '', showgrid: false, constrain: 'domain' }, yaxis: { showticklabels: false, ticks: '', showgrid: false, autorange: 'reversed', scaleanchor: 'x', constrain: 'domain' },
      }, { displayModeBar: false });
    });
    const target = tok(res.target);
    const hasFoil = s.foil !== undefined;
    const rows = res.scores.map((sc, i) => el('tr', { class: DEFAULT_TEMPERATURES[i] === 1 ? 'model' : '' },
      el('th', {}, `τ = ${DEFAULT_TEMPERATURES[i]}`),
      el('td', { class: sc.top1 === res.target ? 'answer' : '' }, tok(sc.top1)),
      el('td', { class: 'num' }, sc.prob.toFixed(3)),
      ...(hasFoil ? [el('td', { class: 'num' }, sc.logitDiff.toFixed(3))] : []),
      el('td', { class: 'num' }, sc.kl === 0 ? '0' : sc.kl < 1e-4 ? sc.kl.toExponential(1) : sc.kl.toFixed(4))));
    tempTable.replaceChildren(
      el('p', { class: 'muted' }, `Next token at the last position; p is of ${s.answer !== undefined ? `the answer ${target}` : `${target}, the model's own top-1 at τ = 1`}; KL to τ = 1 (${n} rows, ${res.ms.toFixed(0)} ms).`),
      el('table', { class: 'temperature' },
        el('thead', {}, el('tr', {}, el('th', {}), el('th', {}, 'top-1'), el('th', {}, `p(${target})`), ...(hasFoil ? [el('th', {}, `logit(${target}) − logit(${tok(s.foil!)})`)] : []), el('th', {}, 'KL'))),
        el('tbody', {}, ...rows)));
  };

  const draw = () => {
    const p = patterns[hooks[layer]!]!.data;
    const z = Array.from({ length: T }, (_, q) => Array.from({ length: T }, (_, k) => (k <= q ? p[(head * T + q) * T + k]! : null)));
    const { fg } = chartColors();
    void drawPlot(plot, [{ type: 'heatmap', z, x: labels, y: labels, colorscale: 'Viridis', zmin: 0, zmax: 1, hovertemplate: 'query %{y}<br>key %{x}<br>attention %{z:.3f}<extra></extra>', colorbar: { tickfont: { color: fg } } }], {
      margin: { l: 110, r: 20, t: 30, b: 110 },
      title: { text: headId(layer, head), font: { size: 13 } },
      xaxis: { title: { text: 'key (attended to)' }, tickangle: -60, automargin: true, constrain: 'domain', constraintoward: 'left' }, yaxis: { title: { text: 'query' }, autorange: 'reversed', automargin: true, scaleanchor: 'x', constrain: 'domain', constraintoward: 'top' },
    });
    // Entropy per head (rows) and query position (columns) of the layer; the bound ln(q + 1) in the hover.
    const e = entropies[layer]!;
    const heads = Array.from({ length: H }, (_, h) => `h${h}`);
    const ez = heads.map((_, h) => Array.from(e.subarray(h * T, (h + 1) * T)));
    const bound = heads.map(() => labels.map((_, q) => maxEntropyAt(q)));
    const clickable = drawPlot(entropyMap, [{ type: 'heatmap', z: ez, x: labels, y: heads, customdata: bound, colorscale: 'Viridis', zmin: 0, zmax: maxEntropyAt(T - 1),
      hovertemplate: '%{y}, query %{x}<br>entropy %{z:.3f} nats (uniform: %{customdata:.3f})<extra></extra>', colorbar: { tickfont: { color: fg }, thickness: 12, title: { text: 'nats', side: 'right' } } }], {
      margin: { l: 40, r: 10, t: 30, b: 70 },
      title: { text: `Entropy per query position, layer ${layer} (dark = focused)`, font: { size: 12 } },
      xaxis: { tickangle: -60, automargin: true, tickfont: { size: 10 } }, yaxis: { autorange: 'reversed', automargin: true },
      shapes: [{ type: 'rect', xref: 'paper', x0: 0, x1: 1, yref: 'y', y0: head - 0.5, y1: head + 0.5, line: { color: fg, width: 1.5 } }],
    });
    // Plotly adds .on() to a div once it has drawn it: a click on a row shows that head.
    void clickable.then(() => {
      if (clickBound || !entropyMap.on) return;
      clickBound = true;
      entropyMap.on('plotly_click', (ev) => { const h = Number(ev.points[0]?.y.slice(1)); if (Number.isInteger(h)) pick(layer, h); });
    });
    const rows = Array.from({ length: s.layers }, (_, l) => {
      const means = meanOverPositions(entropies[l]!, H, T);
      return el('tr', {}, el('th', {}, `layer ${l}`), ...Array.from({ length: H }, (_, h) => {
        const cell = el('td', { class: `num${l === layer && h === head ? ' selected' : ''}`, tabindex: '0', role: 'button', 'aria-label': `${headId(l, h)} entropy` }, means[h]!.toFixed(2));
        cell.addEventListener('click', () => pick(l, h));
        cell.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') pick(l, h); });
        return cell;
      }));
    });
    table.replaceChildren(el('p', { class: 'muted' }, 'Mean attention entropy per head (nats; low = focused). Click a cell to show that head.'),
      el('table', { class: 'entropy' }, el('thead', {}, el('tr', {}, el('th', {}), ...Array.from({ length: H }, (_, h) => el('th', {}, `h${h}`)))), el('tbody', {}, ...rows)));
    vscode.setState({ ...s, layer, head });
    void drawTemperature();
  };
  layerSel.addEventListener('change', () => { layer = Number((layerSel as unknown as { value: string }).value); draw(); });
  headSel.addEventListener('change', () => { head = Number((headSel as unknown as { value: string }).value); draw(); });
  draw();
}

drawStates(vscode, show);
