import { patchingAttribution } from '../../core/analysis/attribution';
import { describeWork, estimateWork } from '../../core/analysis/cost';
import { round6 } from '../../core/analysis/discover-circuit';
import { edgeGradientScores, edgePatchingScores, type EdgeContext } from '../../core/analysis/edges';
import { gradientAttribution } from '../../core/analysis/gradient';
import { allComponentNodes } from '../../core/ids';
import { FORCE_OPTION, JSON_OPTION, oneOf, parse, RUNTIME_OPTION, stepsFlag, usageError, type Usage } from '../args';
import { edgeContexts, loadForAnalysis, type Loaded } from '../common';
import { outFile, writeOutFile } from '../out-file';

export const ATTRIBUTE_USAGE: Usage = {
  synopsis: 'circuitlens attribute SUITE [--model MODEL] [--level node|edge] [--method patching|gradient] [--steps K] [--ablation KIND] [--out FILE [--force]] [--runtime node|wasm] [--json]',
  about: 'Scores every head and MLP (--level edge: every edge) of the suite\'s model by how much the suite\'s metric drops\n'
    + 'when it is ablated (--method patching, exact) or by its gradient estimate (--method gradient: EAP, or EAP-IG\n'
    + 'with --steps K). The cost is estimated on stderr before long runs.',
  options: [
    ['--model MODEL', 'the model (default: the suite\'s model:)'],
    ['--level node|edge', 'score heads and MLPs (default) or edges'],
    ['--method patching|gradient', 'exact ablation of each (default) or gradient attribution'],
    ['--steps K', 'EAP-IG: average gradients over K points (gradient only; default 1 = EAP)'],
    ['--ablation zero|mean|resample', 'how ablated nodes are replaced (default: the suite\'s ablation:)'],
    ['--out FILE', 'also write the JSON result to FILE'],
    FORCE_OPTION, RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"nodes": [{"id", "score"}], "edges": [{"source", "target", "score"}], "metric", "method", "level", "ablation", "prompts", "clean"?, "steps"?}',
};

export async function attributeCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    model: { type: 'string' }, level: { type: 'string' }, method: { type: 'string' }, ablation: { type: 'string' }, out: { type: 'string' },
    force: { type: 'boolean' }, json: { type: 'boolean' }, runtime: { type: 'string' }, steps: { type: 'string' },
  }, ATTRIBUTE_USAGE);
  if (positionals.length !== 1) throw usageError('expected one suite file', ATTRIBUTE_USAGE);
  const level = oneOf(values.level, ['node', 'edge'] as const, '--level', 'node');
  const method = oneOf(values.method, ['patching', 'gradient'] as const, '--method', 'patching');
  const steps = stepsFlag(values.steps, method);
  const outPath = values.out !== undefined ? outFile(values.out, values.force) : undefined;
  const L = await loadForAnalysis(positionals[0]!, values.model, values.ablation, values.runtime, false);
  try {
    // Say what the work will cost before starting it, when it is more than a moment (stderr: never with the JSON).
    const P = L.task.prompts.length;
    const units = level === 'edge' ? L.engine.edges.edges.length : allComponentNodes(L.engine.info).length;
    const work = estimateWork(L.task, `${level} attribution by ${method === 'gradient' ? (steps > 1 ? `EAP-IG (${steps} steps)` : 'EAP') : 'exact patching'}`,
      method === 'gradient' ? { gradient: P * steps, forward: steps > 1 ? P : 0 } : { forward: (units + 1) * P });
    if ((work.seconds ?? 0) >= 2) process.stderr.write(`circuitlens attribute: ${describeWork(work, L.engine.msPerToken)}\n`);
    const write = async (result: object) => { if (outPath) await writeOutFile(outPath, JSON.stringify(result, null, 2) + '\n', values.force); };
    if (level === 'edge') return await attributeEdges(L, method, steps, write, values.json, out);
    const attr = method === 'gradient' ? await gradientAttribution(L.task, L.suite.metric, { steps }) : await patchingAttribution(L.task, L.suite.metric);
    const result = {
      nodes: attr.nodes, edges: attr.edges, metric: attr.metric, method: attr.method, level, ablation: L.kind, prompts: L.task.prompts.length,
      clean: attr.clean, ...(method === 'gradient' ? { steps } : {}),
    };
    await write(result);
    if (values.json) out(JSON.stringify(result, null, 2));
    else {
      const estimate = attr.metric === 'accuracy' || attr.metric === 'kl'
        ? `ranking by the logit difference's gradient (${attr.metric} has none to follow)`
        : `estimating the ${attr.metric} drop`;
      const how = method === 'gradient' ? `gradients (${steps > 1 ? `EAP-IG, ${steps} steps` : 'EAP'}), ${estimate} under ${L.kind} ablation` : `${L.kind} ablation (${attr.metric} drop)`;
      out(`${L.suite.name}: node attribution by ${how}, ${L.task.prompts.length} task prompts`);
      for (const n of [...attr.nodes].sort((a, b) => b.score - a.score)) out(`  ${n.id.padEnd(8)} ${n.score >= 0 ? ' ' : ''}${n.score.toFixed(4)}`);
    }
    return 0;
  } finally {
    await L.ws.dispose();
  }
}

async function edgeScores(ec: EdgeContext, metric: Loaded['suite']['metric'], method: 'patching' | 'gradient', steps: number) {
  return method === 'gradient' ? edgeGradientScores(ec, metric, steps) : (await edgePatchingScores(ec, metric)).edges;
}

async function attributeEdges(L: Loaded, method: 'patching' | 'gradient', steps: number, write: (result: object) => Promise<void>, json: boolean | undefined, out: (s: string) => void): Promise<number> {
  const { task } = await edgeContexts(L);
  const metric = L.suite.metric;
  const edges = await edgeScores(task, metric, method, steps);
  const result = {
    nodes: [], edges: edges.map((e) => ({ ...e, score: round6(e.score) })), metric, method, level: 'edge', ablation: L.kind, prompts: L.task.prompts.length,
    ...(method === 'gradient' ? { steps } : {}),
  };
  await write(result);
  if (json) out(JSON.stringify(result, null, 2));
  else {
    const how = method === 'gradient' ? `gradients on edge weights (${steps > 1 ? `EAP-IG, ${steps} steps` : 'EAP'})` : 'exact path patching (one edge at a time)';
    out(`${L.suite.name}: edge attribution by ${how}, ${L.kind} ablation, ${L.task.prompts.length} task prompts; ${edges.length} edges, top 30 by |score|:`);
    for (const e of [...edges].sort((a, b) => Math.abs(b.score) - Math.abs(a.score)).slice(0, 30)) out(`  ${`${e.source}->${e.target}`.padEnd(22)} ${e.score >= 0 ? ' ' : ''}${e.score.toFixed(4)}`);
  }
  return 0;
}
