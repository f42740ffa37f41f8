import { attribute, estimateAttribution } from '../../core/analysis/attribute/attribute';
import { describeWork } from '../../core/analysis/cost';
import { round6 } from '../../core/analysis/records';
import { formatEdgeId } from '../../core/ids';
import { FORCE_OPTION, JSON_OPTION, oneOf, parse, RUNTIME_OPTION, stepsFlag, usageError, type Usage } from '../args';
import { loadForAnalysis } from '../common';
import { outFile, writeOutFile } from '../out-file';
import { BROKER_FLAGS, BROKER_OPTION, checkBrokerFlag, MODEL_URL_OPTION, withBroker } from '../broker';

export const ATTRIBUTE_USAGE: Usage = {
  synopsis: 'circuitlens attribute SUITE [--model MODEL] [--level node|edge] [--method patching|gradient] [--steps K] [--ablation KIND] [--broker URL [--model-url URL]] [--out FILE [--force]] [--runtime node|wasm] [--json]',
  about: 'Scores every head and MLP (--level edge: every edge) of the suite\'s model by how much the suite\'s metric drops\n'
    + 'when it is ablated (--method patching, exact) or by its gradient estimate (--method gradient: EAP, or EAP-IG\n'
    + 'with --steps K). The cost is estimated on stderr before long runs.',
  options: [
    ['--model MODEL', 'the model (default: the suite\'s model:)'],
    ['--level node|edge', 'score heads and MLPs (default) or edges'],
    ['--method patching|gradient', 'exact ablation of each (default) or gradient attribution'],
    ['--steps K', 'EAP-IG: average gradients over K points (gradient only; default 1 = EAP)'],
    ['--ablation zero|mean|resample', 'how ablated nodes are replaced (default: the suite\'s ablation:)'],
    [BROKER_OPTION[0], `${BROKER_OPTION[1]}: patching and gradients (EAP, EAP-IG), node and edge level`],
    MODEL_URL_OPTION,
    ['--out FILE', 'also write the JSON result to FILE'],
    FORCE_OPTION, RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"nodes": [{"id", "score"}], "edges": [{"source", "target", "score"}], "metric", "method", "level", "ablation", "prompts", "clean"?, "steps"?}',
};

export async function attributeCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    model: { type: 'string' }, level: { type: 'string' }, method: { type: 'string' }, ablation: { type: 'string' }, out: { type: 'string' },
    force: { type: 'boolean' }, json: { type: 'boolean' }, runtime: { type: 'string' }, steps: { type: 'string' }, ...BROKER_FLAGS,
  }, ATTRIBUTE_USAGE);
  if (positionals.length !== 1) throw usageError('expected one suite file', ATTRIBUTE_USAGE);
  const level = oneOf(values.level, ['node', 'edge'] as const, '--level', 'node');
  const method = oneOf(values.method, ['patching', 'gradient'] as const, '--method', 'patching');
  const steps = stepsFlag(values.steps, method);
  const outPath = values.out !== undefined ? outFile(values.out, values.force) : undefined;
  // A bad or unreachable broker is said before the model is loaded.
  await checkBrokerFlag(values);
  const L = await loadForAnalysis(positionals[0]!, values.model, values.ablation, values.runtime, false, 'attribute');
  try {
    const options = { level, method, steps };
    // Say what the work will cost before starting it, when it is more than a moment (stderr: never with the JSON).
    const work = estimateAttribution(L.task, options);
    if ((work.seconds ?? 0) >= 2) process.stderr.write(`circuitlens attribute: ${describeWork(work, L.engine.msPerToken)}\n`);
    const attr = await withBroker(values, L, positionals[0]!, values.runtime, 'attribute', () => attribute(L.task, L.all, L.suite.metric, options));
    const P = L.task.prompts.length;
    const result = level === 'edge'
      ? { nodes: [], edges: attr.edges.map((e) => ({ ...e, score: round6(e.score) })), metric: attr.metric, method, level, ablation: L.ablation, prompts: P, ...(method === 'gradient' ? { steps } : {}) }
      : { nodes: attr.nodes, edges: [], metric: attr.metric, method, level, ablation: L.ablation, prompts: P, clean: attr.clean, ...(method === 'gradient' ? { steps } : {}) };
    if (outPath) await writeOutFile(outPath, JSON.stringify(result, null, 2) + '\n', values.force);
    if (values.json) out(JSON.stringify(result, null, 2));
    else if (level === 'edge') {
      out(`${L.suite.name}: edge attribution by ${attr.edgeMethod}, ${L.ablation} ablation, ${P} task prompts; ${attr.edges.length} edges, top 30 by |score|:`);
      for (const e of [...attr.edges].sort((a, b) => Math.abs(b.score) - Math.abs(a.score)).slice(0, 30)) out(`  ${formatEdgeId(e).padEnd(22)} ${e.score >= 0 ? ' ' : ''}${e.score.toFixed(4)}`);
    } else {
      const estimate = attr.metric === 'accuracy' || attr.metric === 'kl'
        ? `ranking by the logit difference's gradient (${attr.metric} has none to follow)`
        : `estimating the ${attr.metric} drop`;
      const how = method === 'gradient' ? `${attr.nodeMethod}, ${estimate} under ${L.ablation} ablation` : `${L.ablation} ablation (${attr.metric} drop)`;
      out(`${L.suite.name}: node attribution by ${how}, ${P} task prompts`);
      for (const n of [...attr.nodes].sort((a, b) => b.score - a.score)) out(`  ${n.id.padEnd(8)} ${n.score >= 0 ? ' ' : ''}${n.score.toFixed(4)}`);
    }
    return 0;
  } finally {
    await L.ws.dispose();
  }
}
