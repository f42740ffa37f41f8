import * as path from 'node:path';
import { DEFAULT_SPARSITIES, PRUNE_NOTES, runPrune, type PruneMeasures, type PruneReport } from '../../core/analysis/prune/prune';
import { round6 } from '../../core/analysis/records';
import { UserError } from '../../core/errors';
import type { Circuit } from '../../core/formats/circuit';
import { openModelVariants } from '../../core/nodejs/model-variants';
import { writeModelWith } from '../../core/nodejs/pruned-model';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { PRUNE_STRATEGIES, type PruneStrategy } from '../../core/onnx/prune';
import { ABLATION_KINDS } from '../../core/vocabulary';
import { BROKER_FLAGS, BROKER_OPTION, checkBrokerFlag, MODEL_URL_OPTION, withVariantWorkers } from '../broker';
import { cliRuntime, FORCE_OPTION, JSON_OPTION, oneOf, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';
import { loadSuite, readCircuitFile, suiteModelPath } from '../common';
import { outFile } from '../out-file';
import { f3 } from '../text';

export const PRUNE_USAGE: Usage = {
  synopsis: 'circuitlens prune SUITE [--model MODEL] [--sparsity 0.1,0.3,0.5,0.7,0.9] [--circuit C] [--strategy magnitude|outside-circuit|layer-waves,…]\n'
    + '       [--ablation zero|mean|resample] [--out F.onnx [--force]] [--broker URL [--model-url URL]] [--runtime node|wasm] [--json]',
  about: 'Pruning curves: the suite\'s metric and accuracy on its task prompts, and the KL to the unpruned model, as the\n'
    + 'attention and MLP weight matrices are pruned (entries set to zero; embeddings, norms, biases and the unembedding\n'
    + 'are not pruned) to each sparsity, a fraction of all prunable entries. Strategies: magnitude (the smallest |w|\n'
    + 'over all matrices), outside-circuit (the same among the entries the circuit\'s nodes do not own; capped where\n'
    + 'the circuit owns the rest), layer-waves (the last layer first, a whole layer before the one below it; smallest\n'
    + '|w| first within a layer). With --circuit, each point also has the circuit\'s faithfulness on the pruned model.\n'
    + 'No fine-tuning after pruning. --out writes one pruned model (one strategy and one sparsity), with the original\'s\n'
    + 'tokenizer and hooks files beside it. --broker: each pruned model is built and measured on a worker (circuitlens\n'
    + 'worker, with the model at the same path or fetched from --model-url), the baseline here; the result equals the\n'
    + 'local one. Progress on stderr.',
  options: [
    ['--model MODEL', 'the model (default: the suite\'s model:)'],
    ['--sparsity LIST', `sparsities to prune to, fractions in [0, 1] (default ${DEFAULT_SPARSITIES.join(',')})`],
    ['--circuit C', 'a circuit file: adds the outside-circuit strategy and the circuit\'s faithfulness at each point'],
    ['--strategy LIST', 'magnitude, outside-circuit, layer-waves (default: magnitude, and outside-circuit with --circuit)'],
    ['--ablation zero|mean|resample', 'how the circuit\'s faithfulness ablates (default: the circuit\'s, else the suite\'s)'],
    ['--out F.onnx', 'write the pruned model (needs exactly one strategy and one sparsity)'],
    FORCE_OPTION, BROKER_OPTION, MODEL_URL_OPTION, RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"model", "suite", "name", "metric", "ablation", "prompts", "prunable": {"entries", "tensors": [{"name", "component", "layer"?, "entries"}], "skipped"},\n'
    + '  "circuit"?: {"file", "name", "nodes", "ownedEntries", "maxSparsity", "slices": [{"node", "initializer", "role", "axis", "start", "end"}]},\n'
    + '  "baseline": {"metric", "accuracy", "kl", "faithfulness"?}, "curves": [{"strategy", "points": [{"sparsity", "reached", "pruned", "capped",\n'
    + '  "metric", "accuracy", "kl", "faithfulness"?, "byLayer": {layer: sparsity}}]}], "out"?: {"files", "strategy", "sparsity", "reached"}, "notes"}',
};

function sparsityList(v: string | undefined): number[] {
  if (v === undefined) return DEFAULT_SPARSITIES;
  const xs = v.split(',').map((s) => s.trim());
  const nums = xs.map(Number);
  const bad = xs.findIndex((s, i) => s === '' || !Number.isFinite(nums[i]!) || nums[i]! < 0 || nums[i]! > 1);
  if (bad >= 0) throw new UserError(`--sparsity takes fractions from 0 to 1, e.g. 0.1,0.5,0.9 (got "${xs[bad]}")`);
  return [...new Set(nums)].sort((a, b) => a - b);
}

function strategyList(v: string | undefined, circuit: boolean): PruneStrategy[] {
  if (v === undefined) return circuit ? ['magnitude', 'outside-circuit'] : ['magnitude'];
  const xs = v.split(',').map((s) => s.trim());
  for (const s of xs) if (!(PRUNE_STRATEGIES as readonly string[]).includes(s)) throw new UserError(`--strategy: unknown strategy "${s}" (strategies: ${PRUNE_STRATEGIES.join(', ')})`);
  if (xs.includes('outside-circuit') && !circuit) throw new UserError('--strategy outside-circuit prunes everything but a circuit: pass --circuit FILE.circuit.json');
  return [...new Set(xs)] as PruneStrategy[];
}

const measures = (m: PruneMeasures) => ({ metric: round6(m.metric), accuracy: round6(m.accuracy), kl: round6(m.kl), ...(m.faithfulness !== undefined ? { faithfulness: round6(m.faithfulness) } : {}) });

export async function pruneCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    model: { type: 'string' }, sparsity: { type: 'string' }, circuit: { type: 'string' }, strategy: { type: 'string' }, ablation: { type: 'string' },
    out: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' }, runtime: { type: 'string' }, ...BROKER_FLAGS,
  }, PRUNE_USAGE);
  if (positionals.length !== 1) throw usageError('expected one suite file', PRUNE_USAGE);
  const sparsities = sparsityList(values.sparsity);
  const strategies = strategyList(values.strategy, values.circuit !== undefined);
  if (values.out !== undefined && (strategies.length !== 1 || sparsities.length !== 1)) {
    throw usageError(`--out writes one pruned model: give exactly one --strategy and one --sparsity (got ${strategies.length} strateg${strategies.length === 1 ? 'y' : 'ies'}: ${strategies.join(', ')}; ${sparsities.length} sparsit${sparsities.length === 1 ? 'y' : 'ies'}: ${sparsities.join(', ')})`, PRUNE_USAGE);
  }
  const outPath = values.out !== undefined ? outFile(values.out, values.force) : undefined;
  await checkBrokerFlag(values);
  const runtime = cliRuntime(values.runtime);
  const ws = new NodeWorkspace(process.cwd(), runtime);
  try {
    const suite = await loadSuite(ws, path.resolve(positionals[0]!));
    const ablation = values.ablation === undefined ? undefined : oneOf(values.ablation, ABLATION_KINDS, '--ablation', suite.ablation);
    const modelPath = suiteModelPath(suite, ws, values.model);
    let circuit: Circuit | undefined;
    let circuitPath: string | undefined;
    if (values.circuit !== undefined) {
      const r = await readCircuitFile(ws, values.circuit, modelPath, 'pruning runs on the suite\'s model');
      circuit = r.circuit;
      circuitPath = r.circuitPath;
    }
    const what = ws.display(modelPath);
    process.stderr.write(`circuitlens prune: reading ${what}\n`);
    const variants = openModelVariants(modelPath, runtime);
    const report = (line: string) => process.stderr.write(`circuitlens prune: ${line}\n`);
    const r = await withVariantWorkers(values, { modelPath, suitePath: suite.file, sha256: (p) => ws.sha256(p) }, values.runtime, 'prune',
      (o) => runPrune(suite, variants, what, { strategies, sparsities, circuit, ablation, report, ...o }));
    let written: { files: string[]; strategy: PruneStrategy; sparsity: number; reached: number } | undefined;
    if (outPath) {
      const plan = r.bench.plan(strategies[0]!, sparsities[0]!);
      const files = await writeModelWith(variants, plan.replacements, outPath, values.force);
      written = { files: files.map((f) => ws.display(f)), strategy: plan.strategy, sparsity: plan.requested, reached: round6(plan.reached) };
    }
    if (values.json) {
      out(JSON.stringify(jsonReport(r, ws.display(modelPath), ws.display(suite.file), circuitPath && ws.display(circuitPath), written), null, 2));
      return 0;
    }
    printReport(r, what, out);
    if (written) out(`Wrote ${written.files.join(', ')} (${written.strategy} at ${written.sparsity}: sparsity ${f3(written.reached)}).`);
    return 0;
  } finally {
    await ws.dispose();
  }
}

function jsonReport(r: PruneReport, model: string, suite: string, circuitFile: string | undefined, written: object | undefined): object {
  return {
    model, suite, name: r.suite, metric: r.metricName, ablation: r.ablation, prompts: r.prompts, prunable: r.prunable,
    ...(r.circuit ? { circuit: { file: circuitFile, ...r.circuit, maxSparsity: round6(r.circuit.maxSparsity) } } : {}),
    baseline: measures(r.baseline),
    curves: r.curves.map((c) => ({
      strategy: c.strategy,
      points: c.points.map((p) => ({
        sparsity: p.sparsity, reached: round6(p.reached), pruned: p.pruned, capped: p.capped, ...measures(p),
        byLayer: Object.fromEntries(Object.entries(p.byLayer).map(([k, v]) => [k, round6(v)])),
      })),
    })),
    ...(written ? { out: written } : {}),
    notes: r.notes,
  };
}

function printReport(r: PruneReport, what: string, out: (s: string) => void): void {
  out(`${r.suite} on ${what}: ${r.metricName} and accuracy on ${r.prompts} task prompts as ${r.prunable.entries} entries of ${r.prunable.tensors.length} attention and MLP matrices are pruned`);
  if (r.circuit) out(`Circuit "${r.circuit.name}" (${r.circuit.nodes.length} nodes) owns ${r.circuit.ownedEntries} of them: outside-circuit reaches at most ${f3(r.circuit.maxSparsity)}.`);
  if (r.prunable.skipped.length) out(`Not pruned (not float32): ${r.prunable.skipped.join(', ')}`);
  const faith = r.circuit !== undefined;
  const head = `  ${'sparsity'.padStart(8)}  ${'reached'.padStart(7)}  ${r.metricName.padStart(10)}  ${'accuracy'.padStart(8)}  ${'kl'.padStart(8)}${faith ? `  ${'faithful'.padStart(8)}` : ''}`;
  const row = (s: string, reached: string, m: PruneMeasures, mark = '') =>
    `  ${s.padStart(8)}  ${reached.padStart(7)}  ${f3(m.metric).padStart(10)}  ${f3(m.accuracy).padStart(8)}  ${f3(m.kl).padStart(8)}${faith ? `  ${f3(m.faithfulness ?? NaN).padStart(8)}` : ''}${mark}`;
  for (const c of r.curves) {
    out(`${c.strategy}:`);
    out(head);
    out(row('0', f3(0), r.baseline, '  (unpruned)'));
    for (const p of c.points) out(row(String(p.sparsity), f3(p.reached), p, p.capped ? '  (capped: the circuit owns the rest)' : ''));
  }
  for (const n of PRUNE_NOTES) out(`Note: ${n}.`);
}
