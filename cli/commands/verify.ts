import * as path from 'node:path';
import { verificationRecord } from '../../core/analysis/records';
import { checkCircuitOnModel, verifySavedCircuit } from '../../core/analysis/verify/verify';
import { UserError } from '../../core/errors';
import { parseCircuit } from '../../core/formats/circuit';
import { NodeWorkspace, sha256File } from '../../core/nodejs/workspace';
import { JSON_OPTION, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';
import { diagnosticsError, loadForAnalysis } from '../common';
import { printVerification } from '../text';
import { BROKER_FLAGS, BROKER_OPTION, checkBrokerFlag, MODEL_URL_OPTION, withBroker } from '../broker';

export const VERIFY_USAGE: Usage = {
  synopsis: 'circuitlens verify CIRCUIT [--suite SUITE] [--model MODEL] [--ablation KIND] [--broker URL [--model-url URL]] [--runtime node|wasm] [--json]',
  about: 'Checks a circuit (*.circuit.json) on its suite and model: faithfulness under several metrics, necessity,\n'
    + 'minimality (the drop when each member alone is removed), specificity on control prompts, CPR and CMD.\n'
    + 'Warns on stderr when the model file differs from the one the circuit was found on.',
  options: [
    ['--suite SUITE', 'the suite (default: the circuit\'s suite)'],
    ['--model MODEL', 'the model (default: the circuit\'s model, else the suite\'s)'],
    ['--ablation zero|mean|resample', 'how nodes outside the circuit are replaced (default: the circuit\'s ablation)'],
    [BROKER_OPTION[0], `${BROKER_OPTION[1]}: the ablation sets (edge circuits: their edge sets run here)`],
    MODEL_URL_OPTION,
    RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"faithfulness" (under the suite\'s metric), "faithfulnessByMetric": {"logit_diff", "accuracy", "kl", "prob"}, "necessity", "necessityByMetric",\n'
    + '  "minimality": {id: drop}, "specificity" (or null), "cpr", "cmd", "curve": [{"size", "faithfulness"}], "metric", "ablation", "prompts", "warnings": [...]}',
};

export async function verifyCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    suite: { type: 'string' }, model: { type: 'string' }, ablation: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' }, ...BROKER_FLAGS,
  }, VERIFY_USAGE);
  if (positionals.length !== 1) throw usageError('expected one circuit file', VERIFY_USAGE);
  const circuitPath = path.resolve(positionals[0]!);
  const ws0 = new NodeWorkspace();
  const parsed = parseCircuit(circuitPath, await ws0.readText(circuitPath));
  if (!parsed.circuit) throw diagnosticsError(parsed.diagnostics, ws0);
  const c = parsed.circuit;
  const suitePath = values.suite ?? (c.suite ? path.resolve(path.dirname(circuitPath), c.suite) : undefined);
  if (!suitePath) throw new UserError(`${ws0.display(circuitPath)} names no suite: pass --suite SUITE`);
  const modelFlag = values.model ?? (c.model?.path ? path.resolve(path.dirname(circuitPath), c.model.path) : undefined);
  await checkBrokerFlag(values);
  const L = await loadForAnalysis(suitePath, modelFlag, values.ablation ?? c.ablation, values.runtime, true, 'verify');
  try {
    const checked = checkCircuitOnModel(c, parsed.source, L.engine, c.model?.sha256 ? await sha256File(L.modelPath) : undefined);
    if (checked.error) throw diagnosticsError(checked.diagnostics, L.ws);
    const { level, nodes, verification: v } = await withBroker(values, L, suitePath, values.runtime, 'verify', () => verifySavedCircuit(c, L, L.all, L.suite.metric));
    const warnings = checked.diagnostics.filter((d) => d.severity === 'warning').map((d) => d.message);
    for (const w of warnings) process.stderr.write(`circuitlens verify: warning: ${w}\n`);
    if (values.json) out(JSON.stringify({ ...verificationRecord(v, {}), warnings }, null, 2));
    else {
      const what = level === 'edge' ? `${c.edges!.length} edges between ${nodes.length} nodes (${nodes.join(', ')})` : `${nodes.length} nodes (${nodes.join(', ')})`;
      out(`${c.name}: ${what} on ${path.relative(process.cwd(), L.modelPath)}, ${L.task.prompts.length} task prompts, ${L.ablation} ablation`);
      printVerification(v, out);
    }
    return 0;
  } finally {
    await L.ws.dispose();
  }
}
