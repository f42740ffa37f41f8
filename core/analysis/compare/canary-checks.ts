// The canaries' checks across checkpoints, through the compare use case: `faithfulness_drop` (a circuit's
// faithfulness on a baseline model minus on the canary's model) and `jaccard` (of a circuit with the one
// re-discovered on the canary's model). Each message names the model it ran on, and the baseline.
import { formatCheckValue, type CheckMeasure } from '../verify/check';
import type { Engine } from '../../engine/engine';
import { UserError } from '../../errors';
import { holds, type CanaryCheck } from '../../formats/canary';
import type { Circuit } from '../../formats/circuit';
import { hasErrors, type Diagnostic } from '../../formats/diagnostics';
import type { SourceFile } from '../../formats/source';
import type { Suite } from '../../formats/suite';
import type { MetricName } from '../../vocabulary';
import type { Workspace } from '../../workspace';
import { prepare, type EvalContext } from '../evaluate';
import { resolvePrompts, type ResolvedPrompt } from '../prompts';
import { checkCircuitOnModel, readCheckCircuit } from '../verify/verify';
import { checkSameArchitecture, checkSamePrompts, circuitMembers, circuitOnModel, jaccard, rediscover } from './compare';

export interface CrossCheck {
  ws: Workspace;
  /** The canary file (paths in the check are relative to it). */
  file: string;
  modelPath: string;
  engine: Engine;
  check: CanaryCheck;
  suite: Suite;
  /** The check's prompts on the canary's model (its tags and ablation). */
  ctx: EvalContext;
  /** Every suite prompt on the canary's model (means are taken over them). */
  all: ResolvedPrompt[];
  /** Where circuit and suite problems go (shown at their lines). */
  diagnostics: Diagnostic[];
  /** The prompts and ablation, in words. */
  scope: string;
}


function onModel(x: CrossCheck, circuit: Circuit, source: SourceFile, engine: Engine, sha256?: string): void {
  const checked = checkCircuitOnModel(circuit, source, engine, sha256);
  x.diagnostics.push(...checked.diagnostics);
  if (checked.error) throw checked.error;
}

/** Runs a `faithfulness_drop` or `jaccard` check. */
export async function crossCheckpointCheck(x: CrossCheck): Promise<CheckMeasure> {
  const a = x.check.assertion;
  if (a.quantity !== 'faithfulness_drop' && a.quantity !== 'jaccard') throw new Error(`not a cross-checkpoint check: ${a.quantity}`);
  const { circuit, source } = await readCheckCircuit(x.ws, x.file, x.check.circuit!, x.diagnostics);
  const metric: MetricName = x.check.metric ?? x.suite.metric;
  const model = x.ws.display(x.modelPath);
  if (a.quantity === 'jaccard') {
    onModel(x, circuit, source, x.engine);
    const r = await rediscover(circuit, { task: x.ctx }, x.all, metric);
    const mine = circuitMembers(circuit);
    const value = jaccard(mine, r.members);
    const pass = holds(a.bound, value);
    const inC = new Set(mine);
    const inR = new Set(r.members);
    const list = (xs: string[]) => (xs.length ? xs.slice(0, 12).join(', ') + (xs.length > 12 ? ` and ${xs.length - 12} more` : '') : 'none');
    const o = r.options;
    const how = o.method === 'acdc' ? `ACDC, threshold ${o.threshold}` : `greedy by ${o.scoring} scores to faithfulness ${o.target}`;
    const unit = r.level === 'edge' ? 'edges' : 'nodes';
    return {
      pass, actual: value, value,
      message: `jaccard ${formatCheckValue(value)} of the circuit (${mine.length} ${unit}) with the one re-discovered on ${model} (${how}${r.optionsFrom === 'defaults' ? ', discover\'s defaults' : ''}: ${r.members.length} ${unit}, faithfulness ${formatCheckValue(r.discovered.verification.faithfulness)}) ${pass ? 'satisfies' : 'is not'} ${a.bound.text}; entered: ${list(r.members.filter((m) => !inC.has(m)))}; left: ${list(mine.filter((m) => !inR.has(m)))}; ${x.scope}`,
    };
  }
  const baselinePath = x.ws.resolve(x.file, x.check.baseline!);
  const baseline = x.ws.display(baselinePath);
  if (!(await x.ws.exists(baselinePath))) throw new UserError(`baseline model not found: ${baseline}`);
  const base = await x.ws.loadEngine(baselinePath);
  checkSameArchitecture(base, x.engine, [baseline, model]);
  const resolved = resolvePrompts(x.suite, base);
  x.diagnostics.push(...resolved.diagnostics);
  if (hasErrors(resolved.diagnostics)) throw new UserError(`the suite ${x.ws.display(x.suite.file)} has errors for the baseline ${baseline}`);
  // The same prompts as on the canary's model (the check's tags), looked up by their place in the suite.
  const byIndex = new Map(resolved.prompts.map((p) => [p.index, p]));
  const chosen = x.ctx.prompts.map((p) => byIndex.get(p.index)!).filter(Boolean);
  checkSamePrompts(chosen, x.ctx.prompts, [baseline, model]);
  onModel(x, circuit, source, base, circuit.model?.sha256 ? await x.ws.sha256(baselinePath) : undefined);
  onModel(x, circuit, source, x.engine);
  const bctx = await prepare(base, chosen, x.ctx.ablation, { signal: x.ctx.signal, meanOver: resolved.prompts });
  const before = await circuitOnModel(circuit, bctx, resolved.prompts);
  const after = await circuitOnModel(circuit, x.ctx, x.all);
  const value = before.faithfulness[metric] - after.faithfulness[metric];
  const pass = holds(a.bound, value);
  const others = (['logit_diff', 'accuracy', 'kl'] as MetricName[]).map((m) => `${m} ${formatCheckValue(before.faithfulness[m])} → ${formatCheckValue(after.faithfulness[m])}`).join(', ');
  return {
    pass, actual: value, value,
    message: `faithfulness (${metric}) drop ${formatCheckValue(value)} from the baseline ${baseline} (${formatCheckValue(before.faithfulness[metric])}) to ${model} (${formatCheckValue(after.faithfulness[metric])}) ${pass ? 'satisfies' : 'is not'} ${a.bound.text} (faithfulness by metric: ${others}); ${x.scope}`,
  };
}
