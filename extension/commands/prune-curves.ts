import * as path from 'node:path';
import { DEFAULT_SPARSITIES, runPrune } from '../../core/analysis/prune/prune';
import type { PruneStrategy } from '../../core/onnx/prune';
import type { PruneState } from '../../protocol/prune';
import { configuredBroker, variantWorkers } from '../broker';
import { PRUNE_VIEW } from '../panels/prune/panel';
import { showResult } from '../panels/result-panel';
import { f3, loadSuite, pick, pickOptionalCircuit, SUITES, withProgress, type Command, type Services } from './common';

/**
 * Pruning Curves: the suite's metric and accuracy as the attention and MLP weights are pruned (core/analysis/prune),
 * by magnitude, layer by layer from the last, and, with a circuit picked, everything but the circuit; each pruned
 * model on the workers of circuitlens.broker when it is set (extension/broker.ts).
 */
export function pruneCurves({ state }: Services): Command {
  return async (arg) => {
    const f = await pick(state, SUITES, 'suite', arg);
    if (!f) return;
    const picked = await pickOptionalCircuit(state, 'a circuit to keep from pruning (outside-circuit strategy)', 'magnitude and layer-waves only');
    if (!picked) return;
    const circuit = picked.chosen?.circuit;
    const s = await withProgress(state, `pruning curves of ${path.basename(f)}`, async (signal, report) => {
      const broker = await configuredBroker();
      const L = await loadSuite(state, f);
      if (!L) return undefined;
      const model = path.basename(L.modelPath);
      const strategies: PruneStrategy[] = circuit ? ['magnitude', 'outside-circuit', 'layer-waves'] : ['magnitude', 'layer-waves'];
      const variants = await state.ws.modelVariants(L.modelPath);
      const workers = await variantWorkers(state, broker, L.modelPath, f);
      const r = await runPrune(L.suite, variants, state.ws.display(L.modelPath), { strategies, sparsities: DEFAULT_SPARSITIES, circuit, signal, report, workers });
      state.log.info(`${L.suite.name} on ${model}: ${r.curves.map((c) => `${c.strategy} ${c.points.map((p) => `${p.sparsity}: ${f3(p.accuracy)}`).join(', ')}`).join('; ')}`);
      const view: PruneState = {
        version: 1, title: `Pruning: ${L.suite.name} · ${model}`, suiteName: L.suite.name, modelName: model, metric: r.metricName, prompts: r.prompts,
        prunableEntries: r.prunable.entries,
        ...(r.circuit ? { circuit: { name: r.circuit.name, nodes: r.circuit.nodes.length, ownedEntries: r.circuit.ownedEntries, maxSparsity: r.circuit.maxSparsity } } : {}),
        baseline: r.baseline,
        curves: r.curves.map((c) => ({ strategy: c.strategy, points: c.points.map(({ byLayer: _, pruned: __, ...p }) => p) })),
        notes: r.notes,
      };
      return view;
    });
    if (s) showResult(state, PRUNE_VIEW, s);
  };
}
