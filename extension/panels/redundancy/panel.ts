import { backupCandidates, type RedundancyResult } from '../../../core/analysis/redundancy/redundancy';
import type { RelateResult } from '../../../core/analysis/relate/relate';
import { METRICS } from '../../../core/vocabulary';
import type { PairMatrix, RedundancyState, RelateState, RelationsState } from '../../../protocol/redundancy';
import type { ResultView } from '../result-panel';

/** The view's state of a redundancy result: per metric, symmetric matrices over the nodes. */
export function redundancyState(r: RedundancyResult, title: string): RedundancyState {
  const ids = r.nodes.map((n) => n.id);
  const at = new Map(ids.map((id, i) => [id, i]));
  const byMetric: Record<string, PairMatrix> = {};
  for (const m of METRICS) {
    const single = new Array<number>(ids.length).fill(NaN);
    const pair = ids.map(() => new Array<number>(ids.length).fill(NaN));
    const interaction = ids.map(() => new Array<number | null>(ids.length).fill(null));
    for (const p of r.pairs) {
      const i = at.get(p.a)!;
      const j = at.get(p.b)!;
      const e = p.byMetric[m];
      single[i] = e.effectA;
      single[j] = e.effectB;
      pair[i]![j] = pair[j]![i] = e.effectAB;
      interaction[i]![j] = interaction[j]![i] = e.interaction;
    }
    ids.forEach((_, i) => { pair[i]![i] = single[i]!; });
    byMetric[m] = { single, pair, interaction, full: r.fullEffect[m], backups: backupCandidates(r, m).map((p) => [p.a, p.b, p.byMetric[m].interaction]) };
  }
  return { version: 1, kind: 'redundancy', title, metric: r.metric, ablation: r.ablation, prompts: r.prompts, selection: r.selection, nodes: ids, byMetric };
}

/** The view's state of a relate result: the Jaccard matrix, each pair's union and intersection, the hubs. */
export function relateState(r: RelateResult, title: string): RelateState {
  const n = r.circuits.length;
  const at = new Map(r.circuits.map((c, i) => [c.file, i]));
  const jaccard = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : NaN)));
  const pairs = r.pairs.map((p) => {
    const a = at.get(p.a)!;
    const b = at.get(p.b)!;
    jaccard[a]![b] = jaccard[b]![a] = p.jaccard;
    return { a, b, shared: p.shared, union: { onA: p.union.onA, onB: p.union.onB }, intersection: { onA: p.intersection.onA, onB: p.intersection.onB } };
  });
  return {
    version: 1, kind: 'relate', title, jaccard, pairs,
    circuits: r.circuits.map((c) => ({ file: c.file, name: c.name, nodes: c.nodes, suite: c.suite, model: c.model, faithfulness: c.faithfulness })),
    hubs: r.hubs.map((h) => ({ id: h.id, circuits: h.circuits.length, drops: h.drops })),
  };
}

/**
 * The relations panel: one at a time, refreshed in place by the next result (Redundancy or Relate). Restored after a
 * reload through JSON, so the matrices' NaN (no value) come back as null, which the view draws as gaps.
 */
export const RELATIONS_VIEW: ResultView<RelationsState> = {
  type: 'circuitlens.relations', bundle: 'redundancy', what: 'relations', reuse: true,
  restorable: (saved): saved is RelationsState => saved?.kind === 'redundancy' || saved?.kind === 'relate',
};
