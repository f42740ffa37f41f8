// Canary checks on how nodes and circuits relate: `{backup: [a1.h0, a1.h1], interaction: ">= 0.2"}` (the pair's
// interaction, core/analysis/redundancy) and `{circuit: a.circuit.json, relate: b.circuit.json, jaccard: ">= 0.5"}`
// (their overlap, core/analysis/relate). runCanary (canary.ts) calls these for the two quantities.
import type { CheckMeasure } from './check';
import type { Engine } from '../../engine/engine';
import { UserError } from '../../errors';
import { holds, type CanaryCheck } from '../../formats/canary';
import { circuitComponents } from '../../formats/circuit';
import { readCheckCircuit } from './verify';
import type { Diagnostic } from '../../formats/diagnostics';
import { METRICS, type MetricName } from '../../vocabulary';
import type { Workspace } from '../../workspace';
import type { EvalContext } from '../evaluate';
import { pairEffects } from '../redundancy/redundancy';
import { jaccard } from '../relate/relate';


const fmt = (x: number) => (Number.isFinite(x) ? (Math.abs(x) >= 100 ? x.toFixed(1) : x.toFixed(4).replace(/0+$/, '').replace(/\.$/, '')) : String(x));

/** The interaction of the check's two nodes under its metric (default: the suite's), the other metrics in the message. */
export async function backupCheck(c: CanaryCheck, ctx: EvalContext, engine: Engine, suiteMetric: MetricName, scope: string): Promise<CheckMeasure> {
  if (c.assertion.quantity !== 'interaction') throw new Error('not a backup check');
  const [a, b] = engine.checkNodes(c.backup!);
  if (a === b) throw new UserError(`backup names ${a} twice: give two different nodes`);
  const metric = c.metric ?? suiteMetric;
  const { pairs } = await pairEffects(ctx, [[a!, b!]], metric);
  const p = pairs[0]!;
  const pass = holds(c.assertion.bound, p.interaction);
  const others = METRICS.filter((m) => m !== metric && m !== 'prob').map((m) => `${m} ${fmt(p.byMetric[m].interaction)}`).join(', ');
  return {
    pass, actual: p.interaction, value: p.interaction,
    message: `interaction (${metric}) of ${a} and ${b} ${fmt(p.interaction)} ${pass ? 'satisfies' : 'is not'} ${c.assertion.bound.text}: `
      + `together ${fmt(p.effectAB)}, alone ${fmt(p.effectA)} and ${fmt(p.effectB)} (interaction under ${others}); ${scope}`,
  };
}

/** Jaccard overlap of `circuit` and `relate` (by their nodes; an edge circuit by the nodes its edges touch). No model runs. */
export async function relateCheck(c: CanaryCheck, ws: Workspace, file: string, diagnostics: Diagnostic[]): Promise<CheckMeasure> {
  if (c.assertion.quantity !== 'jaccard') throw new Error('not a relate check');
  const A = circuitComponents((await readCheckCircuit(ws, file, c.circuit!, diagnostics)).circuit);
  const B = circuitComponents((await readCheckCircuit(ws, file, c.relate!, diagnostics)).circuit);
  const value = jaccard(A, B);
  const inB = new Set<string>(B);
  const shared = A.filter((n) => inB.has(n));
  const pass = holds(c.assertion.bound, value);
  return {
    pass, actual: value, value,
    message: `jaccard of ${c.circuit} and ${c.relate} ${fmt(value)} ${pass ? 'satisfies' : 'is not'} ${c.assertion.bound.text}: `
      + `${shared.length} shared of ${new Set([...A, ...B]).size} nodes (${shared.join(', ') || 'none'})`,
  };
}
