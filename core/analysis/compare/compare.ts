// Two checkpoints of one architecture on one suite, one use case for `circuitlens compare` and the canaries'
// cross-checkpoint checks: the suite's metrics on each, every node's attribution score on each, and with a circuit
// its faithfulness on each and how it compares with the circuit re-discovered on the second model. Nothing here
// measures anew what another use case measures: scores are `attribute`'s, faithfulness is `evaluateSavedCircuit`'s
// (verify's numbers), the re-discovered circuit is `discoverCircuit`'s.
import type { Engine } from '../../engine/engine';
import { UserError } from '../../errors';
import { formatEdgeId, parseEdgeId } from '../../ids';
import { circuitComponents, type Circuit } from '../../formats/circuit';
import { METRICS, type MetricName } from '../../vocabulary';
import { attribute } from '../attribute/attribute';
import { discoverCircuit, type DiscoverOptions, type Discovered } from '../discover/discover';
import { evaluateSets, type EvalContext } from '../evaluate';
import { prepareSuite, type Contexts, type OpenedSuite } from '../open-suite';
import type { ProgressSink } from '../progress';
import type { ResolvedPrompt } from '../prompts';
import { evaluateSavedCircuit, isEdgeCircuit } from '../verify/verify';

/** The suite's metrics on one model, unablated (DESIGN §7 `a.task`, `a.control`). */
export interface SuiteSummary {
  metric: MetricName;
  /** Under the suite's metric. */
  value: number;
  accuracy: number;
  /** Null when a prompt has no foil. */
  logitDiff: number | null;
  prob: number;
  prompts: number;
}

export interface ModelSide {
  task: SuiteSummary;
  control?: SuiteSummary;
}

export interface NodeDelta { id: string; scoreA: number; scoreB: number; delta: number }

/** A circuit's faithfulness and necessity under every metric on one model. */
export interface CircuitOnModel { faithfulness: Record<MetricName, number>; necessity: Record<MetricName, number> }

export interface Rediscovery {
  options: DiscoverOptions;
  /** Where the options came from: the circuit file's metrics block, or discover's defaults when it records none. */
  optionsFrom: 'circuit' | 'defaults';
  level: 'node' | 'edge';
  /** Members of the circuit found on the model: node ids (node level) or edge ids (edge level). */
  members: string[];
  discovered: Discovered;
}

export interface CircuitComparison {
  name: string;
  level: 'node' | 'edge';
  metric: MetricName;
  faithfulnessA: number;
  faithfulnessB: number;
  /** faithfulnessA − faithfulnessB under the metric (what a `faithfulness_drop` canary bounds). */
  drop: number;
  a: CircuitOnModel;
  b: CircuitOnModel;
  /** |C ∩ C_B| / |C ∪ C_B|, C_B the circuit re-discovered on B with C's discover options (members: nodes or edges). */
  jaccard: number;
  /** In C_B, not in C. */
  entered: string[];
  /** In C, not in C_B. */
  left: string[];
  rediscoveredB: Rediscovery;
  /** The same re-discovery on A, when asked for: a hand-picked C differs from any discovered one even on A. */
  rediscoveredA?: Rediscovery;
  /** Jaccard of the two re-discovered circuits (with rediscoveredA). */
  jaccardRediscovered?: number;
}

export interface Comparison {
  metric: MetricName;
  ablation: string;
  a: ModelSide;
  b: ModelSide;
  /** Every head and MLP, in the model's order; delta = scoreB − scoreA. */
  nodes: NodeDelta[];
  nodeMethod?: string;
  /** With CompareOptions.edges: every edge's score on each (the method chosen per size, as the graph view's). */
  edges?: { source: string; target: string; scoreA: number; scoreB: number; delta: number }[];
  circuit?: CircuitComparison;
}

export interface CompareOptions {
  circuit?: Circuit;
  /** Default: the suite's metric. */
  metric?: MetricName;
  /** Also re-discover the circuit on A (jaccardRediscovered). */
  rediscoverOnA?: boolean;
  /** Progress for long work, in words. */
  report?: (message: string) => void;
  signal?: AbortSignal;
  /** Rows of batched work (core/analysis/progress.ts). */
  progress?: ProgressSink;
  /** Also score every edge on both (the diff view draws them). */
  edges?: boolean;
}

/**
 * Refuses two models that are not checkpoints of one architecture: their hooks, layers, heads, widths or
 * vocabularies differ. `names`: how messages call them (file names).
 */
export function checkSameArchitecture(a: Engine, b: Engine, names: [string, string] = ['A', 'B']): void {
  const diffs: string[] = [];
  const ia = a.info;
  const ib = b.info;
  if (ia.architecture !== ib.architecture) diffs.push(`architecture ${ia.architecture} vs ${ib.architecture}`);
  const fields: [string, number, number][] = [
    ['layers', ia.layers, ib.layers], ['heads', ia.heads, ib.heads], ['d_model', ia.dModel, ib.dModel],
    ['d_head', ia.dHead, ib.dHead], ['vocab', ia.vocab, ib.vocab],
  ];
  for (const [what, x, y] of fields) if (x !== y) diffs.push(`${what} ${x} vs ${y}`);
  const ha = Object.keys(ia.hooks);
  const hb = new Set(Object.keys(ib.hooks));
  const onlyA = ha.filter((h) => !hb.has(h));
  const onlyB = [...hb].filter((h) => !(h in ia.hooks));
  const list = (xs: string[]) => `${xs.slice(0, 4).join(', ')}${xs.length > 4 ? ` and ${xs.length - 4} more` : ''}`;
  if (onlyA.length) diffs.push(`hooks only in ${names[0]}: ${list(onlyA)}`);
  if (onlyB.length) diffs.push(`hooks only in ${names[1]}: ${list(onlyB)}`);
  if (diffs.length) {
    throw new UserError(`${names[0]} and ${names[1]} are not two checkpoints of one architecture (${diffs.join('; ')}); compare needs models with the same hooks, layers, heads, d_model and vocabulary`);
  }
}

/** The suite must mean the same token ids on both models (a different tokenizer would compare different inputs). */
export function checkSamePrompts(a: ResolvedPrompt[], b: ResolvedPrompt[], names: [string, string] = ['A', 'B']): void {
  const same = (x?: number[], y?: number[]) => (x ?? []).join(',') === (y ?? []).join(',');
  const i = a.findIndex((p, k) => {
    const q = b[k];
    return !q || !same(p.ids, q.ids) || p.answer !== q.answer || p.foil !== q.foil || !same(p.corruptedIds, q.corruptedIds);
  });
  if (i >= 0 || a.length !== b.length) {
    const text = a[i >= 0 ? i : 0]?.text ?? '';
    throw new UserError(`${names[0]} and ${names[1]} tokenize the suite differently (first at the prompt ${JSON.stringify(text)}); compare needs one tokenizer for both`);
  }
}

/** The unablated metrics of a context (its clean run, kept from prepare). */
export async function suiteSummary(ctx: EvalContext, metric: MetricName): Promise<SuiteSummary> {
  const [r] = await evaluateSets(ctx, [[]]);
  const m = r!.metrics;
  return { metric, value: m[metric], accuracy: m.accuracy, logitDiff: Number.isNaN(m.logit_diff) ? null : m.logit_diff, prob: m.prob, prompts: ctx.prompts.length };
}

/** Jaccard index of two member lists (1 when both are empty). */
export function jaccard(x: string[], y: string[]): number {
  const a = new Set(x);
  const b = new Set(y);
  const inter = [...a].filter((m) => b.has(m)).length;
  const union = new Set([...a, ...b]).size;
  return union === 0 ? 1 : inter / union;
}

/** The circuit's members at its own level: edge ids for an edge circuit, heads and MLPs for a node circuit. */
export function circuitMembers(c: Circuit): string[] {
  return isEdgeCircuit(c) ? c.edges!.map(formatEdgeId) : circuitComponents(c);
}

/** The options a circuit was discovered with, as its file records them (discover's defaults for the rest). */
export function rediscoveryOptions(c: Circuit): { options: DiscoverOptions; from: 'circuit' | 'defaults' } {
  const m = (c.metrics ?? {}) as Record<string, unknown>;
  const num = (k: string, d: number) => (typeof m[k] === 'number' && Number.isFinite(m[k]) ? (m[k] as number) : d);
  const recorded = m['method'] === 'greedy' || m['method'] === 'acdc';
  return {
    options: {
      level: isEdgeCircuit(c) ? 'edge' : 'node',
      method: m['method'] === 'acdc' ? 'acdc' : 'greedy',
      scoring: m['scores'] === 'gradient' ? 'gradient' : 'patching',
      steps: Math.max(1, Math.round(num('steps', 1))),
      target: num('target', 0.8),
      threshold: num('threshold', 0.02),
    },
    from: recorded ? 'circuit' : 'defaults',
  };
}

/** The circuit found on this model with `c`'s discover options. */
export async function rediscover(c: Circuit, ctxs: Contexts, all: ResolvedPrompt[], metric: MetricName): Promise<Rediscovery> {
  const { options, from } = rediscoveryOptions(c);
  const discovered = await discoverCircuit(ctxs.task, ctxs.control, all, metric, options);
  const members = options.level === 'edge' ? discovered.edges.map(formatEdgeId) : discovered.nodes.filter((n) => n !== 'input' && n !== 'logits');
  return { options, optionsFrom: from, level: options.level, members, discovered };
}

/** Faithfulness and necessity of a saved circuit on one model, under every metric (verify's quantities). */
export async function circuitOnModel(c: Circuit, task: EvalContext, all: ResolvedPrompt[]): Promise<CircuitOnModel> {
  const ev = await evaluateSavedCircuit(c, task, all);
  return { faithfulness: ev.faithfulness, necessity: ev.necessity };
}

/** How C moved from A to B, given C's evaluation on each and its re-discovery on B. */
export function circuitComparison(c: Circuit, metric: MetricName, a: CircuitOnModel, b: CircuitOnModel, onB: Rediscovery, onA?: Rediscovery): CircuitComparison {
  const mine = circuitMembers(c);
  const inC = new Set(mine);
  const inB = new Set(onB.members);
  return {
    name: c.name, level: onB.level, metric,
    faithfulnessA: a.faithfulness[metric], faithfulnessB: b.faithfulness[metric], drop: a.faithfulness[metric] - b.faithfulness[metric],
    a, b, jaccard: jaccard(mine, onB.members),
    entered: onB.members.filter((m) => !inC.has(m)), left: mine.filter((m) => !inB.has(m)),
    rediscoveredB: onB,
    ...(onA ? { rediscoveredA: onA, jaccardRediscovered: jaccard(onA.members, onB.members) } : {}),
  };
}

/**
 * Compares two opened suites (the same suite on two models). Both must be one architecture with one tokenizer,
 * opened under one ablation; otherwise a UserError says what differs.
 */
export async function compareModels(a: OpenedSuite, b: OpenedSuite, o: CompareOptions = {}): Promise<Comparison> {
  checkSameArchitecture(a.engine, b.engine);
  checkSamePrompts(a.all, b.all);
  if (a.ablation !== b.ablation) throw new Error(`compare: both sides must use one ablation (${a.ablation} vs ${b.ablation})`);
  const metric = o.metric ?? a.suite.metric;
  const say = (m: string) => o.report?.(m);
  const sides: { side: ModelSide; ctxs: Contexts; scores: Map<string, number>; edges: Map<string, number>; method?: string }[] = [];
  for (const [name, opened] of [['A', a], ['B', b]] as const) {
    say(`${name}: clean runs of ${opened.all.length} prompts`);
    const ctxs = await prepareSuite(opened, { control: true, signal: o.signal, progress: o.progress });
    const side: ModelSide = { task: await suiteSummary(ctxs.task, metric), ...(ctxs.control ? { control: await suiteSummary(ctxs.control, metric) } : {}) };
    const attr = await attribute(ctxs.task, opened.all, metric, { level: o.edges ? 'graph' : 'node', method: o.edges ? 'auto' : 'patching', report: (m) => say(`${name}: attribution, ${m}`) });
    sides.push({ side, ctxs, scores: new Map(attr.nodes.map((n) => [n.id, n.score])), edges: new Map(attr.edges.map((e) => [formatEdgeId(e), e.score])), method: attr.nodeMethod });
  }
  const [A, B] = sides as [typeof sides[0], typeof sides[0]];
  const nodes: NodeDelta[] = [...A.scores.keys()].map((id) => {
    const scoreA = A.scores.get(id)!;
    const scoreB = B.scores.get(id)!;
    return { id, scoreA, scoreB, delta: scoreB - scoreA };
  });
  const result: Comparison = { metric, ablation: a.ablation, a: A.side, b: B.side, nodes, nodeMethod: A.method };
  if (o.edges) {
    result.edges = [...new Set([...A.edges.keys(), ...B.edges.keys()])].map((id) => {
      const { source } = parseEdgeId(id);
      const scoreA = A.edges.get(id) ?? 0;
      const scoreB = B.edges.get(id) ?? 0;
      return { source, target: id.slice(id.indexOf('->') + 2), scoreA, scoreB, delta: scoreB - scoreA };
    });
  }
  const c = o.circuit;
  if (c) {
    say(`circuit "${c.name}": faithfulness on A and B`);
    const onA = await circuitOnModel(c, A.ctxs.task, a.all);
    const onB = await circuitOnModel(c, B.ctxs.task, b.all);
    say(`circuit "${c.name}": re-discovering it on B${o.rediscoverOnA ? ' and on A' : ''}`);
    const rB = await rediscover(c, B.ctxs, b.all, metric);
    const rA = o.rediscoverOnA ? await rediscover(c, A.ctxs, a.all, metric) : undefined;
    result.circuit = circuitComparison(c, metric, onA, onB, rB, rA);
  }
  return result;
}

/** A metric record with every value rounded for output. */
export function byMetric(r: Record<MetricName, number>, round: (x: number) => number): Record<MetricName, number> {
  return Object.fromEntries(METRICS.map((m) => [m, round(r[m])])) as Record<MetricName, number>;
}
