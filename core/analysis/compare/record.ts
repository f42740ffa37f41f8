// The JSON of `circuitlens compare --json` (DESIGN §7 keys first, then the extras), built in one place.
import { round6 } from '../records';
import type { Comparison, ModelSide, Rediscovery, SuiteSummary } from './compare';
import { byMetric } from './compare';

const summary = (s: SuiteSummary) => ({
  metric: s.metric, value: round6(s.value), accuracy: round6(s.accuracy), logitDiff: s.logitDiff === null ? null : round6(s.logitDiff),
  prob: round6(s.prob), prompts: s.prompts,
});

const side = (s: ModelSide, model?: string) => ({ ...(model !== undefined ? { model } : {}), task: summary(s.task), ...(s.control ? { control: summary(s.control) } : {}) });

const rediscovered = (r: Rediscovery) => {
  const v = r.discovered.verification;
  return {
    members: r.members, nodes: r.discovered.nodes, faithfulness: round6(v.faithfulness),
    faithfulnessByMetric: byMetric(v.faithfulnessByMetric, round6), necessity: round6(v.necessity),
  };
};

/** `models`: the model paths to show (relative, as the front end prints them). */
export function comparisonRecord(c: Comparison, models: { a?: string; b?: string } = {}): Record<string, unknown> {
  const k = c.circuit;
  return {
    a: side(c.a, models.a),
    b: side(c.b, models.b),
    nodes: c.nodes.map((n) => ({ id: n.id, scoreA: round6(n.scoreA), scoreB: round6(n.scoreB), delta: round6(n.delta) })),
    ...(k ? {
      circuit: {
        faithfulnessA: round6(k.faithfulnessA), faithfulnessB: round6(k.faithfulnessB), jaccard: round6(k.jaccard), entered: k.entered, left: k.left,
        name: k.name, level: k.level, metric: k.metric, drop: round6(k.drop),
        faithfulnessByMetricA: byMetric(k.a.faithfulness, round6), faithfulnessByMetricB: byMetric(k.b.faithfulness, round6),
        necessityByMetricA: byMetric(k.a.necessity, round6), necessityByMetricB: byMetric(k.b.necessity, round6),
        rediscovered: {
          options: k.rediscoveredB.options, optionsFrom: k.rediscoveredB.optionsFrom,
          b: rediscovered(k.rediscoveredB),
          ...(k.rediscoveredA ? { a: rediscovered(k.rediscoveredA), jaccard: round6(k.jaccardRediscovered!) } : {}),
        },
      },
    } : {}),
    metric: c.metric, ablation: c.ablation, nodeMethod: c.nodeMethod,
  };
}
