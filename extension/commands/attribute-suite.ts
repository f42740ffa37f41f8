import * as path from 'node:path';
import * as vscode from 'vscode';
import { patchingAttribution } from '../../core/analysis/attribution';
import { attributeEdges, prepareEdges } from '../../core/analysis/edges';
import { prepare } from '../../core/analysis/evaluate';
import { isUserError } from '../../core/errors';
import { allComponentNodes } from '../../core/ids';
import type { GraphState } from '../../protocol/graph';
import { GraphPanel } from '../panels/graph/panel';
import { loadSuite, pick, SUITES, withProgress, type Command, type Services } from './common';

/** Attribute Suite: scores every node (and edge) by patching and opens the attribution graph. */
export function attributeSuite({ state }: Services): Command {
  return async (arg) => {
    const f = await pick(state, SUITES, 'suite', arg);
    if (!f) return;
    const g = await withProgress(state, `attributing ${path.basename(f)}`, async (signal, report) => {
      const L = await loadSuite(state, f);
      if (!L) return undefined;
      report(`${allComponentNodes(L.engine.info).length + 1} ablation sets × ${L.task.length} prompts`);
      const ctx = await prepare(L.engine, L.task, L.suite.ablation, { signal, meanOver: L.all });
      const attr = await patchingAttribution(ctx, L.suite.metric);
      // Edges: exact path patching while that is a few hundred runs, else their gradient estimate (EAP), falling
      // back to patching where the export has no gradient (core/analysis/edges.ts attributeEdges).
      let edgeMethod = '';
      try {
        const ec = await prepareEdges(ctx, L.all);
        report(`${ec.ids.length} edges`);
        const ea = await attributeEdges(ec, L.suite.metric);
        attr.edges = ea.edges;
        edgeMethod = `; edges by ${ea.method}`;
        if (ea.fallback) {
          state.log.warn(`${path.basename(L.modelPath)}: ${ea.fallback}`);
          void vscode.window.showWarningMessage(`CircuitLens: ${ea.fallback}`);
          edgeMethod += ' (gradients unavailable)';
        }
      } catch (e) {
        if (!isUserError(e)) throw e;
        state.log.warn(`no edge attribution for ${path.basename(L.modelPath)}: ${(e as Error).message}`);
      }
      const graph: GraphState = {
        version: 1, title: `Attribution: ${L.suite.name} · ${path.basename(L.modelPath)}`, modelPath: L.modelPath, suitePath: f, metric: L.suite.metric,
        ablation: L.suite.ablation, method: `exact patching (${L.suite.ablation} ablation)${edgeMethod}`, layers: L.engine.info.layers, heads: L.engine.info.heads,
        nodes: [{ id: 'input', score: 0 }, ...attr.nodes, { id: 'logits', score: 0 }], edges: attr.edges, prompts: L.task, meanOver: L.all, marked: [],
        compute: { workerUri: '', wasmUri: '', modelUri: '', prefer: 'auto', what: '' },
      };
      return graph;
    });
    if (g) GraphPanel.show(state, g, (file) => { state.refresh(); void vscode.window.showInformationMessage(`Saved circuit ${state.ws.display(file)}`); });
  };
}
