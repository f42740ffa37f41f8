import * as path from 'node:path';
import * as vscode from 'vscode';
import { attribute } from '../../core/analysis/attribute/attribute';
import { prepareSuite } from '../../core/analysis/open-suite';
import type { GraphState } from '../../protocol/graph';
import { configuredBroker, sendToWorkers } from '../broker';
import { GraphPanel } from '../panels/graph/panel';
import { loadSuite, pick, SUITES, withProgress, type Command, type Services } from './common';

/**
 * Attribute Suite: scores every node (and edge, the method chosen by core/analysis/attribute) and opens the graph;
 * the batched work on the workers of circuitlens.broker when it is set (extension/broker.ts).
 */
export function attributeSuite({ state }: Services): Command {
  return async (arg) => {
    const f = await pick(state, SUITES, 'suite', arg);
    if (!f) return;
    const g = await withProgress(state, `attributing ${path.basename(f)}`, async (signal, report, rows) => {
      const broker = await configuredBroker();
      const L = await loadSuite(state, f);
      if (!L) return undefined;
      const contexts = await prepareSuite(L, { signal, progress: rows });
      await sendToWorkers(state, broker, L.modelPath, f, contexts);
      const { task } = contexts;
      const attr = await attribute(task, L.all, L.suite.metric, { level: 'graph', method: 'auto', report });
      let edgeMethod = attr.edgeMethod ? `; edges by ${attr.edgeMethod}` : '';
      if (attr.edgeNote) {
        state.log.warn(`${path.basename(L.modelPath)}: ${attr.edgeNote}`);
        if (attr.edges.length) { void vscode.window.showWarningMessage(`CircuitLens: ${attr.edgeNote}`); edgeMethod += ' (gradients unavailable)'; }
      }
      const graph: GraphState = {
        version: 1, title: `Attribution: ${L.suite.name} · ${path.basename(L.modelPath)}`, modelPath: L.modelPath, suitePath: f, metric: L.suite.metric,
        ablation: L.ablation, method: `${attr.nodeMethod}${edgeMethod}`, layers: L.engine.info.layers, heads: L.engine.info.heads,
        nodes: [{ id: 'input', score: 0 }, ...attr.nodes, { id: 'logits', score: 0 }], edges: attr.edges, prompts: L.task, meanOver: L.all, marked: [],
        compute: { workerUri: '', wasmUri: '', modelUri: '', prefer: 'auto', what: '' },
      };
      return graph;
    });
    if (g) GraphPanel.show(state, g, (file) => { state.refresh(); void vscode.window.showInformationMessage(`Saved circuit ${state.ws.display(file)}`); });
  };
}
