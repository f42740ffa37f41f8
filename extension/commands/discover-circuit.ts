import * as path from 'node:path';
import * as vscode from 'vscode';
import { discoverCircuit as discover } from '../../core/analysis/discover/discover';
import { prepareSuite } from '../../core/analysis/open-suite';
import { circuitFile, defaultCircuitName } from '../../core/analysis/records';
import { serializeCircuit } from '../../core/formats/circuit';
import { sha256File, writeFileAtomic } from '../../core/nodejs/workspace';
import { configuredBroker, sendToWorkers } from '../broker';
import { saveTarget } from '../save-target';
import { f3, loadSuite, pick, SUITES, withProgress, type Command, type Services } from './common';

/**
 * Discover Circuit: greedy node selection (or ACDC edge pruning, by setting) to the target faithfulness, written
 * as `<suite>-<model>.circuit.json` beside the suite — after asking, when that file exists.
 */
export function discoverCircuit({ state }: Services): Command {
  return async (arg) => {
    const f = await pick(state, SUITES, 'suite', arg);
    if (!f) return;
    const target = Number(vscode.workspace.getConfiguration('circuitlens').get<number>('discover.faithfulness', 0.8));
    const file = await withProgress(state, `discovering a circuit for ${path.basename(f)}`, async (signal, _report, rows) => {
      const broker = await configuredBroker();
      const L = await loadSuite(state, f);
      if (!L) return undefined;
      const contexts = await prepareSuite(L, { control: true, signal, progress: rows });
      await sendToWorkers(state, broker, L.modelPath, f, contexts);
      const { task, control } = contexts;
      const cfg = vscode.workspace.getConfiguration('circuitlens');
      const level = cfg.get<string>('discover.level', 'node') === 'edge' ? 'edge' : 'node';
      const threshold = Number(cfg.get<number>('discover.threshold', 0.02));
      const d = await discover(task, control, L.all, L.suite.metric, { level, method: level === 'edge' ? 'acdc' : 'greedy', scoring: 'patching', steps: 1, target, threshold });
      const v = d.verification;
      const wanted = path.join(path.dirname(f), `${defaultCircuitName(f, L.modelPath)}.circuit.json`);
      const out = await saveTarget(wanted, state.ws.display(wanted));
      if (!out) { state.log.info(`discovered circuit not written: ${wanted} exists`); return undefined; }
      const rel = (p: string) => path.relative(path.dirname(out), p).split(path.sep).join('/');
      const circuit = circuitFile(d, { name: `${L.suite.name} (${level === 'edge' ? 'ACDC, edges' : 'greedy'})`, level, ablation: L.ablation, model: { path: rel(L.modelPath), sha256: await sha256File(L.modelPath) }, suite: rel(f) });
      await writeFileAtomic(out, serializeCircuit(circuit));
      state.log.info(`discovered ${level === 'edge' ? `${d.edges.length} edges between ` : ''}${d.nodes.join(', ')}: faithfulness ${f3(v.faithfulness)} (accuracy ${f3(v.faithfulnessByMetric.accuracy)}, kl ${f3(v.faithfulnessByMetric.kl)}), necessity ${f3(v.necessity)} → ${out}`);
      return out;
    });
    if (file) { state.refresh(); await vscode.window.showTextDocument(vscode.Uri.file(file)); }
  };
}
