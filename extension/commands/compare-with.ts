import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { compareModels, type Comparison } from '../../core/analysis/compare/compare';
import { openSuite, type OpenedSuite } from '../../core/analysis/open-suite';
import { circuitComponents, parseCircuit, type Circuit } from '../../core/formats/circuit';
import { parseSuite } from '../../core/formats/suite';
import type { NodeId } from '../../core/ids';
import type { GraphDiff, GraphState } from '../../protocol/graph';
import { GraphPanel } from '../panels/graph/panel';
import { CIRCUITS, fileOf, MODELS, modelFor, pick, showProblems, SUITES, withProgress, type Command, type Services } from './common';

/**
 * Compare With…: the model (B, from the explorer row or the active model) against a baseline checkpoint A picked
 * from the workspace, on the active suite and optionally a circuit: the graph of B coloured by change from A, the
 * circuit as saved and as re-discovered on B, the metrics side by side (core/analysis/compare/compare.ts).
 */
export function compareWith({ state }: Services): Command {
  return async (arg) => {
    const b = fileOf(arg)?.endsWith('.onnx') ? fileOf(arg)! : await modelFor(state);
    if (!b) return;
    const others = (await state.findFiles(MODELS)).filter((f) => f !== b);
    if (!others.length) { void vscode.window.showWarningMessage('No other model in this workspace to compare with.'); return; }
    const a = (await vscode.window.showQuickPick(others.map((f) => ({ label: path.basename(f), description: state.ws.display(f), file: f })),
      { title: `Compare ${path.basename(b)} with… (the baseline, A)` }))?.file;
    if (!a) return;
    const suitePath = await pick(state, SUITES, 'suite', undefined);
    if (!suitePath) return;
    const circuits = await state.findFiles(CIRCUITS);
    const chosen = circuits.length
      ? await vscode.window.showQuickPick([{ label: 'No circuit', file: '' }, ...circuits.map((f) => ({ label: path.basename(f), description: state.ws.display(f), file: f }))],
        { title: 'A circuit to follow from A to B (faithfulness on both, re-discovered on B)' })
      : { file: '' };
    if (!chosen) return;
    const graph = await withProgress(state, `comparing ${path.basename(b)} with ${path.basename(a)}`, async (signal, report, rows) => {
      const parsed = parseSuite(suitePath, fs.readFileSync(suitePath, 'utf8'));
      if (!parsed.suite) { showProblems(state, parsed.diagnostics); return undefined; }
      let circuit: Circuit | undefined;
      if (chosen.file) {
        const c = parseCircuit(chosen.file, fs.readFileSync(chosen.file, 'utf8'));
        if (!c.circuit) { showProblems(state, c.diagnostics); return undefined; }
        circuit = c.circuit;
      }
      const sides: OpenedSuite[] = [];
      for (const m of [a, b]) {
        const r = openSuite(parsed.suite, await state.engine(m), circuit?.ablation);
        if (!r.opened) { showProblems(state, r.diagnostics); return undefined; }
        sides.push(r.opened);
      }
      const cmp = await compareModels(sides[0]!, sides[1]!, { circuit, edges: true, signal, report, progress: rows });
      return diffGraph(cmp, { a, b, suitePath, opened: sides[1]!, circuit });
    });
    if (graph) GraphPanel.show(state, graph, (file) => { state.refresh(); void vscode.window.showInformationMessage(`Saved circuit ${state.ws.display(file)}`); });
  };
}

function diffGraph(cmp: Comparison, o: { a: string; b: string; suitePath: string; opened: OpenedSuite; circuit?: Circuit }): GraphState {
  const ends = [{ id: 'input' as const, score: 0 }, { id: 'logits' as const, score: 0 }];
  const metrics: GraphDiff['metrics'] = [
    { name: `${cmp.metric} (task)`, a: cmp.a.task.value, b: cmp.b.task.value },
    { name: 'accuracy (task)', a: cmp.a.task.accuracy, b: cmp.b.task.accuracy },
    ...(cmp.a.control && cmp.b.control ? [{ name: 'accuracy (control)', a: cmp.a.control.accuracy, b: cmp.b.control.accuracy }] : []),
    ...(cmp.circuit ? [
      { name: `circuit faithfulness (${cmp.metric})`, a: cmp.circuit.faithfulnessA, b: cmp.circuit.faithfulnessB },
      { name: 'circuit faithfulness (accuracy)', a: cmp.circuit.a.faithfulness.accuracy, b: cmp.circuit.b.faithfulness.accuracy },
      { name: 'circuit faithfulness (kl)', a: cmp.circuit.a.faithfulness.kl, b: cmp.circuit.b.faithfulness.kl },
      { name: 'Jaccard (saved vs re-discovered on B)', a: null, b: cmp.circuit.jaccard },
    ] : []),
  ];
  const { engine } = o.opened;
  return {
    version: 1, title: `Diff: ${path.basename(o.b)} vs ${path.basename(o.a)} · ${o.opened.suite.name}`, modelPath: o.b, suitePath: o.suitePath,
    metric: cmp.metric, ablation: o.opened.ablation, method: `exact patching (${o.opened.ablation} ablation)`, layers: engine.info.layers, heads: engine.info.heads,
    nodes: [ends[0]!, ...cmp.nodes.map((n) => ({ id: n.id as NodeId, score: n.scoreB })), ends[1]!],
    edges: (cmp.edges ?? []).map((e) => ({ source: e.source, target: e.target, score: e.scoreB })),
    prompts: o.opened.task, meanOver: o.opened.all, marked: [],
    compute: { workerUri: '', wasmUri: '', modelUri: '', prefer: 'auto', what: '' },
    diff: {
      baselinePath: o.a, metrics,
      nodes: [ends[0]!, ...cmp.nodes.map((n) => ({ id: n.id as NodeId, score: n.scoreA })), ends[1]!],
      edges: (cmp.edges ?? []).map((e) => ({ source: e.source, target: e.target, score: e.scoreA })),
      ...(cmp.circuit && o.circuit ? {
        circuit: {
          name: cmp.circuit.name, a: circuitComponents(o.circuit),
          b: cmp.circuit.rediscoveredB.discovered.nodes,
        },
      } : {}),
    },
  };
}
