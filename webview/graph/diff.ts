// The diff view of two checkpoints: the graph of B with each node and edge coloured by how its importance changed
// from the baseline A (core/analysis/compare/change.ts), the circuit outlined as saved (A) and as re-discovered on
// B, and the metrics side by side.
import { changeOf, changeScale, type Change } from '../../core/analysis/compare/change';
import { formatEdgeId, parseNodeId } from '../../core/ids';
import type { GraphDiff, GraphState } from '../../protocol/graph';
import { chartColors } from '../common/plot';
import { el, themeColor } from '../common/vscode-api';

export interface DiffColors { gained: string; lost: string; unchanged: string; ringA: string; ringB: string; fg: string }

export function diffColors(): DiffColors {
  const c = chartColors();
  return { gained: c.green, lost: c.orange, unchanged: themeColor('--vscode-descriptionForeground', '#8b8b8b'), ringA: c.purple, ringB: c.blue, fg: c.fg };
}

export interface DiffNode { id: string; a: number; b: number; change: Change; size: number }

/** Nodes of B with A's scores beside them; importance (for size and the threshold) is the larger |score|. */
export function diffNodes(s: GraphState, d: GraphDiff): DiffNode[] {
  const a = new Map(d.nodes.map((n) => [n.id, n.score]));
  const scale = changeScale(d.nodes.map((n) => n.score), s.nodes.map((n) => n.score));
  return s.nodes.map((n) => {
    const sa = a.get(n.id) ?? 0;
    return { id: n.id, a: sa, b: n.score, change: changeOf(sa, n.score, scale), size: Math.max(Math.abs(sa), Math.abs(n.score)) };
  });
}

/** Edges of either checkpoint, with both scores and their change. */
export function diffEdges(s: GraphState, d: GraphDiff): { source: string; target: string; a: number; b: number; change: Change; size: number }[] {
  const a = new Map(d.edges.map((e) => [formatEdgeId(e), e.score]));
  const b = new Map(s.edges.map((e) => [formatEdgeId(e), e.score]));
  const scale = changeScale(a.values(), b.values());
  const ids = new Set([...a.keys(), ...b.keys()]);
  return [...ids].map((id) => {
    const [source, target] = id.split('->') as [string, string];
    const sa = a.get(id) ?? 0;
    const sb = b.get(id) ?? 0;
    return { source, target, a: sa, b: sb, change: changeOf(sa, sb, scale), size: Math.max(Math.abs(sa), Math.abs(sb)) };
  });
}

/** Rings around the circuit's nodes: outer as saved (A), inner as re-discovered on B. */
export function circuitRings(d: GraphDiff, pos: Map<string, [number, number]>, sizeOf: (id: string) => number, c: DiffColors): unknown[] {
  if (!d.circuit) return [];
  const ring = (ids: string[], extra: number, color: string, name: string) => {
    const at = ids.filter((id) => pos.has(id));
    return {
      type: 'scatter', mode: 'markers', name, showlegend: true, hoverinfo: 'skip',
      x: at.map((id) => pos.get(id)![0]), y: at.map((id) => pos.get(id)![1]),
      marker: { size: at.map((id) => sizeOf(id) + extra), symbol: at.map((id) => (parseNodeId(id).kind === 'mlp' ? 'square-open' : 'circle-open')), color, line: { color, width: 2 } },
    };
  };
  return [ring(d.circuit.a, 14, c.ringA, `circuit on A (${d.circuit.a.length})`), ring(d.circuit.b, 6, c.ringB, `re-discovered on B (${d.circuit.b.length})`)];
}

/** The legend line and the metrics side by side. */
export function diffSummary(s: GraphState, d: GraphDiff, nodes: DiffNode[]): HTMLElement {
  const fmt = (x: number | null) => (x === null || !Number.isFinite(x) ? '—' : x.toFixed(3));
  const count = (c: Change) => nodes.filter((n) => n.change === c && n.id !== 'input' && n.id !== 'logits').length;
  const rows = d.metrics.map((m) => el('tr', {}, el('td', {}, m.name), el('td', { class: 'num' }, fmt(m.a)), el('td', { class: 'num' }, fmt(m.b)),
    el('td', { class: 'num' }, m.a !== null && m.b !== null ? `${m.b - m.a >= 0 ? '+' : ''}${(m.b - m.a).toFixed(3)}` : '—')));
  const entered = d.circuit ? d.circuit.b.filter((n) => !d.circuit!.a.includes(n)) : [];
  const left = d.circuit ? d.circuit.a.filter((n) => !d.circuit!.b.includes(n)) : [];
  return el('section', { id: 'diff-summary' },
    el('p', { class: 'muted' }, `B is this graph (${s.modelPath.split(/[\\/]/).pop()}); A is the baseline (${d.baselinePath.split(/[\\/]/).pop()}). Green: matters more on B, orange: less, grey: unchanged (the change in |score| is under a tenth of the largest |score|). Size: the larger |score| of the two. ${count('gained')} nodes gained, ${count('lost')} lost, ${count('unchanged')} unchanged.`),
    el('table', { class: 'prompts', id: 'diff-metrics' }, el('thead', {}, el('tr', {}, el('th', {}, 'metric'), el('th', {}, 'A'), el('th', {}, 'B'), el('th', {}, 'B − A'))), el('tbody', {}, ...rows)),
    d.circuit ? el('p', { class: 'muted', id: 'diff-circuit' }, `${d.circuit.name}: outer ring as saved on A (${d.circuit.a.join(', ')}), inner ring re-discovered on B (${d.circuit.b.join(', ')}); entered ${entered.join(', ') || 'none'}, left ${left.join(', ') || 'none'}.`) : '',
  );
}
