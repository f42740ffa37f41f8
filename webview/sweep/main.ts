// Sweep: a suite's metric and accuracy against a swept variable (padding, distractors, ...), each with its
// bootstrap interval as a band, the accuracy level as a dashed line and n* (where accuracy crosses it) marked.
import type { SweepState } from '../../protocol/sweep';
import type { ViewToHost } from '../../protocol/ipc';
import { chartColors, drawPlot, grey } from '../common/plot';
import { drawStates, el, hostApi } from '../common/vscode-api';

const vscode = hostApi<ViewToHost, SweepState>();
const app = document.getElementById('app')!;

const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : String(x));

/** rgba() of a #rrggbb colour (bands are the line's colour, faint). */
function faint(hex: string, alpha: number): string {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})/i.exec(hex.trim());
  return m ? `rgba(${parseInt(m[1]!, 16)}, ${parseInt(m[2]!, 16)}, ${parseInt(m[3]!, 16)}, ${alpha})` : `rgba(128, 128, 128, ${alpha})`;
}

/** An interval as a band: the upper edge, then the lower edge filled up to it. */
function band(x: number[], lo: number[], hi: number[], color: string, yaxis: string, name: string): unknown[] {
  const common = { x, type: 'scatter', mode: 'lines', line: { width: 0 }, yaxis, hoverinfo: 'skip', legendgroup: name };
  return [{ ...common, y: hi, showlegend: false }, { ...common, y: lo, fill: 'tonexty', fillcolor: faint(color, 0.22), name: `${name} interval`, showlegend: false }];
}

async function show(s: SweepState): Promise<void> {
  const pct = Math.round(s.bootstrap.confidence * 100);
  const c = s.critical;
  const criticalText = c
    ? `${s.variable}* = ${f3(c.value)}: accuracy ${c.direction === 'falls' ? 'falls below' : 'rises to'} ${s.level} between ${s.variable} = ${c.between[0]} and ${c.between[1]}`
      + (c.ci ? ` (${pct}% interval ${f3(c.ci[0])} – ${f3(c.ci[1])})` : '')
    : `no ${s.variable}*: accuracy stays ${s.points.every((p) => p.accuracy >= s.level) ? 'at or above' : 'below'} ${s.level} at every value`;
  const plot = el('div', { id: 'plot', class: 'plot' });
  const rows = s.points.map((p) => el('tr', {},
    el('td', { class: 'num' }, String(p.value)), el('td', { class: 'num' }, String(p.prompts)),
    el('td', { class: 'num' }, f3(p.metric)), el('td', { class: 'num' }, p.ci ? `${f3(p.ci.metric[0])} – ${f3(p.ci.metric[1])}` : '—'),
    el('td', { class: 'num' }, f3(p.accuracy)), el('td', { class: 'num' }, p.ci ? `${f3(p.ci.accuracy[0])} – ${f3(p.ci.accuracy[1])}` : '—')));
  app.replaceChildren(
    el('header', { class: 'toolbar' }, el('strong', {}, 'Sweep'), el('span', { class: 'muted' }, `${s.suiteName} · ${s.modelName}`),
      el('span', { class: 'badge', id: 'critical' }, criticalText)),
    plot,
    el('p', { class: 'muted' }, `Mean over the prompts at each value; bands: ${pct}% percentile bootstrap intervals (${s.bootstrap.resamples} resamples, seed ${s.bootstrap.seed}). `
      + `${s.variable}* interpolates linearly between the two values around the crossing.`),
    el('table', { id: 'points' }, el('thead', {}, el('tr', {}, ...[s.variable, 'prompts', s.metric, `${pct}% interval`, 'accuracy', `${pct}% interval`].map((h) => el('th', {}, h)))), el('tbody', {}, ...rows)),
  );
  const { blue: metricColor, orange: accColor, red: markColor } = chartColors();
  const x = s.points.map((p) => p.value);
  const traces: unknown[] = [];
  if (s.points.every((p) => p.ci)) {
    traces.push(...band(x, s.points.map((p) => p.ci!.metric[0]), s.points.map((p) => p.ci!.metric[1]), metricColor, 'y', s.metric));
    traces.push(...band(x, s.points.map((p) => p.ci!.accuracy[0]), s.points.map((p) => p.ci!.accuracy[1]), accColor, 'y2', 'accuracy'));
  }
  traces.push(
    { x, y: s.points.map((p) => p.metric), type: 'scatter', mode: 'lines+markers', name: s.metric, yaxis: 'y', line: { color: metricColor, width: 2 }, legendgroup: s.metric,
      hovertemplate: `${s.variable} = %{x}<br>${s.metric} %{y:.3f}<extra></extra>` },
    { x, y: s.points.map((p) => p.accuracy), type: 'scatter', mode: 'lines+markers', name: 'accuracy', yaxis: 'y2', line: { color: accColor, width: 2 }, legendgroup: 'accuracy',
      hovertemplate: `${s.variable} = %{x}<br>accuracy %{y:.3f}<extra></extra>` },
  );
  const shapes: unknown[] = [{ type: 'line', xref: 'paper', x0: 0, x1: 1, yref: 'y2', y0: s.level, y1: s.level, line: { color: accColor, dash: 'dot', width: 1 } }];
  const annotations: unknown[] = [];
  if (c) {
    shapes.push({ type: 'line', xref: 'x', x0: c.value, x1: c.value, yref: 'paper', y0: 0, y1: 1, line: { color: markColor, dash: 'dash', width: 2 } });
    if (c.ci) shapes.push({ type: 'rect', xref: 'x', x0: c.ci[0], x1: c.ci[1], yref: 'paper', y0: 0, y1: 1, fillcolor: faint(markColor, 0.12), line: { width: 0 } });
    annotations.push({ x: c.value, xref: 'x', y: 1.02, yref: 'paper', text: `${s.variable}* = ${f3(c.value)}`, showarrow: false, font: { color: markColor }, yanchor: 'bottom' });
  }
  await drawPlot(plot, traces, {
    margin: { l: 60, r: 60, t: 40, b: 50 },
    xaxis: { title: { text: s.variable }, zeroline: false, gridcolor: grey(0.2) },
    yaxis: { title: { text: s.metric, font: { color: metricColor } }, zeroline: true, zerolinecolor: grey(0.4), gridcolor: grey(0.2) },
    yaxis2: { title: { text: 'accuracy', font: { color: accColor } }, overlaying: 'y', side: 'right', range: [-0.02, 1.02], tickmode: 'linear', tick0: 0, dtick: 0.25, showgrid: false },
    legend: { orientation: 'h', x: 0, y: -0.18 }, shapes, annotations, hovermode: 'x unified',
  });
  vscode.setState(s);
}

drawStates(vscode, show, (saved): saved is SweepState => !!saved?.points);
