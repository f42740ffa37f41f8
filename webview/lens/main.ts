// Logit lens: each layer's residual stream read out through the final norm and unembedding — the answer's and
// foil's logits per layer and position, and the top tokens.
import type { PromptState, PromptToHost } from '../../protocol/prompt';
import { Compute } from '../common/compute-client';
import { chartColors, drawPlot } from '../common/plot';
import { drawStates, el, hostApi } from '../common/vscode-api';

const vscode = hostApi<PromptToHost, PromptState>();
const app = document.getElementById('app')!;
let compute: Compute | undefined;

function topK(row: Float32Array, k: number): number[] {
  return [...row.keys()].sort((a, b) => row[b]! - row[a]!).slice(0, k);
}

async function show(s: PromptState): Promise<void> {
  const backend = el('span', { class: 'badge', id: 'backend' }, 'starting…');
  const plot = el('div', { id: 'plot', class: 'plot' });
  const table = el('div', { id: 'top-tokens' });
  app.replaceChildren(el('header', { class: 'toolbar' }, el('strong', {}, 'Logit lens'), el('span', { class: 'muted' }, `“${s.text}”`), backend), plot, table);
  compute ??= await Compute.start(s.compute);
  backend.textContent = compute.ready.backend === 'webgpu' ? 'WebGPU' : 'WASM';
  vscode.postMessage({ t: 'status', backend: compute.ready.backend, message: 'compute ready' });
  const r = await compute.call('compute/trace', { ids: s.ids, hooks: [], lens: true });
  const lens = r.lens!;
  const T = s.ids.length;
  const V = lens[0]!.dims[2]!;
  const row = (l: number, t: number) => lens[l]!.data.subarray(t * V, (t + 1) * V);
  const finalLast = row(s.layers - 1, T - 1);
  const answer = s.answer ?? topK(finalLast, 1)[0]!;
  const foil = s.foil;
  const tok = (i: number) => s.vocab[i] ?? `#${i}`;
  const labels = s.tokens.map((t, i) => `${i}:${t}`);
  // Value per layer and position: the answer's logit minus the foil's (or the answer's log-probability).
  const z = Array.from({ length: s.layers }, (_, l) => Array.from({ length: T }, (_, t) => {
    const x = row(l, t);
    if (foil !== undefined) return x[answer]! - x[foil]!;
    let m = -Infinity; for (const v of x) m = Math.max(m, v);
    let zs = 0; for (const v of x) zs += Math.exp(v - m);
    return x[answer]! - m - Math.log(zs);
  }));
  const hover = Array.from({ length: s.layers }, (_, l) => Array.from({ length: T }, (_, t) => topK(row(l, t), 5).map((i) => `${tok(i)} ${row(l, t)[i]!.toFixed(2)}`).join('<br>')));
  const { fg } = chartColors();
  const what = foil !== undefined ? `logit(${tok(answer)}) − logit(${tok(foil)})` : `log p(${tok(answer)})`;
  // A logit difference is signed (diverging scale around 0); a log-probability is ≤ 0, so a sequential scale
  // topped at 0 keeps the most likely cells brightest instead of mid-scale grey.
  const scale = foil !== undefined ? { colorscale: 'RdBu', zmid: 0 } : { colorscale: 'Viridis', zmin: Math.min(...z.flat()), zmax: 0 };
  await drawPlot(plot, [{ type: 'heatmap', z, x: labels, y: Array.from({ length: s.layers }, (_, l) => `after layer ${l}`), customdata: hover, ...scale,
    hovertemplate: `%{y}, position %{x}<br>${what} = %{z:.3f}<br><b>top tokens</b><br>%{customdata}<extra></extra>`, colorbar: { tickfont: { color: fg } } }], {
    margin: { l: 110, r: 20, t: 30, b: 110 },
    title: { text: what, font: { size: 13 } }, xaxis: { tickangle: -60, automargin: true }, yaxis: { automargin: true },
  });
  const rows = Array.from({ length: s.layers }, (_, l) => el('tr', {}, el('th', {}, `after layer ${l}`), ...topK(row(l, T - 1), 5).map((i) => el('td', { class: i === answer ? 'answer' : i === foil ? 'foil' : '' }, `${tok(i)} (${row(l, T - 1)[i]!.toFixed(2)})`))));
  table.replaceChildren(el('p', { class: 'muted' }, `Top tokens at the last position (answer ${tok(answer)}${foil !== undefined ? `, foil ${tok(foil)}` : ''}).`),
    el('table', { class: 'lens' }, el('tbody', {}, ...rows)));
  vscode.setState(s);
}

drawStates(vscode, show);
