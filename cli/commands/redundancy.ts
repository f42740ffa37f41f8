import { describeWork } from '../../core/analysis/cost';
import { backupCandidates, estimatePairs, redundancy, redundancyRecord } from '../../core/analysis/redundancy/redundancy';
import { UserError } from '../../core/errors';
import { parseNodeList } from '../../core/ids';
import { METRICS, type MetricName } from '../../core/vocabulary';
import { FORCE_OPTION, JSON_OPTION, oneOf, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';
import { BROKER_FLAGS, BROKER_OPTION, checkBrokerFlag, MODEL_URL_OPTION, withBroker } from '../broker';
import { loadForAnalysis } from '../common';
import { outFile, writeOutFile } from '../out-file';
import { f3 } from '../text';

export const REDUNDANCY_USAGE: Usage = {
  synopsis: 'circuitlens redundancy SUITE [--top K | --nodes IDS] [--metric M] [--model MODEL] [--ablation KIND] [--out FILE [--force]] [--broker URL [--model-url URL]] [--runtime node|wasm] [--json]',
  about: 'Backups and redundancy: the K most important heads and MLPs (by the drop when each alone is ablated) are\n'
    + 'ablated alone and in every pair, all in one batched evaluation. interaction = effect(A∪B) − effect(A) − effect(B),\n'
    + 'effects being drops of the metric (KL: its rise). A large positive interaction means the pair together does far\n'
    + 'more than the sum of each alone: each covers for the other (a backup). Every metric is measured: a logit\n'
    + 'difference saturates, so backups can look sub-additive in it while accuracy falls only when both go.',
  options: [
    ['--top K', 'pair the K nodes of largest |effect| alone (default 10; all nodes when the model has fewer)'],
    ['--nodes IDS', 'pair these nodes instead, e.g. a1.h0,a1.h1,m0'],
    ['--metric M', 'logit_diff, prob, accuracy or kl: the metric pairs are ranked by (default: the suite\'s metric:)'],
    ['--model MODEL', 'the model (default: the suite\'s model:)'],
    ['--ablation zero|mean|resample', 'how ablated nodes are replaced (default: the suite\'s ablation:)'],
    ['--out FILE', 'also write the JSON result to FILE'],
    FORCE_OPTION, BROKER_OPTION, MODEL_URL_OPTION, RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"metric", "ablation", "prompts", "selection", "nodes": [{"id", "score"}], "clean": {metric: value}, "fullEffect": {metric: drop},\n'
    + '  "pairs": [{"a", "b", "effectA", "effectB", "effectAB", "interaction", "byMetric": {metric: {"effectA", "effectB", "effectAB", "interaction"}}}]\n'
    + '  (largest interaction under --metric first), "backups": {metric: [[a, b], …]} (interaction ≥ 10% of fullEffect: a heuristic)}',
};

export async function redundancyCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    model: { type: 'string' }, top: { type: 'string' }, nodes: { type: 'string' }, metric: { type: 'string' }, ablation: { type: 'string' },
    out: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' }, runtime: { type: 'string' }, ...BROKER_FLAGS,
  }, REDUNDANCY_USAGE);
  if (positionals.length !== 1) throw usageError('expected one suite file', REDUNDANCY_USAGE);
  if (values.top !== undefined && values.nodes !== undefined) throw new UserError('give --top K or --nodes IDS, not both');
  const top = values.top === undefined ? 10 : Number(values.top);
  if (!Number.isInteger(top) || top < 2) throw new UserError(`--top must be a whole number of at least 2 (got "${values.top}")`);
  const metricFlag = values.metric === undefined ? undefined : oneOf(values.metric, METRICS, '--metric', 'logit_diff');
  const nodeFlag = values.nodes !== undefined ? parseNodeList(values.nodes) : undefined;
  const outPath = values.out !== undefined ? outFile(values.out, values.force) : undefined;
  await checkBrokerFlag(values);
  const L = await loadForAnalysis(positionals[0]!, values.model, values.ablation, values.runtime, false, 'redundancy');
  try {
    const metric = metricFlag ?? L.suite.metric;
    const k = nodeFlag?.length ?? Math.min(top, L.engine.info.layers * (L.engine.info.heads + 1));
    const work = estimatePairs(L.task, k);
    if ((work.seconds ?? 0) >= 2) process.stderr.write(`circuitlens redundancy: ${describeWork(work, L.engine.msPerToken)}\n`);
    // With --broker, the ranking's single ablations and every pair go to the workers (one evaluateSets each).
    const r = await withBroker(values, L, positionals[0]!, values.runtime, 'redundancy', () => redundancy(L.task, L.all, metric, { top, nodes: nodeFlag }));
    const record = redundancyRecord(r);
    if (outPath) await writeOutFile(outPath, JSON.stringify(record, null, 2) + '\n', values.force);
    if (values.json) { out(JSON.stringify(record, null, 2)); return 0; }
    out(`${L.suite.name}: ${r.pairs.length} pairs of ${r.selection}; ${r.ablation} ablation, ${r.prompts} task prompts`);
    out(`  effects are drops of the metric when ablated (KL: its rise); interaction = effect(A∪B) − effect(A) − effect(B)`);
    out(`  all ${r.nodes.length} ablated together: ${METRICS.map((m) => `${m} ${f3(r.fullEffect[m])}`).join(', ')}`);
    const others: MetricName[] = (['logit_diff', 'accuracy', 'kl'] as MetricName[]).filter((m) => m !== metric);
    out(`  ${'pair'.padEnd(14)} ${'effectA'.padStart(8)} ${'effectB'.padStart(8)} ${'effectAB'.padStart(8)} ${`interaction (${metric})`.padStart(24)}   ${others.map((m) => `interaction (${m})`.padStart(22)).join(' ')}`);
    const shown = r.pairs.length > 30 ? [...r.pairs.slice(0, 15), ...r.pairs.slice(-5)] : r.pairs;
    for (const p of shown) {
      if (r.pairs.length > 30 && p === r.pairs[r.pairs.length - 5]) out(`  … ${r.pairs.length - 20} pairs more (--json lists all)`);
      out(`  ${`${p.a} ${p.b}`.padEnd(14)} ${f3(p.effectA).padStart(8)} ${f3(p.effectB).padStart(8)} ${f3(p.effectAB).padStart(8)} ${f3(p.interaction).padStart(24)}   ${others.map((m) => f3(p.byMetric[m].interaction).padStart(22)).join(' ')}`);
    }
    for (const m of [metric, ...others]) {
      const b = backupCandidates(r, m);
      out(`  backups by ${m} (heuristic: interaction ≥ 10% of the whole set's effect): ${b.length ? b.map((p) => `${p.a}+${p.b} ${f3(p.byMetric[m].interaction)}`).join(', ') : 'none'}`);
    }
    return 0;
  } finally {
    await L.ws.dispose();
  }
}
