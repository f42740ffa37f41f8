import * as path from 'node:path';
import { prepareSuite } from '../../core/analysis/open-suite';
import { redundancy } from '../../core/analysis/redundancy/redundancy';
import { showResult } from '../panels/result-panel';
import { RELATIONS_VIEW, redundancyState } from '../panels/redundancy/panel';
import { loadSuite, pick, SUITES, withProgress, type Command, type Services } from './common';

/** Redundancy (Backup Heads): the top nodes ablated alone and in every pair (core/analysis/redundancy), as a heatmap. */
export function redundancyCommand({ state }: Services): Command {
  return async (arg) => {
    const f = await pick(state, SUITES, 'suite', arg);
    if (!f) return;
    const s = await withProgress(state, `pairing the top nodes of ${path.basename(f)}`, async (signal, report) => {
      const L = await loadSuite(state, f);
      if (!L) return undefined;
      const { task } = await prepareSuite(L, { signal });
      const r = await redundancy(task, L.all, L.suite.metric, { top: 10, report });
      return redundancyState(r, `Redundancy: ${L.suite.name} · ${path.basename(L.modelPath)}`);
    });
    if (s) showResult(state, RELATIONS_VIEW, s);
  };
}
