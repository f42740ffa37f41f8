import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { defaultScopes } from '../../core/analysis/sensitivity/scopes';
import { runSensitivity, SENSITIVITY_NOTES } from '../../core/analysis/sensitivity/sensitivity';
import { circuitComponents } from '../../core/formats/circuit';
import { parseSuite } from '../../core/formats/suite';
import type { QuantizeOptions } from '../../core/onnx/quantize';
import type { WeightScope } from '../../core/onnx/weight-scope';
import type { SensitivityState } from '../../protocol/sensitivity';
import { configuredBroker, variantWorkers } from '../broker';
import { showResult } from '../panels/result-panel';
import { SENSITIVITY_VIEW } from '../panels/sensitivity/panel';
import { f3, modelFor, pick, pickOptionalCircuit, showProblems, SUITES, withProgress, type Command, type Services } from './common';

/** The quantizations offered, most common first. */
const CHOICES: { label: string; description: string; q: QuantizeOptions }[] = [
  { label: 'int8', description: 'per output channel', q: { scheme: 'int8' } },
  { label: 'int4', description: 'per output channel', q: { scheme: 'int4' } },
  { label: 'int4, groups of 32', description: 'one scale per 32 input entries of a channel', q: { scheme: 'int4', groupSize: 32 } },
  { label: 'int4, groups of 128', description: 'one scale per 128 input entries of a channel', q: { scheme: 'int4', groupSize: 128 } },
  { label: 'fp16', description: 'each weight rounded to float16', q: { scheme: 'fp16' } },
];

/**
 * Quantization Sensitivity…: the suite (active or picked) on its model with the weights of each scope fake-quantized
 * (core/analysis/sensitivity), a quantization and optionally a circuit picked; a table and bar charts. Each
 * quantized model on the workers of circuitlens.broker when it is set (extension/broker.ts).
 */
export function sensitivityCommand({ state }: Services): Command {
  return async (arg) => {
    const f = await pick(state, SUITES, 'suite', arg);
    if (!f) return;
    const choice = await vscode.window.showQuickPick(CHOICES, { title: 'CircuitLens: quantize the weights to' });
    if (!choice) return;
    const picked = await pickOptionalCircuit(state, 'measure a circuit\'s faithfulness too?', 'metric, accuracy and KL only');
    if (!picked) return;
    const circuit = picked.chosen;
    const s = await withProgress(state, `quantizing ${path.basename(f)}'s model (${choice.label})`, async (signal, report) => {
      const broker = await configuredBroker();
      const { suite, diagnostics } = parseSuite(f, fs.readFileSync(f, 'utf8'));
      if (!suite) { showProblems(state, diagnostics); return undefined; }
      const modelPath = await modelFor(state, suite);
      if (!modelPath) return undefined;
      state.requireTrust();
      const model = await state.ws.modelVariants(modelPath);
      const name = circuit ? path.basename(circuit.file).replace(/\.circuit\.json$/, '') : '';
      const scopes: WeightScope[] = defaultScopes(!!circuit).map((r) => (r.kind === 'circuit' || r.kind === 'outside' ? { kind: r.kind, circuit: { name, nodes: circuitComponents(circuit!.circuit) } } : { kind: r.kind }));
      const workers = await variantWorkers(state, broker, modelPath, f);
      const r = await runSensitivity(suite, model, { quantize: choice.q, scopes, circuit: circuit?.circuit, ablation: circuit?.circuit.ablation, signal, report, workers });
      const modelName = path.basename(modelPath);
      state.log.info(`${suite.name} on ${modelName}, ${choice.label}: ${r.rows.map((x) => `${x.scope}: ${r.metric} ${f3(x.metric)}, accuracy ${f3(x.accuracy)}, KL ${x.kl.toExponential(2)}`).join('; ')}`);
      const view: SensitivityState = {
        version: 1, title: `Sensitivity: ${suite.name} · ${modelName} · ${choice.label}`, suiteName: suite.name, modelName, metric: r.metric, quantization: choice.label,
        prompts: r.prompts, ...(circuit ? { circuitName: name } : {}), baseline: r.baseline,
        rows: r.rows.map((x) => ({ scope: x.scope, tensors: x.tensors, entries: x.entries, relativeError: x.relativeError, metric: x.metric, metricDrop: x.metricDrop, accuracy: x.accuracy, kl: x.kl, faithfulness: x.faithfulness })),
        notes: SENSITIVITY_NOTES,
      };
      return view;
    });
    if (s) showResult(state, SENSITIVITY_VIEW, s);
  };
}
