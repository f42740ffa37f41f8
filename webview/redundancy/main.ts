// The relations view: a heatmap of pair interactions (Redundancy (Backup Heads)), switchable between metrics, with
// the candidate backups; or a heatmap of circuit overlaps (Relate Circuits) with each pair's union and intersection
// faithfulness and the hub nodes. The host computed everything; the view draws the state it is sent.
import type { PairMatrix, RedundancyState, RelateState, RelationsState } from '../../protocol/redundancy';
import type { ViewToHost } from '../../protocol/ipc';
import { chartColors, drawPlot } from '../common/plot';
import { drawStates, el, hostApi } from '../common/vscode-api';

const vscode = hostApi<ViewToHost, RelationsState>();
const app = document.getElementById('app')!;
const f3 = (x: number | null | undefined) => (x === null || x === undefined || !Number.isFinite(x) ? '—' : x.toFixed(3));

function layout(title: string, n: number) {
  return {
    margin: { l: 90, r: 20, t: 40, b: 90 },
    title: { text: title, font: { size: 13 } }, xaxis: { tickangle: -45, automargin: true, side: 'bottom' },
    yaxis: { automargin: true, autorange: 'reversed', scaleanchor: 'x' }, height: Math.max(360, Math.min(720, 90 + 48 * n)),
  };
}

const METRIC_TEXT: Record<string, string> = {
  logit_diff: 'logit difference', prob: 'probability of the answer', accuracy: 'accuracy', kl: 'KL to the clean model (rise)',
};

async function drawPairs(s: RedundancyState, metric: string, plot: HTMLElement, notes: HTMLElement): Promise<void> {
  const m: PairMatrix = s.byMetric[metric]!;
  const n = s.nodes.length;
  const text = s.nodes.map((a, i) => s.nodes.map((b, j) => (i === j
    ? `${a} alone: effect ${f3(m.single[i])}`
    : `${a} + ${b}<br>together ${f3(m.pair[i]![j])}<br>${a} alone ${f3(m.single[i])}, ${b} alone ${f3(m.single[j])}<br>interaction ${f3(m.interaction[i]![j])}`)));
  const zmax = Math.max(1e-9, ...m.interaction.flat().filter((x): x is number => x !== null && Number.isFinite(x)).map(Math.abs));
  await drawPlot(plot, [{
    type: 'heatmap', x: s.nodes, y: s.nodes, z: m.interaction, text, hovertemplate: '%{text}<extra></extra>', colorscale: 'RdBu',
    zmin: -zmax, zmax, zmid: 0, hoverongaps: false, colorbar: { title: { text: 'interaction', side: 'right' }, tickfont: { color: chartColors().fg } },
  }], layout(`interaction in ${METRIC_TEXT[metric] ?? metric}: effect(A∪B) − effect(A) − effect(B)`, n));
  const rows = m.backups.map(([a, b, x]) => el('tr', {}, el('td', {}, `${a} + ${b}`), el('td', { class: 'num' }, f3(x))));
  notes.replaceChildren(
    el('p', { class: 'muted' }, `Red: the pair does more together than the sum of each alone — each covers for the other (a backup). Blue: less than the sum (overlap, or a saturating metric). All ${n} ablated together: ${f3(m.full)}.`),
    el('h3', {}, `Backups by ${metric}`),
    rows.length
      ? el('table', { id: 'backups' }, el('thead', {}, el('tr', {}, el('th', {}, 'pair'), el('th', {}, 'interaction'))), el('tbody', {}, ...rows))
      : el('p', { id: 'backups', class: 'muted' }, 'none'),
    el('p', { class: 'muted' }, 'Listed when the interaction is at least 10 % of the effect of all of them together: a threshold (a heuristic), not a test.'),
  );
}

async function showRedundancy(s: RedundancyState): Promise<void> {
  const select = el('select', { id: 'metric', title: 'the metric the effects are measured in' }, ...Object.keys(s.byMetric).map((m) => {
    const o = el('option', { value: m }, m);
    if (m === s.metric) o.setAttribute('selected', '');
    return o;
  }));
  const plot = el('div', { id: 'plot', class: 'plot square' });
  const notes = el('div', { id: 'notes' });
  app.replaceChildren(
    el('header', { class: 'toolbar' }, el('strong', {}, 'Redundancy'), el('span', { class: 'muted' }, `${s.selection}; ${s.ablation} ablation, ${s.prompts} task prompts`),
      el('span', { class: 'spacer' }), el('label', { class: 'group' }, 'metric ', select)),
    plot, notes,
  );
  select.addEventListener('change', () => { void drawPairs(s, select.value, plot, notes); });
  await drawPairs(s, s.metric, plot, notes);
}

async function showRelate(s: RelateState): Promise<void> {
  const labels = s.circuits.map((c, i) => `[${i + 1}] ${c.file.split('/').pop()!.replace(/\.circuit\.json$/, '')}`);
  const plot = el('div', { id: 'plot', class: 'plot square' });
  app.replaceChildren(el('header', { class: 'toolbar' }, el('strong', {}, 'Relate circuits'), el('span', { class: 'muted' }, `${s.circuits.length} circuits; Jaccard overlap of their nodes`)), plot);
  const text = s.jaccard.map((row, i) => row.map((x, j) => {
    const p = s.pairs.find((q) => (q.a === i && q.b === j) || (q.a === j && q.b === i));
    return i === j ? `${labels[i]}: ${s.circuits[i]!.nodes.length} nodes` : `${labels[i]} / ${labels[j]}<br>Jaccard ${f3(x)}<br>shared ${p?.shared.join(', ') || 'none'}`;
  }));
  await drawPlot(plot, [{ type: 'heatmap', x: labels, y: labels, z: s.jaccard, text, hovertemplate: '%{text}<extra></extra>', colorscale: 'Viridis', zmin: 0, zmax: 1,
    texttemplate: '%{z:.2f}', colorbar: { title: { text: 'Jaccard', side: 'right' } } }], layout('Jaccard overlap of circuit nodes', s.circuits.length));
  const fm = (f: Record<string, number> | null) => (f ? `ld ${f3(f['logit_diff'])} · acc ${f3(f['accuracy'])}` : 'n/a');
  const pairRows = s.pairs.map((p) => el('tr', {}, el('td', {}, `[${p.a + 1}] + [${p.b + 1}]`), el('td', { class: 'num' }, f3(s.jaccard[p.a]![p.b]!)),
    el('td', {}, fm(p.union.onA)), el('td', {}, fm(p.union.onB)), el('td', {}, fm(p.intersection.onA)), el('td', {}, fm(p.intersection.onB))));
  const hubRows = s.hubs.map((h) => el('tr', {}, el('td', {}, el('strong', {}, h.id)), el('td', { class: 'num' }, `${h.circuits}/${s.circuits.length}`),
    el('td', {}, h.drops.map((d) => `${f3(d.drop)} (${d.model.split('/').pop()})`).join(', '))));
  app.append(
    el('h3', {}, 'Faithfulness of the union and of the intersection, on each circuit\'s own suite'),
    el('table', { id: 'pairs' }, el('thead', {}, el('tr', {}, ...['pair', 'Jaccard', 'union on A', 'union on B', 'intersection on A', 'intersection on B'].map((t) => el('th', {}, t)))), el('tbody', {}, ...pairRows)),
    el('h3', {}, 'Hubs'),
    el('p', { class: 'muted' }, 'In more than half of the circuits, or ablating the node alone costs ≥ 10 % of the whole effect on more than half of the suites (a heuristic). Nodes are compared by id.'),
    hubRows.length
      ? el('table', { id: 'hubs' }, el('thead', {}, el('tr', {}, el('th', {}, 'node'), el('th', {}, 'circuits'), el('th', {}, 'drop alone, share of the whole effect'))), el('tbody', {}, ...hubRows))
      : el('p', { id: 'hubs', class: 'muted' }, 'none'),
    el('ol', { class: 'muted' }, ...s.circuits.map((c) => el('li', {}, `${c.file} — ${c.nodes.length} nodes on ${c.suite} (${c.model}); own faithfulness ${fm(c.faithfulness)}`))),
  );
}

drawStates(vscode, (s) => {
  vscode.setState(s);
  return s.kind === 'redundancy' ? showRedundancy(s) : showRelate(s);
});
