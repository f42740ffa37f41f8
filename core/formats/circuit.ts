import circuitSchema from '../../schemas/circuit.schema.json';
import type { AblationKind } from '../vocabulary';
import { parseNodeId, targetNode, type NodeId } from '../ids';
import type { Diagnostic } from './diagnostics';
import { compileSchema, SourceFile } from './source';

export const CIRCUIT_SCHEMA_VERSION = 1;

export interface CircuitEdge { source: string; target: string; score?: number }

/** `*.circuit.json` (DESIGN §5). Unknown keys are kept when a circuit is rewritten. */
export interface Circuit {
  schemaVersion: number;
  name: string;
  model?: { path?: string; sha256?: string };
  suite?: string;
  granularity?: 'node' | 'edge';
  ablation?: AblationKind;
  nodes: NodeId[];
  edges?: CircuitEdge[];
  scores?: Record<string, number>;
  metrics?: Record<string, unknown>;
  created?: string;
  notes?: string;
  [extra: string]: unknown;
}

export function parseCircuit(file: string, text: string): { circuit?: Circuit; diagnostics: Diagnostic[]; source: SourceFile } {
  const src = new SourceFile(file, text);
  if (!src.ok) return { diagnostics: src.diagnostics, source: src };
  const v = src.value as Partial<Circuit> | undefined;
  // Version first: a newer file may be valid under its own schema and invalid under ours.
  if (v && typeof v === 'object' && typeof v.schemaVersion === 'number' && v.schemaVersion > CIRCUIT_SCHEMA_VERSION) {
    src.report(['schemaVersion'], `written by a newer CircuitLens (schemaVersion ${v.schemaVersion}); this version reads schemaVersion ${CIRCUIT_SCHEMA_VERSION}. Update CircuitLens to open it.`);
    return { diagnostics: src.diagnostics, source: src };
  }
  if (!src.validate(compileSchema(circuitSchema))) return { diagnostics: src.diagnostics, source: src };
  const c = v as Circuit;
  c.nodes.forEach((n, i) => {
    try { parseNodeId(n); } catch (e) { src.report(['nodes', i], (e as Error).message); }
  });
  return src.ok ? { circuit: c, diagnostics: src.diagnostics, source: src } : { diagnostics: src.diagnostics, source: src };
}

/** Ablatable nodes of a circuit (heads and MLPs; input and logits are always kept). */
export function circuitComponents(c: Circuit): NodeId[] {
  const nodes = new Set<string>(c.nodes);
  // An edge-level circuit keeps every node an edge touches.
  for (const e of c.edges ?? []) {
    nodes.add(e.source);
    nodes.add(targetNode(e.target));
  }
  return [...nodes].filter((n) => n !== 'input' && n !== 'logits') as NodeId[];
}

export function serializeCircuit(c: Circuit): string {
  return JSON.stringify(c, null, 2) + '\n';
}
