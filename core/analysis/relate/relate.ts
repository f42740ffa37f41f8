// How circuits relate, one use case for `circuitlens relate`, the extension's Relate Circuits and the canaries'
// jaccard checks: the overlap of every two circuits (Jaccard of their nodes), whether their union stays faithful
// and whether their intersection alone is, on each circuit's own suite and model, and the hub nodes (in most of
// the circuits, or whose ablation alone hurts most of the suites). Circuits may come from different suites and
// models: each is evaluated where its file says it was found (its suite:, its model: path, else the suite's).
import type { Engine } from '../../engine/engine';
import { UserError } from '../../errors';
import { formatDiagnostic, hasErrors, type Diagnostic } from '../../formats/diagnostics';
import { circuitComponents, type Circuit } from '../../formats/circuit';
import { parseSuite } from '../../formats/suite';
import { checkNodeInModel, parseNodeId, type NodeId } from '../../ids';
import type { MetricName } from '../../vocabulary';
import type { Workspace } from '../../workspace';
import { signedMetric } from '../attribute/nodes';
import { round6 } from '../records';
import { evaluateCircuit, evaluateSets, type EvalContext } from '../evaluate';
import { openSuite, prepareSuite } from '../open-suite';

export interface RelateInput { file: string; circuit: Circuit }

/** Where a circuit is evaluated: its suite on its model under its ablation. */
interface Place { suite: string; model: string; metric: MetricName; ablation: string; ctx: EvalContext; engine: Engine }

export interface RelatedCircuit {
  file: string;
  name: string;
  nodes: NodeId[];
  suite: string;
  model: string;
  metric: MetricName;
  ablation: string;
  /** The circuit's own faithfulness on its suite, under every metric (what union and intersection are read against). */
  faithfulness: Record<MetricName, number>;
}

/** Faithfulness of a node set on one circuit's suite, or null when that circuit's model lacks one of the nodes. */
export type SetFaithfulness = Record<MetricName, number> | null;

export interface RelatePair {
  a: string;
  b: string;
  jaccard: number;
  shared: NodeId[];
  onlyA: NodeId[];
  onlyB: NodeId[];
  /** The union on A's suite and on B's: does the larger circuit stay faithful to each task? */
  union: { size: number; onA: SetFaithfulness; onB: SetFaithfulness };
  /** The intersection alone on each suite: is what they share enough for either? */
  intersection: { size: number; onA: SetFaithfulness; onB: SetFaithfulness };
}

export interface RelatedNode {
  id: NodeId;
  /** Files of the circuits that contain it. */
  circuits: string[];
  /** Per suite: the drop of its metric when the node alone is ablated, as a share of the whole model's (every node ablated). */
  drops: { suite: string; model: string; drop: number }[];
  /** Suites where that share is at least HUB_DROP. */
  hurts: number;
  hub: boolean;
}

export interface RelateResult {
  circuits: RelatedCircuit[];
  pairs: RelatePair[];
  /** Nodes in most of the circuits (more than half, at least two), or whose ablation hurts most of the suites (more than half, at least two). */
  hubs: RelatedNode[];
  /** Every node of any circuit, hubs first. */
  nodes: RelatedNode[];
  suites: { suite: string; model: string; metric: MetricName; ablation: string }[];
}

/** A node "hurts" a suite when ablating it alone costs this share of the whole model's effect (a threshold, a heuristic). */
export const HUB_DROP = 0.1;

/** |A ∩ B| / |A ∪ B| of two node lists (1 for two empty ones). */
export function jaccard(a: readonly string[], b: readonly string[]): number {
  const A = new Set(a);
  const B = new Set(b);
  const inter = [...A].filter((x) => B.has(x)).length;
  const union = new Set([...A, ...B]).size;
  return union === 0 ? 1 : inter / union;
}

/** More than half of n, and at least two: what "most" means for hubs. */
export const most = (n: number) => Math.max(2, Math.floor(n / 2) + 1);

/**
 * Nodes in most of the circuits (more than half, at least two; none with fewer than two circuits), by membership
 * alone: what the explorer marks without running a model.
 */
export function membershipHubs(circuits: { nodes: readonly string[] }[]): Map<string, number> {
  const count = new Map<string, number>();
  for (const c of circuits) for (const n of new Set(c.nodes)) count.set(n, (count.get(n) ?? 0) + 1);
  return new Map([...count].filter(([, k]) => circuits.length >= 2 && k >= most(circuits.length)));
}

function located(ds: Diagnostic[], ws: Workspace): UserError {
  const e = ds.find((d) => d.severity === 'error')!;
  const rest = ds.filter((d) => d.severity === 'error' && d !== e).map((d) => '\n' + formatDiagnostic({ ...d, file: ws.display(d.file) })).join('');
  return new UserError(`${e.message}${rest}`, ws.display(e.file), e.line, e.col);
}

function fitsModel(nodes: NodeId[], engine: Engine): boolean {
  try { nodes.forEach((n) => checkNodeInModel(n, parseNodeId(n), engine.info)); return true; } catch { return false; }
}

/** Opens each circuit's suite on its model (once per suite, model and ablation). */
async function places(ws: Workspace, inputs: RelateInput[], signal?: AbortSignal): Promise<Place[]> {
  const cache = new Map<string, Promise<Place>>();
  const open = async (suitePath: string, modelPath: string | undefined, ablation: string | undefined, from: string): Promise<Place> => {
    const sp = parseSuite(suitePath, await ws.readText(suitePath));
    if (!sp.suite) throw located(sp.diagnostics, ws);
    const model = modelPath ?? (sp.suite.model ? ws.resolve(suitePath, sp.suite.model) : undefined);
    if (!model) throw new UserError(`${ws.display(from)}: neither the circuit nor its suite ${ws.display(suitePath)} names a model`);
    const engine = await ws.loadEngine(model);
    const { opened, diagnostics } = openSuite(sp.suite, engine, ablation as never);
    if (!opened || hasErrors(diagnostics)) throw located(diagnostics, ws);
    const { task } = await prepareSuite(opened, { signal });
    return { suite: suitePath, model, metric: sp.suite.metric, ablation: opened.ablation, ctx: task, engine };
  };
  return Promise.all(inputs.map(({ file, circuit: c }) => {
    if (!c.suite) throw new UserError(`${ws.display(file)} names no suite: relate evaluates each circuit on its own suite (add "suite" to the circuit)`);
    const suitePath = ws.resolve(file, c.suite);
    const modelPath = c.model?.path ? ws.resolve(file, c.model.path) : undefined;
    const key = `${suitePath}|${modelPath ?? ''}|${c.ablation ?? ''}`;
    let p = cache.get(key);
    // One at a time: engines load and prepare in turn, not all at once in memory.
    if (!p) { p = (async () => { await Promise.all(cache.values()); return open(suitePath, modelPath, c.ablation, file); })(); cache.set(key, p); }
    return p;
  }));
}

/** Overlaps, union and intersection faithfulness on each circuit's suite, and hubs, of two or more circuits. */
export async function relate(ws: Workspace, inputs: RelateInput[], o: { signal?: AbortSignal; report?: (m: string) => void } = {}): Promise<RelateResult> {
  if (inputs.length < 2) throw new UserError(`relate compares circuits: give at least two (got ${inputs.length})`);
  const at = await places(ws, inputs, o.signal);
  const nodesOf = inputs.map((x) => circuitComponents(x.circuit));
  inputs.forEach((x, i) => {
    const missing = nodesOf[i]!.filter((n) => !fitsModel([n], at[i]!.engine));
    if (missing.length) throw new UserError(`${ws.display(x.file)}: the circuit names nodes its model does not have: ${missing.join(', ')}`);
  });
  const faithOn = async (i: number, nodes: NodeId[]): Promise<SetFaithfulness> => (fitsModel(nodes, at[i]!.engine) ? (await evaluateCircuit(at[i]!.ctx, nodes)).faithfulness : null);

  o.report?.(`${inputs.length} circuits on ${new Set(at).size} suite/model pairs`);
  const circuits: RelatedCircuit[] = [];
  for (let i = 0; i < inputs.length; i++) {
    const p = at[i]!;
    circuits.push({
      file: ws.display(inputs[i]!.file), name: inputs[i]!.circuit.name, nodes: nodesOf[i]!, suite: ws.display(p.suite), model: ws.display(p.model),
      metric: p.metric, ablation: p.ablation, faithfulness: (await evaluateCircuit(p.ctx, nodesOf[i]!)).faithfulness,
    });
  }
  const pairs: RelatePair[] = [];
  for (let i = 0; i < inputs.length; i++) {
    for (let j = i + 1; j < inputs.length; j++) {
      const A = nodesOf[i]!;
      const B = nodesOf[j]!;
      const inB = new Set<string>(B);
      const inA = new Set<string>(A);
      const shared = A.filter((n) => inB.has(n));
      const union = [...A, ...B.filter((n) => !inA.has(n))];
      pairs.push({
        a: circuits[i]!.file, b: circuits[j]!.file, jaccard: jaccard(A, B), shared, onlyA: A.filter((n) => !inB.has(n)), onlyB: B.filter((n) => !inA.has(n)),
        union: { size: union.length, onA: await faithOn(i, union), onB: await faithOn(j, union) },
        intersection: { size: shared.length, onA: await faithOn(i, shared), onB: await faithOn(j, shared) },
      });
    }
  }

  // Each node of any circuit ablated alone on each distinct suite, in one batch per suite.
  const candidates = [...new Set(nodesOf.flat())];
  const distinct = [...new Set(at)];
  const drops = new Map<string, RelatedNode['drops']>(candidates.map((n) => [n, []]));
  for (const p of distinct) {
    const here = candidates.filter((n) => fitsModel([n], p.engine));
    const [clean, ...rest] = await evaluateSets(p.ctx, [[], here, ...here.map((n) => [n])]);
    const base = signedMetric(clean!.metrics, p.metric);
    const whole = base - signedMetric(rest[0]!.metrics, p.metric);
    here.forEach((n, k) => {
      const drop = base - signedMetric(rest[1 + k]!.metrics, p.metric);
      drops.get(n)!.push({ suite: ws.display(p.suite), model: ws.display(p.model), drop: Math.abs(whole) > 1e-12 ? drop / whole : NaN });
    });
  }
  const needCircuits = most(inputs.length);
  const needSuites = most(distinct.length);
  const nodes: RelatedNode[] = candidates.map((id) => {
    const files = circuits.filter((_, i) => nodesOf[i]!.includes(id)).map((c) => c.file);
    const d = drops.get(id)!;
    const hurts = d.filter((x) => x.drop >= HUB_DROP).length;
    return { id, circuits: files, drops: d, hurts, hub: files.length >= needCircuits || (distinct.length >= 2 && hurts >= needSuites) };
  });
  const meanDrop = (n: RelatedNode) => n.drops.reduce((s, x) => s + (Number.isFinite(x.drop) ? x.drop : 0), 0) / Math.max(1, n.drops.length);
  nodes.sort((x, y) => Number(y.hub) - Number(x.hub) || y.circuits.length - x.circuits.length || meanDrop(y) - meanDrop(x));
  return {
    circuits, pairs, hubs: nodes.filter((n) => n.hub), nodes,
    suites: distinct.map((p) => ({ suite: ws.display(p.suite), model: ws.display(p.model), metric: p.metric, ablation: p.ablation })),
  };
}

const roundF = (f: SetFaithfulness): SetFaithfulness => (f ? Object.fromEntries(Object.entries(f).map(([k, v]) => [k, round6(v)])) as Record<MetricName, number> : null);

/** The JSON record of a relate result (DESIGN §7: "pairs" with "a", "b", "jaccard"; "hubs"), numbers to 6 places. */
export function relateRecord(r: RelateResult): Record<string, unknown> {
  const node = (n: RelatedNode) => ({ ...n, drops: n.drops.map((d) => ({ ...d, drop: round6(d.drop) })) });
  return {
    circuits: r.circuits.map((c) => ({ ...c, faithfulness: roundF(c.faithfulness) })),
    pairs: r.pairs.map((p) => ({
      ...p, jaccard: round6(p.jaccard),
      union: { ...p.union, onA: roundF(p.union.onA), onB: roundF(p.union.onB) },
      intersection: { ...p.intersection, onA: roundF(p.intersection.onA), onB: roundF(p.intersection.onB) },
    })),
    hubs: r.hubs.map(node), nodes: r.nodes.map(node), suites: r.suites,
  };
}
