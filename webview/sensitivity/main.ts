// Quantization sensitivity: per weight scope, the suite's metric, accuracy, KL to the original model and (with a
// circuit) its faithfulness, as a table and as bar charts side by side, the unquantized model as a dashed line.
import type { SensitivityState } from '../../protocol/sensitivity';
import type { ViewToHost } from '../../protocol/ipc';
import { chartColors, drawPlot, grey } from '../common/plot';
import { drawStates, el, hostApi } from '../common/vscode-api';

const vscode = hostApi<ViewToHost, SensitivityState>();
const app = document.getElementById('app')!;

const f3 = (x: number | undefined) => (x === undefined ? '—' : Number.isFinite(x) ? x.toFixed(3) : String(x));
const exp = (x: number) => (x === 0 ? '0' : x.toExponential(2));

async function show(s: SensitivityState): Promise<void> {
  const faith = s.circuitName !== undefined;
  const plot = el('div', { id: 'plot', class: 'plot' });
  const head = ['scope', 'tensors', 'entries', 'rel. error', s.metric, 'drop', 'accuracy', 'KL', ...(faith ? ['faithfulness'] : [])];
  const cells = (scope: string, r: { tensors?: number; entries?: number; relativeError?: number; metricDrop?: number } & SensitivityState['baseline']) => el('tr', {},
    el('td', {}, scope), el('td', { class: 'num' }, r.tensors === undefined ? '' : String(r.tensors)),
    el('td', { class: 'num' }, r.entries === undefined ? '' : r.entries.toLocaleString('en')), el('td', { class: 'num' }, r.relativeError === undefined ? '' : exp(r.relativeError)),
    el('td', { class: 'num' }, f3(r.metric)), el('td', { class: 'num' }, r.metricDrop === undefined ? '' : f3(r.metricDrop)),
    el('td', { class: 'num' }, f3(r.accuracy)), el('td', { class: 'num' }, exp(r.kl)), ...(faith ? [el('td', { class: 'num' }, f3(r.faithfulness))] : []));
  app.replaceChildren(
    el('header', { class: 'toolbar' }, el('strong', {}, 'Quantization sensitivity'), el('span', { class: 'muted' }, `${s.suiteName} · ${s.modelName}`),
      el('span', { class: 'badge', id: 'quantization' }, s.quantization)),
    plot,
    el('table', { id: 'rows' }, el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))),
      el('tbody', {}, cells('(unquantized)', s.baseline), ...s.rows.map((r) => cells(r.scope, r)))),
    el('p', { class: 'muted' }, `${s.prompts} task prompts; KL from the original model's next-token distribution at the last position to the quantized one's.`
      + (faith ? ` Faithfulness of ${s.circuitName} under the quantized model (${s.metric}).` : '')),
    ...s.notes.map((n) => el('p', { class: 'muted' }, `Note: ${n}.`)),
  );
  const { fg, blue, orange, red, green } = chartColors();
  const colors = [blue, orange, red, green];
  const x = s.rows.map((r) => r.scope);
  const panels: { name: string; y: number[]; base: number; log?: boolean; range?: [number, number] }[] = [
    { name: s.metric, y: s.rows.map((r) => r.metric), base: s.baseline.metric },
    // Accuracy is a share: drawn on its whole range, so that no change does not look like one.
    { name: 'accuracy', y: s.rows.map((r) => r.accuracy), base: s.baseline.accuracy, range: [0, 1.05] },
    { name: 'KL', y: s.rows.map((r) => Math.max(r.kl, 1e-12)), base: NaN, log: true },
    ...(faith ? [{ name: 'faithfulness', y: s.rows.map((r) => r.faithfulness ?? NaN), base: s.baseline.faithfulness ?? NaN }] : []),
  ];
  const n = panels.length;
  const gap = 0.06;
  const w = (1 - gap * (n - 1)) / n;
  const layout: Record<string, unknown> = { margin: { l: 50, r: 20, t: 40, b: 90 }, showlegend: false, bargap: 0.3 };
  const shapes: unknown[] = [];
  const annotations: unknown[] = [];
  const traces = panels.map((p, i) => {
    const k = i === 0 ? '' : String(i + 1);
    const domain = [i * (w + gap), i * (w + gap) + w];
    layout[`xaxis${k}`] = { domain, anchor: `y${k}`, tickangle: -35 };
    const finite = p.y.filter(Number.isFinite);
    const lo = p.log ? undefined : Math.min(...finite, Number.isFinite(p.base) ? p.base : Infinity);
    const hi = p.log ? undefined : Math.max(...finite, Number.isFinite(p.base) ? p.base : -Infinity);
    const pad = lo !== undefined && hi !== undefined ? Math.max((hi - lo) * 0.6, Math.abs(hi) * 0.01, 1e-3) : 0;
    layout[`yaxis${k}`] = { anchor: `x${k}`, ...(p.log ? { type: 'log', exponentformat: 'e' } : { range: p.range ?? [lo! - pad, hi! + pad * 0.4] }), gridcolor: grey(0.2) };
    annotations.push({ text: p.name, xref: 'paper', yref: 'paper', x: (domain[0]! + domain[1]!) / 2, y: 1.02, xanchor: 'center', yanchor: 'bottom', showarrow: false, font: { color: colors[i % colors.length] } });
    if (Number.isFinite(p.base)) shapes.push({ type: 'line', xref: `x${k} domain`, x0: 0, x1: 1, yref: `y${k}`, y0: p.base, y1: p.base, line: { color: fg, dash: 'dash', width: 1 } });
    return { type: 'bar', x, y: p.y, xaxis: `x${k}`, yaxis: `y${k}`, name: p.name, marker: { color: colors[i % colors.length] },
      hovertemplate: `%{x}<br>${p.name} %{y:.4g}${Number.isFinite(p.base) ? `<br>unquantized ${p.base.toFixed(3)}` : ''}<extra></extra>` };
  });
  await drawPlot(plot, traces, { ...layout, shapes, annotations });
  vscode.setState(s);
}

drawStates(vscode, show, (saved): saved is SensitivityState => !!saved?.rows);
