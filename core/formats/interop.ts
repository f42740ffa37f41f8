import { UserError } from '../errors';
import { headId, mlpId, parseNodeId, type NodeId } from '../ids';
import { CIRCUIT_SCHEMA_VERSION, type Circuit, type CircuitEdge } from './circuit';

/**
 * EAP-IG / MIB circuit JSON (the `Graph.to_json` layout of the EAP-IG library used by the MIB benchmark):
 * `{"cfg": {...}, "nodes": {id: in_graph}, "edges": {"src->dst<q>": {"score", "in_graph"}}}`.
 * Node and edge ids are the same as ours (DESIGN §3), so conversion keeps every id.
 */
export interface EapIgGraph {
  cfg: { n_layers: number; n_heads: number; parallel_attn_mlp?: boolean; d_model?: number };
  nodes: Record<string, boolean>;
  edges: Record<string, { score: number | null; in_graph: boolean }>;
}

/** Every edge of the model's computational graph, in EAP-IG order: heads take q, k, v inputs separately. */
export function allEdges(layers: number, heads: number): { source: string; target: string }[] {
  const out: { source: string; target: string }[] = [];
  const upstream: string[] = ['input'];
  for (let l = 0; l < layers; l++) {
    for (let h = 0; h < heads; h++) for (const u of upstream) for (const q of ['q', 'k', 'v']) out.push({ source: u, target: `${headId(l, h)}<${q}>` });
    const attn = Array.from({ length: heads }, (_, h) => headId(l, h) as string);
    for (const u of [...upstream, ...attn]) out.push({ source: u, target: mlpId(l) });
    upstream.push(...attn, mlpId(l));
  }
  for (const u of upstream) out.push({ source: u, target: 'logits' });
  return out;
}

export function toEapIg(c: Circuit, shape: { layers: number; heads: number }): EapIgGraph {
  const inC = new Set<string>(['input', 'logits', ...c.nodes]);
  const given = new Map((c.edges ?? []).map((e) => [`${e.source}->${e.target}`, e]));
  const nodes: Record<string, boolean> = { input: true };
  for (let l = 0; l < shape.layers; l++) {
    for (let h = 0; h < shape.heads; h++) nodes[headId(l, h)] = inC.has(headId(l, h));
    nodes[mlpId(l)] = inC.has(mlpId(l));
  }
  nodes['logits'] = true;
  const edges: EapIgGraph['edges'] = {};
  for (const e of allEdges(shape.layers, shape.heads)) {
    const key = `${e.source}->${e.target}`;
    const g = given.get(key);
    const inGraph = c.granularity === 'edge' ? !!g : inC.has(e.source) && inC.has(e.target.replace(/<[qkv]>$/, ''));
    edges[key] = { score: g?.score ?? null, in_graph: inGraph };
  }
  return { cfg: { n_layers: shape.layers, n_heads: shape.heads, parallel_attn_mlp: false }, nodes, edges };
}

export function fromEapIg(json: unknown, name: string): Circuit {
  const g = json as Partial<EapIgGraph>;
  if (!g || typeof g !== 'object' || !g.nodes || !g.edges) throw new UserError(`${name}: not an EAP-IG graph (expected "nodes" and "edges" objects)`);
  const nodes = Object.entries(g.nodes).filter(([id, inGraph]) => inGraph && id !== 'input' && id !== 'logits').map(([id]) => { parseNodeId(id); return id as NodeId; });
  const edges: CircuitEdge[] = [];
  for (const [key, e] of Object.entries(g.edges)) {
    const m = /^(.+)->(.+)$/.exec(key);
    if (!m) throw new UserError(`${name}: edge "${key}" is not of the form SRC->DST`);
    if (e.in_graph) edges.push({ source: m[1]!, target: m[2]!, ...(e.score !== null && e.score !== undefined ? { score: e.score } : {}) });
  }
  return {
    schemaVersion: CIRCUIT_SCHEMA_VERSION, name: name.replace(/\.json$/, ''), granularity: edges.length ? 'edge' : 'node', nodes, edges,
    notes: `Imported from EAP-IG JSON (${g.cfg?.n_layers ?? '?'} layers × ${g.cfg?.n_heads ?? '?'} heads).`,
  };
}
