import * as path from 'node:path';
import { runSweep } from '../../core/analysis/sweep/sweep';
import type { SweepState } from '../../protocol/sweep';
import { configuredBroker, workersForRun } from '../broker';
import { showResult } from '../panels/result-panel';
import { SWEEP_VIEW } from '../panels/sweep/panel';
import { f3, loadSuite, pick, SUITES, withProgress, type Command, type Services } from './common';

/**
 * Sweep Suite: metric and accuracy per value of the suite's swept variable, n* (core/analysis/sweep), as a line plot;
 * the prompts run on the workers of circuitlens.broker when it is set (extension/broker.ts).
 */
export function sweepSuite({ state }: Services): Command {
  return async (arg) => {
    const f = await pick(state, SUITES, 'suite', arg);
    if (!f) return;
    const s = await withProgress(state, `sweeping ${path.basename(f)}`, async (signal, _report, rows) => {
      const broker = await configuredBroker();
      const L = await loadSuite(state, f);
      if (!L) return undefined;
      const remote = await workersForRun(state, broker, L.modelPath, f);
      const r = await runSweep(L, { signal, progress: rows, remote });
      const model = path.basename(L.modelPath);
      const c = r.critical;
      state.log.info(`${L.suite.name} on ${model}: ${r.variable}* = ${c ? `${f3(c.value)} (accuracy ${c.direction} across ${r.level})` : 'none'}; ${r.points.map((p) => `${r.variable}=${p.value}: ${f3(p.accuracy)}`).join(', ')}`);
      const view: SweepState = {
        version: 1, title: `Sweep: ${L.suite.name} · ${model}`, suiteName: L.suite.name, modelName: model, variable: r.variable, metric: r.metric,
        level: r.level, points: r.points, critical: c && { value: c.value, direction: c.direction, between: c.between, ci: c.ci, resolved: c.resolved }, bootstrap: r.bootstrap,
      };
      return view;
    });
    if (s) showResult(state, SWEEP_VIEW, s);
  };
}
