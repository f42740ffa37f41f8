import { UserError } from '../errors';
import { allComponentNodes, allEdges, edgeTarget, formatEdgeId, parseEdgeId, parseNodeId, targetNode, type NodeId } from '../ids';
import { CIRCUIT_SCHEMA_VERSION, type Circuit, type CircuitEdge } from './circuit';

/**
 * EAP-IG / MIB circuit JSON: the layout EAP-IG's `Graph.to_json` writes and `Graph.from_json` reads (the library
 * the MIB benchmark uses; ../shared/interop/README.md lists what its reader requires):
 * `{"cfg": {"n_layers", "n_heads", "parallel_attn_mlp", "d_model"}, "nodes": {id: {"in_graph", "score"?}},
 *   "edges": {"src->dst<q>": {"score", "in_graph"}}}`.
 * Node and edge ids are the same as ours (DESIGN §3), so conversion keeps every id. Older CircuitLens exports wrote
 * nodes as bare booleans and no `d_model`; EAP-IG's reader fails on both, so they are read here but never written.
 */
export interface EapIgNode { in_graph: boolean; score?: number | null }
export interface EapIgGraph {
  cfg: { n_layers: number; n_heads: number; parallel_attn_mlp: boolean; d_model: number };
  nodes: Record<string, EapIgNode>;
  edges: Record<string, { score: number | null; in_graph: boolean }>;
}

/** The model shape an EAP-IG graph is built from (EAP-IG's `Graph.from_model(cfg)`). */
export interface EapIgShape { layers: number; heads: number; dModel: number; parallel?: boolean }

export function toEapIg(c: Circuit, shape: EapIgShape): EapIgGraph {
  const parallel = !!shape.parallel;
  const edgeCircuit = c.granularity === 'edge';
  const given = new Map((c.edges ?? []).map((e) => [formatEdgeId(e), e]));
  const known = new Set(allEdges(shape, parallel).map(formatEdgeId));
  for (const key of given.keys()) {
    if (!known.has(key)) throw new UserError(`edge "${key}" is not an edge of a ${shape.layers}-layer, ${shape.heads}-head model${parallel ? ' with parallel attention and MLP' : ''}`);
  }
  // An edge circuit's nodes are those its edges touch; a node circuit's are its nodes.
  const inC = new Set<string>(['input', 'logits', ...c.nodes]);
  if (edgeCircuit) for (const e of given.values()) { inC.add(e.source); inC.add(targetNode(e.target)); }
  const node = (id: string): EapIgNode => {
    const score = c.scores?.[id];
    return score === undefined ? { in_graph: inC.has(id) } : { in_graph: inC.has(id), score };
  };
  const nodes: Record<string, EapIgNode> = {};
  for (const id of ['input', ...allComponentNodes(shape), 'logits']) nodes[id] = node(id);
  const edges: EapIgGraph['edges'] = {};
  for (const e of allEdges(shape, parallel)) {
    const key = formatEdgeId(e);
    const g = given.get(key);
    const inGraph = edgeCircuit ? !!g : inC.has(e.source) && inC.has(targetNode(e.target));
    edges[key] = { score: g?.score ?? null, in_graph: inGraph };
  }
  return { cfg: { n_layers: shape.layers, n_heads: shape.heads, parallel_attn_mlp: parallel, d_model: shape.dModel }, nodes, edges };
}

export function fromEapIg(json: unknown, name: string): Circuit {
  const g = json as { cfg?: Partial<EapIgGraph['cfg']>; nodes?: Record<string, EapIgNode | boolean>; edges?: EapIgGraph['edges'] };
  if (!g || typeof g !== 'object' || !g.nodes || typeof g.nodes !== 'object' || Array.isArray(g.nodes) || !g.edges || typeof g.edges !== 'object') {
    throw new UserError(`${name}: not an EAP-IG graph (expected "nodes" and "edges" objects)`);
  }
  const cfg = g.cfg;
  const known = cfg && Number.isInteger(cfg.n_layers) && Number.isInteger(cfg.n_heads)
    ? new Set<string>(allEdges({ layers: cfg.n_layers!, heads: cfg.n_heads! }, !!cfg.parallel_attn_mlp).map(formatEdgeId)) : undefined;
  const inGraph = new Set<string>();
  const scores: Record<string, number> = {};
  for (const [id, v] of Object.entries(g.nodes)) {
    // EAP-IG writes {"in_graph", "score"?}; older CircuitLens exports wrote a bare boolean.
    const n = typeof v === 'boolean' ? { in_graph: v } : v;
    if (!n || typeof n !== 'object' || typeof n.in_graph !== 'boolean') throw new UserError(`${name}: node "${id}" has no boolean "in_graph"`);
    parseNodeId(id);
    if (n.in_graph && id !== 'input' && id !== 'logits') inGraph.add(id);
    if (typeof n.score === 'number' && id !== 'input' && id !== 'logits') scores[id] = n.score;
  }
  const edges: CircuitEdge[] = [];
  for (const [key, e] of Object.entries(g.edges)) {
    let p;
    try { p = parseEdgeId(key); } catch (err) { throw new UserError(`${name}: ${(err as Error).message}`); }
    if (known && !known.has(key)) throw new UserError(`${name}: edge "${key}" is not an edge of the graph its cfg describes (${cfg!.n_layers} layers × ${cfg!.n_heads} heads${cfg!.parallel_attn_mlp ? ', parallel attention and MLP' : ''})`);
    if (!e || typeof e.in_graph !== 'boolean') throw new UserError(`${name}: edge "${key}" has no boolean "in_graph"`);
    if (!e.in_graph) continue;
    edges.push({ source: p.source, target: edgeTarget(p), ...(typeof e.score === 'number' ? { score: e.score } : {}) });
    // A node an in-graph edge touches is in the graph, whatever its own flag says.
    for (const id of [p.source, p.target]) if (id !== 'input' && id !== 'logits') inGraph.add(id);
  }
  const nodes = sortNodes([...inGraph]) as NodeId[];
  const shape = cfg ? `${cfg.n_layers ?? '?'} layers × ${cfg.n_heads ?? '?'} heads${cfg.d_model ? `, d_model ${cfg.d_model}` : ''}${cfg.parallel_attn_mlp ? ', parallel attention and MLP' : ''}` : 'no cfg';
  return {
    schemaVersion: CIRCUIT_SCHEMA_VERSION, name: name.replace(/\.json$/, ''), granularity: edges.length ? 'edge' : 'node', nodes, edges,
    ...(Object.keys(scores).length ? { scores } : {}),
    notes: `Imported from EAP-IG JSON (${shape}).`,
  };
}

/** Input first, then by layer, heads before the MLP, heads by index. */
function sortNodes(ids: string[]): string[] {
  const key = (id: string) => { const n = parseNodeId(id); return n.kind === 'input' ? -1 : n.kind === 'logits' ? Infinity : n.kind === 'head' ? n.layer * 1e6 + n.head : n.layer * 1e6 + 999_999; };
  return ids.sort((a, b) => key(a) - key(b));
}
