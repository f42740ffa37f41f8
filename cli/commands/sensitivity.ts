import * as path from 'node:path';
import { parseScopes } from '../../core/analysis/sensitivity/scopes';
import { runSensitivity, SENSITIVITY_NOTES, type SensitivityMeasure, type SensitivityResult } from '../../core/analysis/sensitivity/sensitivity';
import { round6 } from '../../core/analysis/records';
import { UserError } from '../../core/errors';
import { circuitComponents, type Circuit } from '../../core/formats/circuit';
import { openModelVariants } from '../../core/nodejs/model-variants';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { QUANT_SCHEMES, type QuantScheme } from '../../core/onnx/quantize';
import type { WeightScope } from '../../core/onnx/weight-scope';
import { ABLATION_KINDS, type AblationKind } from '../../core/vocabulary';
import { BROKER_FLAGS, BROKER_OPTION, checkBrokerFlag, MODEL_URL_OPTION, withVariantWorkers } from '../broker';
import { cliRuntime, JSON_OPTION, oneOf, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';
import { loadSuite, readCircuitFile, suiteModelPath } from '../common';
import { f3 } from '../text';

export const SENSITIVITY_USAGE: Usage = {
  synopsis: 'circuitlens sensitivity SUITE --quantize int8|int4|fp16 [--group-size G] [--scope all|attn|mlp|embed|circuit:C|outside:C]… [--circuit C] [--model MODEL] [--ablation KIND] [--broker URL [--model-url URL]] [--runtime node|wasm] [--json]',
  about: 'Quantization sensitivity: the suite\'s task prompts on the model with the weight matrices of each scope fake-quantized\n'
    + '(round-to-nearest, symmetric; per output channel, or per group of G input entries with --group-size; fp16: each entry\n'
    + 'rounded to float16), turned back into float32 and run in memory. One row per scope: the suite\'s metric, accuracy,\n'
    + 'KL(original ‖ quantized) at the last position, their drops from the unquantized model and, with --circuit, the\n'
    + 'circuit\'s faithfulness under the quantized model. Scopes: attn, mlp (their matrices), embed (embedding and\n'
    + 'unembedding), all (every matrix), circuit:C (the entries circuit file C\'s heads and MLPs own: q/k/v columns, W_O rows,\n'
    + 'MLP matrices), outside:C (every other attention and MLP entry). Biases and norm gains stay float32.\n'
    + 'Default scopes: all, attn, mlp, embed (and circuit, outside with --circuit). --broker: each quantized model is built\n'
    + 'and measured on a worker (circuitlens worker, with the model at the same path or fetched from --model-url), the\n'
    + 'baseline here; the result equals the local one. Progress on stderr.',
  options: [
    ['--quantize int8|int4|fp16', 'the precision the weights are rounded to'],
    ['--group-size G', 'int8/int4: one scale per G consecutive input entries of a channel (default: one per channel)'],
    ['--scope S', 'a scope, or several comma-listed; repeat for more rows (circuit and outside alone use --circuit)'],
    ['--circuit C', 'a *.circuit.json: its faithfulness on every row, and the circuit of circuit/outside scopes'],
    ['--model MODEL', 'the model (default: the suite\'s model:)'],
    ['--ablation zero|mean|resample', 'how nodes outside the circuit are replaced (default: the circuit\'s, else the suite\'s)'],
    BROKER_OPTION, MODEL_URL_OPTION, RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"model", "suite", "name", "metric", "quantize", "groupSize", "prompts", "circuit"?: {"file", "name", "nodes", "level"}, "ablation",\n'
    + '        "baseline": {"metric", "accuracy", "kl", "logitDiff", "prob", "faithfulness"?, "faithfulnessByMetric"?},\n'
    + '        "rows": [{"scope", "quantize", "groupSize", "tensors", "entries", "relativeError", "metric", "accuracy", "kl", "logitDiff",\n'
    + '        "prob", "metricDrop", "accuracyDrop", "faithfulness"?, "faithfulnessByMetric"?, "faithfulnessDrop"?, "skipped"}], "seconds", "notes"}',
};

const rounded = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, typeof v === 'number' ? round6(v) : v && typeof v === 'object' && !Array.isArray(v) ? rounded(v) : v])) as T;

export async function sensitivityCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    quantize: { type: 'string' }, 'group-size': { type: 'string' }, scope: { type: 'string', multiple: true }, circuit: { type: 'string' },
    model: { type: 'string' }, ablation: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' }, ...BROKER_FLAGS,
  }, SENSITIVITY_USAGE);
  if (positionals.length !== 1) throw usageError('expected one suite file', SENSITIVITY_USAGE);
  if (!values.quantize) throw usageError('--quantize int8|int4|fp16 is required', SENSITIVITY_USAGE);
  const scheme = oneOf<QuantScheme>(values.quantize, QUANT_SCHEMES, '--quantize', 'int8');
  const g = values['group-size'];
  const groupSize = g === undefined ? undefined : Number(g);
  if (groupSize !== undefined && !(Number.isInteger(groupSize) && groupSize >= 1)) throw new UserError(`--group-size must be a whole number ≥ 1 (got "${g}")`);
  if (groupSize !== undefined && scheme === 'fp16') throw new UserError('--group-size applies to int8 and int4 (fp16 rounds each entry on its own)');
  const requests = parseScopes(values.scope ?? [], !!values.circuit);
  await checkBrokerFlag(values);
  const runtime = cliRuntime(values.runtime);
  const ws = new NodeWorkspace(process.cwd(), runtime);
  try {
    const suite = await loadSuite(ws, path.resolve(positionals[0]!));
    const modelPath = suiteModelPath(suite, ws, values.model);
    const circuits = new Map<string, Circuit>();
    const readCircuit = async (file: string) => {
      const abs = path.resolve(file);
      if (!circuits.has(abs)) circuits.set(abs, (await readCircuitFile(ws, abs, modelPath, 'sensitivity')).circuit);
      return circuits.get(abs)!;
    };
    const circuit = values.circuit ? await readCircuit(values.circuit) : undefined;
    const ablation: AblationKind | undefined = values.ablation !== undefined ? oneOf(values.ablation, ABLATION_KINDS, '--ablation', suite.ablation) : circuit?.ablation;
    const scopes: WeightScope[] = [];
    for (const r of requests) {
      if (r.kind !== 'circuit' && r.kind !== 'outside') { scopes.push({ kind: r.kind }); continue; }
      const file = r.circuitFile ?? values.circuit!;
      const c = await readCircuit(file);
      scopes.push({ kind: r.kind, circuit: { name: r.circuitFile ?? path.basename(file).replace(/\.circuit\.json$/, ''), nodes: circuitComponents(c) } });
    }
    const model = openModelVariants(modelPath, runtime);
    process.stderr.write(`circuitlens sensitivity: ${ws.display(suite.file)} on ${ws.display(modelPath)}, ${scheme}${groupSize ? ` in groups of ${groupSize}` : ' per channel'}, ${scopes.length} scope${scopes.length === 1 ? '' : 's'}\n`);
    const r = await withVariantWorkers(values, { modelPath, suitePath: suite.file, sha256: (p) => ws.sha256(p) }, values.runtime, 'sensitivity', (o) => runSensitivity(suite, model, {
      quantize: { scheme, groupSize }, scopes, circuit, ablation, ...o,
      report: (line) => process.stderr.write(`circuitlens sensitivity: ${line}\n`),
    }));
    const report = {
      model: ws.display(modelPath), suite: ws.display(suite.file), name: r.suite, metric: r.metric, quantize: scheme, groupSize: groupSize ?? null, prompts: r.prompts,
      ...(r.circuit ? { circuit: { file: ws.display(path.resolve(values.circuit!)), ...r.circuit } } : {}), ablation: r.ablation,
      baseline: rounded(r.baseline), rows: r.rows.map(rounded), seconds: round6(r.seconds), notes: SENSITIVITY_NOTES,
    };
    if (values.json) { out(JSON.stringify(report, null, 2)); return 0; }
    printText(r, out, scheme, groupSize, ws.display(modelPath));
    return 0;
  } finally {
    await ws.dispose();
  }
}

function printText(r: SensitivityResult, out: (s: string) => void, scheme: string, groupSize: number | undefined, model: string): void {
  const faith = r.circuit !== undefined;
  out(`${r.suite} on ${model}: ${r.metric} and accuracy over ${r.prompts} task prompts, weights rounded to ${scheme}${groupSize ? ` (groups of ${groupSize})` : scheme === 'fp16' ? '' : ' (per output channel)'}${faith ? `; faithfulness of ${r.circuit!.name}` : ''}`);
  const head = `  ${'scope'.padEnd(22)} ${'tensors'.padStart(7)} ${'entries'.padStart(10)} ${'rel.err'.padStart(8)} ${r.metric.padStart(10)} ${'accuracy'.padStart(8)} ${'KL'.padStart(9)} ${'drop'.padStart(8)}${faith ? ` ${'faithful'.padStart(8)}` : ''}`;
  out(head);
  const line = (scope: string, tensors: string, entries: string, err: string, m: SensitivityMeasure, drop: string) =>
    out(`  ${scope.padEnd(22)} ${tensors.padStart(7)} ${entries.padStart(10)} ${err.padStart(8)} ${f3(m.metric).padStart(10)} ${f3(m.accuracy).padStart(8)} ${m.kl.toExponential(2).padStart(9)} ${drop.padStart(8)}${faith ? ` ${f3(m.faithfulness!).padStart(8)}` : ''}`);
  line('(unquantized)', '', '', '', r.baseline, '');
  for (const row of r.rows) line(row.scope, String(row.tensors), row.entries.toLocaleString('en'), row.relativeError.toExponential(1), row, f3(row.metricDrop));
  const skipped = [...new Map(r.rows.flatMap((x) => x.skipped).map((s) => [s.tensor, s.reason])).entries()];
  if (skipped.length) out(`Left as they are: ${skipped.slice(0, 4).map(([t, why]) => `${t} (${why})`).join('; ')}${skipped.length > 4 ? `; and ${skipped.length - 4} more` : ''}.`);
  for (const n of SENSITIVITY_NOTES) out(`Note: ${n}.`);
}
