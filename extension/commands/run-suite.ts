import * as path from 'node:path';
import * as vscode from 'vscode';
import { evaluateSets, prepare } from '../../core/analysis/evaluate';
import { f3, loadSuite, pick, SUITES, withProgress, type Command, type Services } from './common';

/** Run Suite: the suite's metric and accuracy on the model, nothing ablated. */
export function runSuite({ state }: Services): Command {
  return async (arg) => {
    const f = await pick(state, SUITES, 'suite', arg);
    if (!f) return;
    await withProgress(state, `running ${path.basename(f)}`, async (signal) => {
      const L = await loadSuite(state, f);
      if (!L) return;
      const ctx = await prepare(L.engine, L.all, L.suite.ablation, { signal });
      const [r] = await evaluateSets(ctx, [[]]);
      const m = r!.metrics;
      state.log.info(`${L.suite.name} on ${path.basename(L.modelPath)}: ${L.all.length} prompts, ${L.suite.metric} ${f3(m[L.suite.metric])}, accuracy ${f3(m.accuracy)}`);
      void vscode.window.showInformationMessage(`${L.suite.name}: ${L.suite.metric} ${f3(m[L.suite.metric])}, accuracy ${f3(m.accuracy)} (${L.all.length} prompts)`);
    });
  };
}
