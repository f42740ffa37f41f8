// The canary check kind `quantize: {bits, scope, group_size}`: the check's quantity measured on the model with the
// scope's weights fake-quantized (sensitivity.ts), e.g. `accuracy: ">= 0.95"` or `kl: "<= 0.01"` (KL from the
// original model's next-token distribution to the quantized one's), or with a circuit its faithfulness.
import { UserError } from '../../errors';
import type { CanaryCheck } from '../../formats/canary';
import { holds } from '../../formats/canary';
import { circuitComponents, type Circuit } from '../../formats/circuit';
import type { NodeId } from '../../ids';
import { quantizeWeights } from '../../onnx/quantize';
import { weightScope, type WeightScope } from '../../onnx/weight-scope';
import type { MetricName } from '../../vocabulary';
import { prepare, runSets, type EvalContext } from '../evaluate';
import { meanMetrics, scorePrompt } from '../metrics';
import type { ResolvedPrompt } from '../prompts';
import { formatCheckValue, type CheckMeasure } from '../verify/check';
import { evaluateSavedCircuit } from '../verify/verify';
import type { Workspace } from '../../workspace';

export interface QuantizeCheckInput {
  check: CanaryCheck;
  /** The check's prompts prepared on the original model (clean log-probabilities for KL). */
  ctx: EvalContext;
  all: ResolvedPrompt[];
  modelPath: string | undefined;
  /** Rebuilds the model with other weights in memory (its modelVariants port). */
  ws: Workspace;
  circuit?: Circuit;
  /** The suite's metric, for faithfulness. */
  metric: MetricName;
  scope: string;
}

export async function quantizeCheck(x: QuantizeCheckInput): Promise<CheckMeasure> {
  const { check: c, ctx } = x;
  const spec = c.quantize!;
  if (!x.ws.modelVariants || !x.modelPath) throw new UserError('quantize checks run under circuitlens canary and the editor\'s canaries (here the model\'s weights cannot be rebuilt)');
  const model = await x.ws.modelVariants(x.modelPath);
  const nodes = x.circuit ? circuitComponents(x.circuit) : [];
  const scope: WeightScope = spec.scope === 'circuit' || spec.scope === 'outside' ? { kind: spec.scope, circuit: { name: c.circuit!, nodes } } : { kind: spec.scope };
  const scoped = weightScope(model.model, x.modelPath, scope, model.hooks);
  const q = quantizeWeights(model.model, scoped.tensors, { scheme: spec.bits, groupSize: spec.groupSize });
  const how = `${spec.scope} weights rounded to ${spec.bits}${spec.groupSize ? ` (groups of ${spec.groupSize})` : spec.bits === 'fp16' ? '' : ' (per channel)'}`;
  const engine = await model.engineWith(q.tensors);
  try {
    const qctx = await prepare(engine, ctx.prompts, ctx.ablation, { signal: ctx.signal, meanOver: x.all });
    const a = c.assertion;
    if (a.quantity === 'top1' || a.quantity === 'threshold') throw new Error('unreachable: the format refuses these with quantize');
    let value: number;
    if (a.quantity === 'faithfulness' || a.quantity === 'necessity') {
      if (!x.circuit) throw new UserError(`${a.quantity} is measured for a circuit: add circuit:`);
      const ev = await evaluateSavedCircuit(x.circuit, qctx, x.all);
      value = (a.quantity === 'faithfulness' ? ev.faithfulness : ev.necessity)[c.metric ?? x.metric];
    } else {
      const ablate: NodeId[] = c.ablate ? engine.checkNodes(c.ablate) : [];
      const { logits } = await runSets(qctx, [ablate]);
      const scores = qctx.prompts.map((p, i) => scorePrompt(logits[0]![i]!, p.answer, p.foil, ctx.cleanLogProbs[i]));
      value = meanMetrics(scores)[a.quantity as MetricName];
    }
    const pass = holds(a.bound, value);
    const what = c.ablate?.length ? ` and ${c.ablate.join(', ')} ablated` : '';
    return { pass, actual: value, value, message: `${a.quantity} ${formatCheckValue(value)} with ${how}${what} ${pass ? 'satisfies' : 'is not'} ${a.bound.text}; ${q.tensors.length} tensors, ${x.scope}` };
  } finally {
    await engine.release();
  }
}
