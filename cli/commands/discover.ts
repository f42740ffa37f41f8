import { formatEdgeId } from '../../core/ids';
import * as path from 'node:path';
import { discoverCircuit } from '../../core/analysis/discover/discover';
import { circuitFile } from '../../core/analysis/records';
import { UserError } from '../../core/errors';
import { serializeCircuit } from '../../core/formats/circuit';
import { sha256File } from '../../core/nodejs/workspace';
import { FORCE_OPTION, JSON_OPTION, numberFlag, oneOf, parse, RUNTIME_OPTION, stepsFlag, usageError, type Usage } from '../args';
import { loadForAnalysis } from '../common';
import { outFile, writeOutFile } from '../out-file';
import { BROKER_FLAGS, BROKER_OPTION, checkBrokerFlag, MODEL_URL_OPTION, withBroker } from '../broker';
import { printVerification } from '../text';

export const DISCOVER_USAGE: Usage = {
  synopsis: 'circuitlens discover SUITE --out FILE.circuit.json [--force] [--model MODEL] [--method greedy|acdc] [--scores patching|gradient] [--steps K] [--faithfulness F] [--threshold T] [--level node|edge] [--ablation KIND] [--name NAME] [--broker URL [--model-url URL]] [--runtime node|wasm] [--json]',
  about: 'Finds a small circuit that keeps the suite\'s metric (greedy: smallest set reaching --faithfulness; acdc: prune\n'
    + 'what changes the output by less than --threshold), verifies it, and writes it as FILE.circuit.json.',
  options: [
    ['--out FILE.circuit.json', 'where to write the circuit (required)'],
    FORCE_OPTION,
    ['--model MODEL', 'the model (default: the suite\'s model:)'],
    ['--method greedy|acdc', 'the search (default greedy)'],
    ['--scores patching|gradient', 'the members\' scores, the order greedy adds them in (default patching)'],
    ['--steps K', 'EAP-IG steps for --scores gradient (default 1 = EAP)'],
    ['--faithfulness F', 'greedy\'s target faithfulness (default 0.8)'],
    ['--threshold T', 'acdc\'s pruning threshold (default 0.02)'],
    ['--level node|edge', 'a circuit of heads and MLPs (default) or of edges'],
    ['--ablation zero|mean|resample', 'how nodes outside the circuit are replaced (default: the suite\'s ablation:)'],
    ['--name NAME', 'the circuit\'s name (default: from the suite and method)'],
    [BROKER_OPTION[0], `${BROKER_OPTION[1]}: the ablation sets, and edge scores (edge-level selection runs here)`],
    MODEL_URL_OPTION,
    RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"circuit": path, "nodes": [...], "edges"?: ["a0.h1->a1.h2<k>", …], "faithfulness", "faithfulnessByMetric", "necessity", "minimality", …} (the metrics as written in the circuit file)',
};

export async function discoverCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    model: { type: 'string' }, out: { type: 'string' }, force: { type: 'boolean' }, method: { type: 'string' }, faithfulness: { type: 'string' },
    threshold: { type: 'string' }, level: { type: 'string' }, ablation: { type: 'string' }, name: { type: 'string' }, json: { type: 'boolean' },
    runtime: { type: 'string' }, scores: { type: 'string' }, steps: { type: 'string' }, ...BROKER_FLAGS,
  }, DISCOVER_USAGE);
  if (positionals.length !== 1) throw usageError('expected one suite file', DISCOVER_USAGE);
  if (!values.out) throw usageError('--out FILE.circuit.json is required', DISCOVER_USAGE);
  if (!values.out.endsWith('.circuit.json')) throw new UserError(`--out must end in .circuit.json (got ${values.out})`);
  const level = oneOf(values.level, ['node', 'edge'] as const, '--level', 'node');
  const method = oneOf(values.method, ['greedy', 'acdc'] as const, '--method', 'greedy');
  const scoring = oneOf(values.scores, ['patching', 'gradient'] as const, '--scores', 'patching');
  const steps = stepsFlag(values.steps, scoring);
  const target = numberFlag(values.faithfulness, '--faithfulness', 0.8);
  const threshold = numberFlag(values.threshold, '--threshold', 0.02);
  const outPath = outFile(values.out, values.force);
  await checkBrokerFlag(values);
  const L = await loadForAnalysis(positionals[0]!, values.model, values.ablation, values.runtime, true, 'discover');
  try {
    const d = await withBroker(values, L, positionals[0]!, values.runtime, 'discover', () => discoverCircuit(L.task, L.control, L.all, L.suite.metric, { level, method, scoring, steps, target, threshold }));
    const rel = (p: string) => path.relative(path.dirname(outPath), p).split(path.sep).join('/');
    const circuit = circuitFile(d, {
      name: values.name ?? `${L.suite.name} (${method}${level === 'edge' ? ', edges' : ''})`, level, ablation: L.ablation,
      model: { path: rel(L.modelPath), sha256: await sha256File(L.modelPath) }, suite: rel(L.suite.file),
    });
    await writeOutFile(outPath, serializeCircuit(circuit), values.force);
    if (values.json) out(JSON.stringify({ circuit: path.relative(process.cwd(), outPath), nodes: d.nodes, ...(level === 'edge' ? { edges: d.edges.map(formatEdgeId) } : {}), ...circuit.metrics }, null, 2));
    else {
      out(`${L.suite.name}: ${method} ${level === 'edge' ? 'edge ' : ''}discovery on ${path.relative(process.cwd(), L.modelPath)} (${L.task.prompts.length} task prompts, ${L.ablation} ablation)`);
      if (level === 'edge') {
        const ids = d.edges.map(formatEdgeId);
        out(`  circuit: ${ids.length} of ${d.edgesInModel} edges, between ${d.nodes.join(', ')}`);
        out(`  edges: ${ids.length > 40 ? `${ids.slice(0, 40).join(', ')}, … ${ids.length - 40} more (in the circuit file)` : ids.join(', ')}`);
      } else {
        out(`  circuit (${d.nodes.length} of ${L.engine.info.layers * (L.engine.info.heads + 1)} heads and MLPs): ${d.nodes.join(', ')}`);
      }
      printVerification(d.verification, out);
      out(`  wrote ${path.relative(process.cwd(), outPath)}`);
    }
    return 0;
  } finally {
    await L.ws.dispose();
  }
}
