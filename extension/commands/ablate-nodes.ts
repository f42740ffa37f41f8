import * as vscode from 'vscode';
import { evaluateSets } from '../../core/analysis/evaluate';
import { prepareSuite } from '../../core/analysis/open-suite';
import { parseNodeList } from '../../core/ids';
import { GraphPanel } from '../panels/graph/panel';
import { f3, loadSuite, pick, SUITES, withProgress, type Command, type Services } from './common';

/** Ablate Nodes: the suite's metrics with the given nodes ablated (the graph's marked nodes offered). */
export function ablateNodes({ state }: Services): Command {
  return async (arg) => {
    const f = await pick(state, SUITES, 'suite', arg);
    if (!f) return;
    const input = await vscode.window.showInputBox({ title: 'Ablate nodes', prompt: 'Node ids, comma-separated (a1.h2, m0)', value: GraphPanel.current?.marked.join(',') || 'a1.h0' });
    if (!input) return;
    await withProgress(state, `ablating ${input}`, async (signal, _report, rows) => {
      const L = await loadSuite(state, f);
      if (!L) return;
      const nodes = parseNodeList(input, L.engine.info);
      const { task } = await prepareSuite(L, { signal, progress: rows });
      const [clean, abl] = await evaluateSets(task, [[], nodes]);
      const msg = `${L.ablation}-ablating ${nodes.join(', ')}: ${L.suite.metric} ${f3(clean!.metrics[L.suite.metric])} → ${f3(abl!.metrics[L.suite.metric])}, accuracy ${f3(clean!.metrics.accuracy)} → ${f3(abl!.metrics.accuracy)}, KL ${f3(abl!.metrics.kl)}`;
      state.log.info(msg);
      void vscode.window.showInformationMessage(msg);
    });
  };
}
