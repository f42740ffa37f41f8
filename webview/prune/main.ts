// Pruning curves: a suite's metric (solid) and accuracy (dotted) against the sparsity reached, one colour per
// strategy, the unpruned model at 0; a table of every point (capped outside-circuit points marked).
import type { PruneState, PruneViewPoint } from '../../protocol/prune';
import type { ViewToHost } from '../../protocol/ipc';
import { chartColors, drawPlot, grey } from '../common/plot';
import { drawStates, el, hostApi } from '../common/vscode-api';

const vscode = hostApi<ViewToHost, PruneState>();
const app = document.getElementById('app')!;

const f3 = (x: number | undefined) => (x === undefined ? '—' : Number.isFinite(x) ? x.toFixed(3) : String(x));
/** KL near zero keeps its size (1.2e-4), not 0.000. */
const small = (x: number | undefined) => (x !== undefined && Number.isFinite(x) && x !== 0 && Math.abs(x) < 0.01 ? x.toExponential(1) : f3(x));

/** The points drawn: the unpruned model at 0, then each point at the sparsity it reached (a capped run once). */
function drawn(s: PruneState, points: PruneViewPoint[]): { x: number[]; metric: number[]; accuracy: number[]; text: string[] } {
  const out = { x: [0], metric: [s.baseline.metric], accuracy: [s.baseline.accuracy], text: ['unpruned'] };
  let cappedShown = false;
  for (const p of points) {
    if (p.sparsity === 0) continue;
    if (p.capped) { if (cappedShown) continue; cappedShown = true; }
    out.x.push(p.reached);
    out.metric.push(p.metric);
    out.accuracy.push(p.accuracy);
    out.text.push(p.capped ? `asked ${p.sparsity}, capped at ${f3(p.reached)}` : `sparsity ${p.sparsity}`);
  }
  return out;
}

async function show(s: PruneState): Promise<void> {
  const plot = el('div', { id: 'plot', class: 'plot' });
  const faith = s.circuit !== undefined;
  const rows = s.curves.flatMap((c) => c.points.map((p) => el('tr', {},
    el('td', {}, c.strategy), el('td', { class: 'num' }, String(p.sparsity)), el('td', { class: 'num' }, f3(p.reached) + (p.capped ? ' (capped)' : '')),
    el('td', { class: 'num' }, f3(p.metric)), el('td', { class: 'num' }, f3(p.accuracy)), el('td', { class: 'num' }, small(p.kl)),
    ...(faith ? [el('td', { class: 'num' }, f3(p.faithfulness))] : []))));
  const circuitText = s.circuit
    ? `circuit "${s.circuit.name}" (${s.circuit.nodes} nodes) owns ${s.circuit.ownedEntries} of ${s.prunableEntries} prunable entries: outside-circuit stops at ${f3(s.circuit.maxSparsity)}`
    : 'no circuit: magnitude and layer-waves';
  app.replaceChildren(
    el('header', { class: 'toolbar' }, el('strong', {}, 'Pruning'), el('span', { class: 'muted' }, `${s.suiteName} · ${s.modelName}`),
      el('span', { class: 'badge', id: 'summary' }, `unpruned: ${s.metric} ${f3(s.baseline.metric)}, accuracy ${f3(s.baseline.accuracy)}`)),
    plot,
    el('p', { class: 'muted' }, `${s.prompts} task prompts; ${s.prunableEntries} prunable entries (attention and MLP weight matrices). ${circuitText}. `
      + 'Solid: the metric; dotted: accuracy. Sparsity: the fraction of all prunable entries that are zero. No fine-tuning after pruning.'),
    el('table', { id: 'points' }, el('thead', {}, el('tr', {}, ...['strategy', 'sparsity', 'reached', s.metric, 'accuracy', 'KL to unpruned', ...(faith ? ['faithfulness'] : [])].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...rows)),
  );
  const { fg, blue, green, purple } = chartColors();
  const colors: Record<string, string> = { magnitude: blue, 'outside-circuit': green, 'layer-waves': purple };
  const traces: unknown[] = [];
  for (const c of s.curves) {
    const d = drawn(s, c.points);
    const color = colors[c.strategy] ?? fg;
    traces.push(
      { x: d.x, y: d.metric, text: d.text, type: 'scatter', mode: 'lines+markers', name: `${c.strategy}: ${s.metric}`, yaxis: 'y', line: { color, width: 2 }, legendgroup: c.strategy,
        hovertemplate: `${c.strategy}, %{text}<br>${s.metric} %{y:.3f}<extra></extra>` },
      { x: d.x, y: d.accuracy, text: d.text, type: 'scatter', mode: 'lines+markers', name: `${c.strategy}: accuracy`, yaxis: 'y2', line: { color, width: 2, dash: 'dot' }, marker: { symbol: 'diamond' }, legendgroup: c.strategy,
        hovertemplate: `${c.strategy}, %{text}<br>accuracy %{y:.3f}<extra></extra>` },
    );
  }
  const shapes: unknown[] = s.circuit
    ? [{ type: 'line', xref: 'x', x0: s.circuit.maxSparsity, x1: s.circuit.maxSparsity, yref: 'paper', y0: 0, y1: 1, line: { color: colors['outside-circuit'], dash: 'dash', width: 1 } }]
    : [];
  const annotations: unknown[] = s.circuit
    ? [{ x: s.circuit.maxSparsity, xref: 'x', y: 1.02, yref: 'paper', text: 'all but the circuit pruned', showarrow: false, font: { color: colors['outside-circuit'] }, yanchor: 'bottom' }]
    : [];
  await drawPlot(plot, traces, {
    margin: { l: 60, r: 60, t: 40, b: 50 },
    xaxis: { title: { text: 'sparsity (fraction of attention and MLP weights set to zero)' }, range: [-0.02, 1], zeroline: false, gridcolor: grey(0.2) },
    yaxis: { title: { text: s.metric }, zeroline: true, zerolinecolor: grey(0.4), gridcolor: grey(0.2) },
    yaxis2: { title: { text: 'accuracy' }, overlaying: 'y', side: 'right', range: [-0.02, 1.02], tickmode: 'linear', tick0: 0, dtick: 0.25, showgrid: false },
    legend: { orientation: 'h', x: 0, y: -0.2 }, shapes, annotations, hovermode: 'closest',
  });
  vscode.setState(s);
}

drawStates(vscode, show, (saved): saved is PruneState => !!saved?.curves);
