import * as path from 'node:path';
import { relate, relateRecord, type SetFaithfulness } from '../../core/analysis/relate/relate';
import { parseCircuit } from '../../core/formats/circuit';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { cliRuntime, FORCE_OPTION, JSON_OPTION, parse, RUNTIME_OPTION, usageError, type Usage } from '../args';
import { diagnosticsError } from '../common';
import { outFile, writeOutFile } from '../out-file';
import { f3 } from '../text';

export const RELATE_USAGE: Usage = {
  synopsis: 'circuitlens relate C1.circuit.json C2.circuit.json … [--out FILE [--force]] [--runtime node|wasm] [--json]',
  about: 'How circuits relate: the overlap of every two (Jaccard of their nodes; an edge circuit by the nodes its edges\n'
    + 'touch), whether their union stays faithful and whether their intersection alone is, on each circuit\'s own suite\n'
    + 'and model (as its file names them), and hub nodes: in most of the circuits (more than half), or whose ablation\n'
    + 'alone costs ≥ 10% of the whole model\'s effect on most of the suites (a threshold, a heuristic). Nodes are\n'
    + 'compared by id: across different models a shared id is the same place, not the same weights.',
  options: [
    ['--out FILE', 'also write the JSON result to FILE'],
    FORCE_OPTION, RUNTIME_OPTION, JSON_OPTION,
  ],
  json: '{"circuits": [{"file", "name", "nodes", "suite", "model", "metric", "ablation", "faithfulness": {metric: f}}],\n'
    + '  "pairs": [{"a", "b", "jaccard", "shared", "onlyA", "onlyB", "union": {"size", "onA", "onB"}, "intersection": {"size", "onA", "onB"}}]\n'
    + '  (onA/onB: faithfulness by metric on that circuit\'s suite, null when its model lacks a node),\n'
    + '  "hubs": [{"id", "circuits", "drops": [{"suite", "model", "drop"}], "hurts", "hub"}], "nodes": [same, every node], "suites": [...]}',
};

const fm = (f: SetFaithfulness) => (f ? `logit_diff ${f3(f.logit_diff)}, accuracy ${f3(f.accuracy)}, kl ${f3(f.kl)}` : 'n/a (the model lacks a node)');

export async function relateCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const { values, positionals } = parse(argv, { out: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' }, runtime: { type: 'string' } }, RELATE_USAGE);
  if (positionals.length < 2) throw usageError(`expected two or more circuit files (got ${positionals.length})`, RELATE_USAGE);
  const outPath = values.out !== undefined ? outFile(values.out, values.force) : undefined;
  const ws = new NodeWorkspace(process.cwd(), cliRuntime(values.runtime));
  try {
    const inputs = [];
    for (const p of positionals) {
      const file = path.resolve(p);
      const parsed = parseCircuit(file, await ws.readText(file));
      if (!parsed.circuit) throw diagnosticsError(parsed.diagnostics, ws);
      inputs.push({ file, circuit: parsed.circuit });
    }
    const r = await relate(ws, inputs, { report: (m) => { if (!values.json) process.stderr.write(`circuitlens relate: ${m}\n`); } });
    const record = relateRecord(r);
    if (outPath) await writeOutFile(outPath, JSON.stringify(record, null, 2) + '\n', values.force);
    if (values.json) { out(JSON.stringify(record, null, 2)); return 0; }
    const idx = new Map(r.circuits.map((c, i) => [c.file, i + 1]));
    out(`${r.circuits.length} circuits:`);
    r.circuits.forEach((c, i) => out(`  [${i + 1}] ${c.file}: ${c.nodes.length} nodes on ${c.suite} (${c.model}, ${c.ablation} ablation); own faithfulness ${fm(c.faithfulness)}`));
    out('Jaccard overlap:');
    const n = r.circuits.length;
    out(`  ${''.padEnd(5)}${r.circuits.map((_, j) => `[${j + 1}]`.padStart(7)).join('')}`);
    for (let i = 0; i < n; i++) {
      const cells = r.circuits.map((_, j) => {
        if (i === j) return '1.000';
        const p = r.pairs.find((q) => (idx.get(q.a) === i + 1 && idx.get(q.b) === j + 1) || (idx.get(q.a) === j + 1 && idx.get(q.b) === i + 1))!;
        return f3(p.jaccard);
      });
      out(`  ${`[${i + 1}]`.padEnd(5)}${cells.map((c) => c.padStart(7)).join('')}`);
    }
    for (const p of r.pairs) {
      const a = idx.get(p.a);
      const b = idx.get(p.b);
      out(`[${a}] and [${b}]: jaccard ${f3(p.jaccard)}; shared ${p.shared.join(', ') || 'none'}; only in [${a}] ${p.onlyA.join(', ') || 'none'}; only in [${b}] ${p.onlyB.join(', ') || 'none'}`);
      out(`  union (${p.union.size} nodes) faithfulness on [${a}]'s suite: ${fm(p.union.onA)}; on [${b}]'s: ${fm(p.union.onB)}`);
      out(`  intersection (${p.intersection.size} nodes) on [${a}]'s suite: ${fm(p.intersection.onA)}; on [${b}]'s: ${fm(p.intersection.onB)}`);
    }
    out(`hubs (in more than half of the ${n} circuits, or ablation alone costs ≥ 10% of the whole effect on more than half of the ${r.suites.length} suites — a heuristic):`);
    if (!r.hubs.length) out('  none');
    for (const h of r.hubs) out(`  ${h.id.padEnd(7)} in ${h.circuits.length}/${n} circuits; drop alone, share of the whole effect: ${h.drops.map((d) => `${f3(d.drop)} on ${d.suite} (${path.basename(d.model)})`).join(', ')}`);
    return 0;
  } finally {
    await ws.dispose();
  }
}
