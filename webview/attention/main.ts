// Attention patterns: per-head heatmaps with token labels on both axes, layer and head pickers, entropy per head.
import type { PromptState, PromptToHost, PromptToView } from '../../protocol/prompt';
import { headId } from '../../core/ids';
import { Compute } from '../common/compute-client';
import { el, hostApi, themeColor } from '../common/vscode-api';
import '@vscode-elements/elements/dist/vscode-single-select/index.js';
import '@vscode-elements/elements/dist/vscode-option/index.js';

declare const Plotly: { react(div: HTMLElement, data: unknown[], layout: unknown, config: unknown): Promise<void> };

const vscode = hostApi<PromptToHost, PromptState & { layer?: number; head?: number }>();
const app = document.getElementById('app')!;
let compute: Compute | undefined;
let patterns: Record<string, { dims: number[]; data: Float32Array }> = {};

function entropyOf(p: Float32Array, H: number, T: number, h: number): number {
  // Mean over query positions of the attention distribution's entropy (nats).
  let total = 0;
  for (let q = 0; q < T; q++) {
    let e = 0;
    for (let k = 0; k <= q; k++) { const v = p[(h * T + q) * T + k]!; if (v > 0) e -= v * Math.log(v); }
    total += e;
  }
  return total / T;
}

async function show(s: PromptState & { layer?: number; head?: number }): Promise<void> {
  const layerSel = el('vscode-single-select' as 'select', { id: 'layer', 'aria-label': 'Layer' });
  const headSel = el('vscode-single-select' as 'select', { id: 'head', 'aria-label': 'Head' });
  for (let l = 0; l < s.layers; l++) layerSel.append(el('vscode-option' as 'option', { value: String(l) }, `layer ${l}`));
  for (let h = 0; h < s.heads; h++) headSel.append(el('vscode-option' as 'option', { value: String(h) }, `head ${h}`));
  const backend = el('span', { class: 'badge', id: 'backend' }, 'starting…');
  const plot = el('div', { id: 'plot', class: 'plot square' });
  const table = el('div', { id: 'entropy' });
  app.replaceChildren(el('header', { class: 'toolbar' }, el('strong', {}, 'Attention'), el('span', { class: 'muted' }, `“${s.text}”`), backend, el('span', { class: 'spacer' }), layerSel, headSel), el('div', { class: 'split' }, plot, table));
  let layer = s.layer ?? s.layers - 1;
  let head = s.head ?? 0;
  (layerSel as unknown as { value: string }).value = String(layer);
  (headSel as unknown as { value: string }).value = String(head);
  compute ??= await Compute.start(s.compute);
  backend.textContent = compute.ready.backend === 'webgpu' ? 'WebGPU' : 'WASM';
  vscode.postMessage({ t: 'status', backend: compute.ready.backend, message: 'compute ready' });
  const hooks = Array.from({ length: s.layers }, (_, l) => `blocks.${l}.attn.hook_pattern`);
  const r = await compute.call('compute/trace', { ids: s.ids, hooks });
  patterns = r.activations;
  const T = s.ids.length;
  const labels = s.tokens.map((t, i) => `${i}:${t}`);
  const draw = () => {
    const p = patterns[`blocks.${layer}.attn.hook_pattern`]!.data;
    const z = Array.from({ length: T }, (_, q) => Array.from({ length: T }, (_, k) => (k <= q ? p[(head * T + q) * T + k]! : null)));
    const fg = themeColor('--vscode-editor-foreground', '#ccc');
    void Plotly.react(plot, [{ type: 'heatmap', z, x: labels, y: labels, colorscale: 'Viridis', zmin: 0, zmax: 1, hovertemplate: 'query %{y}<br>key %{x}<br>attention %{z:.3f}<extra></extra>', colorbar: { tickfont: { color: fg } } }], {
      paper_bgcolor: 'rgba(0,0,0,0)', plot_bgcolor: 'rgba(0,0,0,0)', font: { color: fg }, margin: { l: 110, r: 20, t: 30, b: 110 },
      title: { text: headId(layer, head), font: { size: 13 } },
      xaxis: { title: { text: 'key (attended to)' }, tickangle: -60, automargin: true, constrain: 'domain', constraintoward: 'left' }, yaxis: { title: { text: 'query' }, autorange: 'reversed', automargin: true, scaleanchor: 'x', constrain: 'domain', constraintoward: 'top' },
    }, { displaylogo: false, responsive: true });
    const rows = Array.from({ length: s.layers }, (_, l) => {
      const pl = patterns[`blocks.${l}.attn.hook_pattern`]!.data;
      return el('tr', {}, el('th', {}, `layer ${l}`), ...Array.from({ length: s.heads }, (_, h) => {
        const cell = el('td', { class: `num${l === layer && h === head ? ' selected' : ''}`, tabindex: '0', role: 'button', 'aria-label': `${headId(l, h)} entropy` }, entropyOf(pl, s.heads, T, h).toFixed(2));
        const pick = () => { layer = l; head = h; (layerSel as unknown as { value: string }).value = String(l); (headSel as unknown as { value: string }).value = String(h); draw(); };
        cell.addEventListener('click', pick);
        cell.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') pick(); });
        return cell;
      }));
    });
    table.replaceChildren(el('p', { class: 'muted' }, 'Mean attention entropy per head (nats; low = focused). Click a cell to show that head.'),
      el('table', { class: 'entropy' }, el('thead', {}, el('tr', {}, el('th', {}), ...Array.from({ length: s.heads }, (_, h) => el('th', {}, `h${h}`)))), el('tbody', {}, ...rows)));
    vscode.setState({ ...s, layer, head });
  };
  layerSel.addEventListener('change', () => { layer = Number((layerSel as unknown as { value: string }).value); draw(); });
  headSel.addEventListener('change', () => { head = Number((headSel as unknown as { value: string }).value); draw(); });
  draw();
}

window.addEventListener('message', (e: MessageEvent<PromptToView>) => {
  if (e.data.t === 'state') show(e.data.state).catch((err: Error) => { app.textContent = `Error: ${err.message}`; vscode.postMessage({ t: 'error', message: err.message }); });
});
vscode.postMessage({ t: 'ready' });
