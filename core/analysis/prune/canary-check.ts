// The canary check `prune: {strategy, sparsity, circuit?}` with a suite metric asserted (accuracy, logit_diff, prob,
// or kl to the unpruned model): the canary's model pruned as `circuitlens prune` does, then measured on the check's
// prompts.
import { UserError } from '../../errors';
import { holds, type CanaryCheck } from '../../formats/canary';
import type { Diagnostic } from '../../formats/diagnostics';
import type { Workspace } from '../../workspace';
import { prepare, type EvalContext } from '../evaluate';
import { meanMetrics, scorePrompt } from '../metrics';
import { formatCheckValue, type CheckMeasure } from '../verify/check';
import { readCheckCircuit } from '../verify/verify';
import { prunePlanOf, pruneScopeOf } from './prune';

export interface PruneCheckInput {
  ws: Workspace;
  /** The canary file (the circuit's path is relative to it). */
  file: string;
  /** The model file the canary runs on; undefined for a model built in memory (bisect's candidates). */
  modelPath: string | undefined;
  check: CanaryCheck;
  /** The check's prompts prepared on the unpruned model (KL is taken to its distributions). */
  ctx: EvalContext;
  diagnostics: Diagnostic[];
}

export async function pruneCheck(x: PruneCheckInput): Promise<CheckMeasure> {
  const { ws, check: c, ctx } = x;
  const p = c.prune!;
  const a = c.assertion;
  if (a.quantity !== 'accuracy' && a.quantity !== 'logit_diff' && a.quantity !== 'prob' && a.quantity !== 'kl') throw new UserError(`a prune check asserts accuracy, logit_diff, prob or kl, not ${a.quantity}`);
  if (!x.modelPath || !ws.modelVariants) throw new UserError('a prune check needs the model file\'s weights in memory (not available here, e.g. within bisect)');
  const circuit = p.circuit ? (await readCheckCircuit(ws, x.file, p.circuit, x.diagnostics)).circuit : undefined;
  const variants = await ws.modelVariants(x.modelPath);
  const what = ws.display(x.modelPath);
  const plan = prunePlanOf(pruneScopeOf(variants, what, circuit).scope, p.strategy, p.sparsity);
  const engine = await variants.engineWith(plan.replacements);
  let value: number;
  try {
    const pruned = await prepare(engine, ctx.prompts, 'zero', { signal: ctx.signal });
    const scores = ctx.prompts.map((q, i) => scorePrompt(pruned.cleanLogits![i]!, q.answer, q.foil, ctx.cleanLogProbs[i]));
    value = meanMetrics(scores)[a.quantity];
  } finally {
    await engine.release();
  }
  const pass = holds(a.bound, value);
  const reached = plan.capped ? `, capped at sparsity ${formatCheckValue(plan.reached)}: the circuit owns the rest` : '';
  return {
    pass, actual: value, value,
    message: `${a.quantity}${a.quantity === 'kl' ? ' to the unpruned model' : ''} ${formatCheckValue(value)} pruned to sparsity ${p.sparsity} (${p.strategy}${reached}) ${pass ? 'satisfies' : 'is not'} ${a.bound.text}; ${ctx.prompts.length} prompts${c.tags ? ` tagged ${c.tags.join('/')}` : ''}`,
  };
}
