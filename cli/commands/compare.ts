import * as path from 'node:path';
import { checkSameArchitecture, compareModels, type Comparison, type SuiteSummary } from '../../core/analysis/compare/compare';
import { comparisonRecord } from '../../core/analysis/compare/record';
import { openSuite } from '../../core/analysis/open-suite';
import { checkCircuitOnModel } from '../../core/analysis/verify/verify';
import { parseCircuit, type Circuit } from '../../core/formats/circuit';
import type { SourceFile } from '../../core/formats/source';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { ABLATION_KINDS } from '../../core/vocabulary';
import { cliRuntime, JSON_OPTION, numberFlag, oneOf, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';
import { diagnosticsError, loadSuite } from '../common';
import { f3 } from '../text';

export const COMPARE_USAGE: Usage = {
  synopsis: 'circuitlens compare A.onnx B.onnx --suite SUITE [--circuit C.circuit.json] [--ablation KIND] [--top N] [--runtime node|wasm] [--json]',
  about: 'Compares two checkpoints of one architecture on one suite: the suite\'s metrics on each, every head\'s and MLP\'s\n'
    + 'attribution score (exact patching) on each, and with --circuit its faithfulness on A and on B, and the circuit\n'
    + 're-discovered on each with the options the circuit file records (discover\'s defaults where it records none):\n'
    + 'the Jaccard index of C with the one found on B, which members entered and which left. Exit 2 when the models\'\n'
    + 'hooks, layers, heads, d_model or vocabulary differ. Progress goes to stderr.',
  options: [
    ['--suite SUITE', 'the prompt suite (required)'],
    ['--circuit C', 'a *.circuit.json to follow from A to B'],
    ['--ablation zero|mean|resample', 'how ablated nodes are replaced (default: the circuit\'s, else the suite\'s ablation:)'],
    ['--top N', 'text output: how many nodes with the largest |delta| to list (default 10)'],
    RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"a": {"model", "task": {"metric", "value", "accuracy", "logitDiff", "prob", "prompts"}, "control"?: {…}}, "b": {…},\n'
    + '  "nodes": [{"id", "scoreA", "scoreB", "delta"}], "circuit"?: {"faithfulnessA", "faithfulnessB", "jaccard", "entered", "left",\n'
    + '  "drop", "faithfulnessByMetricA", "faithfulnessByMetricB", "necessityByMetricA", "necessityByMetricB",\n'
    + '  "rediscovered": {"options", "optionsFrom", "b": {"members", "nodes", "faithfulness", …}, "a", "jaccard"}}, "metric", "ablation"}',
};

export async function compareCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, {
    suite: { type: 'string' }, circuit: { type: 'string' }, ablation: { type: 'string' }, top: { type: 'string' },
    json: { type: 'boolean' }, runtime: { type: 'string' },
  }, COMPARE_USAGE);
  if (positionals.length !== 2) throw usageError('expected two model files, A.onnx and B.onnx', COMPARE_USAGE);
  if (!values.suite) throw usageError('--suite SUITE is required', COMPARE_USAGE);
  const top = numberFlag(values.top, '--top', 10);
  const ws = new NodeWorkspace(process.cwd(), cliRuntime(values.runtime));
  const progress = (m: string) => process.stderr.write(`circuitlens compare: ${m}\n`);
  try {
    const suite = await loadSuite(ws, path.resolve(values.suite));
    let circuit: { c: Circuit; source: SourceFile } | undefined;
    if (values.circuit) {
      const file = path.resolve(values.circuit);
      const parsed = parseCircuit(file, await ws.readText(file));
      if (!parsed.circuit) throw diagnosticsError(parsed.diagnostics, ws);
      circuit = { c: parsed.circuit, source: parsed.source };
    }
    const ablation = oneOf(values.ablation, ABLATION_KINDS, '--ablation', circuit?.c.ablation ?? suite.ablation);
    const [pathA, pathB] = positionals.map((p) => path.resolve(p)) as [string, string];
    const names: [string, string] = [ws.display(pathA), ws.display(pathB)];
    const engineA = await ws.loadEngine(pathA);
    const engineB = await ws.loadEngine(pathB);
    checkSameArchitecture(engineA, engineB, names);
    const opened = [engineA, engineB].map((engine) => {
      const { opened: o, diagnostics } = openSuite(suite, engine, ablation);
      if (!o) throw diagnosticsError(diagnostics, ws);
      return o;
    });
    if (circuit) {
      // The circuit must name only what both models have; a different file than the one it was found on is the
      // point of comparing, so its recorded hash is not checked.
      for (const engine of [engineA, engineB]) {
        const checked = checkCircuitOnModel(circuit.c, circuit.source, engine);
        if (checked.error) throw diagnosticsError(checked.diagnostics, ws);
      }
    }
    const cmp = await compareModels(opened[0]!, opened[1]!, { circuit: circuit?.c, rediscoverOnA: true, report: progress });
    if (values.json) out(JSON.stringify(comparisonRecord(cmp, { a: names[0], b: names[1] }), null, 2));
    else printComparison(cmp, names, top, out);
    return 0;
  } finally {
    await ws.dispose();
  }
}

function signed(x: number): string {
  return Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(3)}` : String(x);
}

function printComparison(c: Comparison, names: [string, string], top: number, out: (s: string) => void): void {
  out(`A = ${names[0]}`);
  out(`B = ${names[1]}`);
  out(`${c.a.task.prompts} task prompts${c.a.control ? `, ${c.a.control.prompts} control prompts` : ''}, ${c.ablation} ablation, metric ${c.metric}`);
  out(`                          A          B      B − A`);
  const row = (label: string, x: number | null, y: number | null) => {
    if (x === null || y === null) return;
    out(`  ${label.padEnd(20)} ${f3(x).padStart(9)}  ${f3(y).padStart(9)}  ${signed(y - x).padStart(9)}`);
  };
  const rows = (what: string, a: SuiteSummary, b: SuiteSummary) => {
    row(`${what} logit_diff`, a.logitDiff, b.logitDiff);
    row(`${what} accuracy`, a.accuracy, b.accuracy);
    row(`${what} prob`, a.prob, b.prob);
  };
  rows('task', c.a.task, c.b.task);
  if (c.a.control && c.b.control) rows('control', c.a.control, c.b.control);
  const shown = [...c.nodes].sort((x, y) => Math.abs(y.delta) - Math.abs(x.delta)).slice(0, Math.max(0, top));
  out(`  nodes with the largest |Δ score| (${c.metric} drop when ablated, ${c.nodeMethod ?? 'exact patching'}):`);
  for (const n of shown) out(`    ${n.id.padEnd(8)} ${f3(n.scoreA).padStart(8)} → ${f3(n.scoreB).padStart(8)}  (${signed(n.delta)})`);
  const k = c.circuit;
  if (!k) return;
  const m = (r: Record<string, number>, s: Record<string, number>) => (['logit_diff', 'accuracy', 'kl'] as const).map((q) => `${q} ${f3(r[q]!)} → ${f3(s[q]!)}`).join(', ');
  out(`  circuit "${k.name}" (${k.level} level): faithfulness (${k.metric}) ${f3(k.faithfulnessA)} → ${f3(k.faithfulnessB)} (drop ${f3(k.drop)})`);
  out(`    by metric: ${m(k.a.faithfulness, k.b.faithfulness)}`);
  out(`    necessity: ${m(k.a.necessity, k.b.necessity)}`);
  const o = k.rediscoveredB.options;
  const how = o.method === 'acdc' ? `ACDC, threshold ${o.threshold}` : `greedy by ${o.scoring} scores to faithfulness ${o.target}`;
  const list = (xs: string[]) => (xs.length ? (xs.length > 24 ? `${xs.slice(0, 24).join(', ')} and ${xs.length - 24} more` : xs.join(', ')) : 'none');
  out(`    re-discovered on B (${how}; options ${k.rediscoveredB.optionsFrom === 'circuit' ? 'from the circuit file' : 'discover\'s defaults: the file records none'}): ${k.rediscoveredB.members.length} ${k.level === 'edge' ? 'edges' : 'nodes'}, faithfulness ${f3(k.rediscoveredB.discovered.verification.faithfulness)}`);
  out(`    Jaccard of the circuit with B's: ${f3(k.jaccard)}`);
  out(`    entered (in B's, not in the circuit): ${list(k.entered)}`);
  out(`    left (in the circuit, not in B's): ${list(k.left)}`);
  if (k.rediscoveredA) {
    out(`    re-discovered on A the same way: ${k.rediscoveredA.members.length} ${k.level === 'edge' ? 'edges' : 'nodes'}; Jaccard of A's and B's: ${f3(k.jaccardRediscovered!)}`);
  }
}
