import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { prepareSuite } from '../../core/analysis/open-suite';
import { checkCircuitOnModel, verifySavedCircuit } from '../../core/analysis/verify/verify';
import { parseCircuit } from '../../core/formats/circuit';
import { sha256File } from '../../core/nodejs/workspace';
import { configuredBroker, sendToWorkers } from '../broker';
import { CIRCUITS, f3, loadSuite, pick, showProblems, withProgress, type Command, type Services } from './common';

/** Verify Circuit: faithfulness, necessity, CPR, CMD and minimality of a circuit file on its suite (as `circuitlens verify`). */
export function verifyCircuit({ state }: Services): Command {
  return async (arg) => {
    const f = await pick(state, CIRCUITS, 'circuit', arg);
    if (!f) return;
    await withProgress(state, `verifying ${path.basename(f)}`, async (signal, _report, rows) => {
      const { circuit, diagnostics, source } = parseCircuit(f, fs.readFileSync(f, 'utf8'));
      if (!circuit) { showProblems(state, diagnostics); return; }
      if (!circuit.suite) { void vscode.window.showErrorMessage('The circuit names no suite to verify it on.'); return; }
      const broker = await configuredBroker();
      const suitePath = path.resolve(path.dirname(f), circuit.suite);
      const L = await loadSuite(state, suitePath, circuit.ablation);
      if (!L) return;
      const checked = checkCircuitOnModel(circuit, source, L.engine, circuit.model?.sha256 ? await sha256File(L.modelPath) : undefined);
      if (checked.diagnostics.length) showProblems(state, checked.diagnostics);
      if (checked.error) return;
      const contexts = await prepareSuite(L, { control: true, signal, progress: rows });
      await sendToWorkers(state, broker, L.modelPath, suitePath, contexts);
      const { level, verification: v } = await verifySavedCircuit(circuit, contexts, L.all, L.suite.metric);
      const msg = `${circuit.name}${level === 'edge' ? ` (${circuit.edges!.length} edges)` : ''}: faithfulness ${f3(v.faithfulness)} (${v.metric}; accuracy ${f3(v.faithfulnessByMetric.accuracy)}, kl ${f3(v.faithfulnessByMetric.kl)}), necessity ${f3(v.necessity)}, CPR ${f3(v.cpr)}, CMD ${f3(v.cmd)}`;
      state.log.info(`${msg}; minimality ${JSON.stringify(v.minimality)}`);
      void vscode.window.showInformationMessage(msg);
    });
  };
}
