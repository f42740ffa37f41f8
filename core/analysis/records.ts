// Circuit records: the content of a `*.circuit.json` (DESIGN §5) and of `verify --json`, built in one place for
// every writer — discovery (CLI and extension) and circuits marked by hand in the graph panel. Callers decide where
// the file goes; `model.path` and `suite` are relative to it.
import type { AblationKind } from '../vocabulary';
import { CIRCUIT_SCHEMA_VERSION, type Circuit } from '../formats/circuit';
import type { NodeId } from '../ids';
import type { Discovered } from './discover/discover';
import type { Verification } from './verify/nodes';

export interface RecordPlace {
  name: string;
  ablation: AblationKind;
  /** Relative to the circuit file. */
  model: { path: string; sha256: string };
  /** Relative to the circuit file. */
  suite: string;
}

/** The circuit file for a discovery; `model` and `suite` paths relative to the circuit file. */
export function circuitFile(d: Discovered, o: RecordPlace & { level: 'node' | 'edge' }): Circuit {
  return {
    schemaVersion: CIRCUIT_SCHEMA_VERSION, name: o.name, model: o.model, suite: o.suite, granularity: o.level, ablation: o.ablation,
    nodes: d.nodes, edges: d.edges, ...(o.level === 'node' ? { scores: d.scores } : {}), metrics: d.metrics, created: new Date().toISOString(), notes: d.notes,
  };
}

export function round6(x: number): number {
  return Number.isFinite(x) ? Math.round(x * 1e6) / 1e6 : x;
}

/** The metrics block of a circuit file and of `verify --json` (DESIGN §6 keys first). */
export function verificationRecord(v: Verification, extra: Record<string, unknown>): Record<string, unknown> {
  const r = (o: Record<string, number>) => Object.fromEntries(Object.entries(o).map(([k, x]) => [k, round6(x)]));
  return {
    faithfulness: round6(v.faithfulness),
    faithfulnessByMetric: r({ logit_diff: v.faithfulnessByMetric.logit_diff, accuracy: v.faithfulnessByMetric.accuracy, kl: v.faithfulnessByMetric.kl, prob: v.faithfulnessByMetric.prob }),
    necessity: round6(v.necessity),
    necessityByMetric: r(v.necessityByMetric),
    minimality: r(v.minimality),
    specificity: v.specificity ? r(v.specificity) : null,
    cpr: round6(v.cpr), cmd: round6(v.cmd),
    curve: v.curve.map((p) => ({ size: p.size, faithfulness: round6(p.faithfulness) })),
    metric: v.metric, ablation: v.ablation, prompts: v.prompts,
    ...Object.fromEntries(Object.entries(extra).filter(([, x]) => x !== undefined)),
  };
}

/** A node circuit marked by hand (graph panel): the marked nodes, the scores they were chosen by, and how. */
export function markedCircuit(nodes: NodeId[], o: RecordPlace & { scores: Record<string, number>; metrics?: Record<string, unknown>; method: string }): Circuit {
  return {
    schemaVersion: CIRCUIT_SCHEMA_VERSION, name: o.name, model: o.model, suite: o.suite, granularity: 'node', ablation: o.ablation, nodes, edges: [],
    scores: o.scores, metrics: o.metrics ?? {}, created: new Date().toISOString(), notes: `Marked by hand in the attribution graph (${o.method}).`,
  };
}

/** The file name a new circuit of this suite on this model is offered under: `<suite>-<model>.circuit.json`. */
export function defaultCircuitName(suiteFile: string, modelFile: string): string {
  const base = (p: string) => p.split(/[\\/]/).pop()!;
  return `${base(suiteFile).replace(/\.suite\.ya?ml$/, '')}-${base(modelFile).replace(/\.onnx$/i, '')}`;
}
