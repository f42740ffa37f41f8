// Verifying a saved circuit, one use case for `circuitlens verify`, the extension's Verify Circuit and the
// canaries' faithfulness checks: the circuit is checked against the model first (every node and edge exists; a
// circuit found on another model file is flagged), then evaluated at its own level — an edge circuit with every
// edge outside it ablated, a node circuit with every node outside it ablated.
import type { Engine } from '../../engine/engine';
import { UserError } from '../../errors';
import { checkNodeInModel, formatEdgeId, parseNodeId, type NodeId } from '../../ids';
import { circuitComponents, parseCircuit, type Circuit } from '../../formats/circuit';
import type { Diagnostic } from '../../formats/diagnostics';
import type { SourceFile } from '../../formats/source';
import type { Workspace } from '../../workspace';
import { attributeEdges } from '../attribute/edges';
import { evaluateEdgeCircuit, verifyEdgeCircuit } from './edges';
import { prepareEdges } from '../edge-context';
import { evaluateCircuit, type EvalContext } from '../evaluate';
import type { MetricName } from '../../vocabulary';
import type { Contexts } from '../open-suite';
import type { ResolvedPrompt } from '../prompts';
import { verifyCircuit, type Verification } from './nodes';

/** Whether the circuit is checked edge by edge: it says so and lists edges. */
export function isEdgeCircuit(c: Circuit): boolean {
  return c.granularity === 'edge' && (c.edges ?? []).length > 0;
}

/**
 * Problems of a parsed circuit on this model, reported at their place in the circuit file: nodes and edges the
 * model does not have (errors), and a model file other than the one it was found on (a warning, when the caller
 * passes the model's sha256). `diagnostics`: only the new ones; `error`: the missing ids as one error, if any.
 */
export function checkCircuitOnModel(c: Circuit, source: SourceFile, engine: Engine, modelSha256?: string): { diagnostics: Diagnostic[]; error?: UserError } {
  const before = source.diagnostics.length;
  const missingNodes: string[] = [];
  const missingEdges: string[] = [];
  c.nodes.forEach((n, i) => {
    try { checkNodeInModel(n, parseNodeId(n), engine.info); } catch (e) { missingNodes.push(n); source.report(['nodes', i], (e as Error).message); }
  });
  if (isEdgeCircuit(c)) {
    const known = new Set(engine.edges.edges.map(formatEdgeId));
    c.edges!.forEach((e, i) => {
      if (known.has(formatEdgeId(e))) return;
      missingEdges.push(formatEdgeId(e));
      source.report(['edges', i], `edge "${formatEdgeId(e)}" is not an edge of this model`);
    });
  }
  const recorded = c.model?.sha256;
  if (recorded && modelSha256 && recorded !== modelSha256) {
    source.report(['model', 'sha256'], `the circuit was found on a different model file (sha256 ${recorded.slice(0, 12)}…, this model is ${modelSha256.slice(0, 12)}…); re-verify it`, 'warning');
  }
  const list = (xs: string[]) => `${xs.slice(0, 8).join(', ')}${xs.length > 8 ? ` and ${xs.length - 8} more` : ''}`;
  const error = missingNodes.length ? new UserError(`the circuit names nodes the model does not have: ${list(missingNodes)}`)
    : missingEdges.length ? new UserError(`the circuit names edges the model does not have: ${list(missingEdges)}`) : undefined;
  return { diagnostics: source.diagnostics.slice(before), error };
}

export interface CircuitVerification {
  level: 'node' | 'edge';
  /** Heads and MLPs the circuit keeps (an edge circuit: those its edges touch). */
  nodes: NodeId[];
  verification: Verification;
}

/**
 * Full verification (faithfulness under every metric, necessity, minimality, the curve over sizes with CPR/CMD,
 * specificity on the control prompts). Edge circuits order the curve beyond their own edges by EAP scores, or
 * path patching where the export has no gradient.
 */
export async function verifySavedCircuit(c: Circuit, ctxs: Contexts, all: ResolvedPrompt[], metric: MetricName): Promise<CircuitVerification> {
  const nodes = ctxs.task.engine.checkNodes(circuitComponents(c));
  if (!isEdgeCircuit(c)) return { level: 'node', nodes, verification: await verifyCircuit(ctxs.task, nodes, metric, ctxs.control) };
  const ec = await prepareEdges(ctxs.task, all);
  const cc = ctxs.control ? await prepareEdges(ctxs.control, all) : undefined;
  const scores = (await attributeEdges(ec, metric, 0)).edges;
  return { level: 'edge', nodes, verification: await verifyEdgeCircuit(ec, c.edges!.map(formatEdgeId), metric, scores, cc) };
}

/** Faithfulness and necessity under every metric, nothing more (a canary check's quantity). */
export async function evaluateSavedCircuit(c: Circuit, ctx: EvalContext, all: ResolvedPrompt[]): Promise<{ faithfulness: Record<MetricName, number>; necessity: Record<MetricName, number>; edges?: number }> {
  if (!isEdgeCircuit(c)) return evaluateCircuit(ctx, circuitComponents(c));
  const ids = c.edges!.map(formatEdgeId);
  return { ...(await evaluateEdgeCircuit(await prepareEdges(ctx, all), ids)), edges: ids.length };
}

/**
 * A circuit file a canary check names (`rel`, relative to the canary `file`): parsed, its file problems added to
 * `diagnostics` at their lines; a missing or broken file is a UserError the check reports.
 */
export async function readCheckCircuit(ws: Workspace, file: string, rel: string, diagnostics: Diagnostic[]): Promise<{ circuit: Circuit; source: SourceFile }> {
  const p = ws.resolve(file, rel);
  if (!(await ws.exists(p))) throw new UserError(`circuit file not found: ${ws.display(p)}`);
  const parsed = parseCircuit(p, await ws.readText(p));
  diagnostics.push(...parsed.diagnostics);
  if (!parsed.circuit) throw new UserError(`the circuit ${ws.display(p)} has errors`);
  return { circuit: parsed.circuit, source: parsed.source };
}
