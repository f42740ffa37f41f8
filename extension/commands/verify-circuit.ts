import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { attributeEdges, prepareEdges, verifyEdgeCircuit } from '../../core/analysis/edges';
import { prepare } from '../../core/analysis/evaluate';
import { verifyCircuit as verify } from '../../core/analysis/verify';
import { circuitComponents, parseCircuit } from '../../core/formats/circuit';
import { CIRCUITS, f3, loadSuite, pick, showProblems, withProgress, type Command, type Services } from './common';

/** Verify Circuit: faithfulness, necessity, CPR, CMD and minimality of a circuit file on its suite. */
export function verifyCircuit({ state }: Services): Command {
  return async (arg) => {
    const f = await pick(state, CIRCUITS, 'circuit', arg);
    if (!f) return;
    await withProgress(state, `verifying ${path.basename(f)}`, async (signal) => {
      const { circuit, diagnostics } = parseCircuit(f, fs.readFileSync(f, 'utf8'));
      if (!circuit) { showProblems(state, diagnostics); return; }
      if (!circuit.suite) { void vscode.window.showErrorMessage('The circuit names no suite to verify it on.'); return; }
      const L = await loadSuite(state, path.resolve(path.dirname(f), circuit.suite));
      if (!L) return;
      const ctx = await prepare(L.engine, L.task, circuit.ablation ?? L.suite.ablation, { signal, meanOver: L.all });
      const control = L.control.length ? await prepare(L.engine, L.control, ctx.ablation, { signal, meanOver: L.all }) : undefined;
      const nodes = L.engine.checkNodes(circuitComponents(circuit));
      const edgeLevel = circuit.granularity === 'edge' && (circuit.edges ?? []).length > 0;
      let v;
      if (edgeLevel) {
        const ec = await prepareEdges(ctx, L.all);
        const cc = control ? await prepareEdges(control, L.all) : undefined;
        v = await verifyEdgeCircuit(ec, circuit.edges!.map((e) => `${e.source}->${e.target}`), L.suite.metric, (await attributeEdges(ec, L.suite.metric, 0)).edges, cc);
      } else {
        v = await verify(ctx, nodes, L.suite.metric, control);
      }
      const msg = `${circuit.name}${edgeLevel ? ` (${circuit.edges!.length} edges)` : ''}: faithfulness ${f3(v.faithfulness)} (${v.metric}; accuracy ${f3(v.faithfulnessByMetric.accuracy)}, kl ${f3(v.faithfulnessByMetric.kl)}), necessity ${f3(v.necessity)}, CPR ${f3(v.cpr)}, CMD ${f3(v.cmd)}`;
      state.log.info(`${msg}; minimality ${JSON.stringify(v.minimality)}`);
      void vscode.window.showInformationMessage(msg);
    });
  };
}
