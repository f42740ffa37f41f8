import { UserError } from '../errors';
import { checkNodeInModel, headId, mlpId, parseNodeId, type NodeId } from '../ids';
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

/**
 * Every edge of the model's computational graph, in EAP-IG order: heads take q, k, v inputs separately. With
 * parallel attention and MLP (GPT-NeoX/Pythia, GPT-J, Phi) a layer's MLP reads the same stream as its heads, so
 * there is no edge from a head to the MLP of its own layer.
 */
export function allEdges(layers: number, heads: number, parallel = false): { source: string; target: string }[] {
  const out: { source: string; target: string }[] = [];
  const upstream: string[] = ['input'];
  for (let l = 0; l < layers; l++) {
    for (let h = 0; h < heads; h++) for (const u of upstream) for (const q of ['q', 'k', 'v']) out.push({ source: u, target: `${headId(l, h)}<${q}>` });
    const attn = Array.from({ length: heads }, (_, h) => headId(l, h) as string);
    for (const u of parallel ? upstream : [...upstream, ...attn]) out.push({ source: u, target: mlpId(l) });
    upstream.push(...attn, mlpId(l));
  }
  for (const u of upstream) out.push({ source: u, target: 'logits' });
  return out;
}

export function toEapIg(c: Circuit, shape: EapIgShape): EapIgGraph {
  const parallel = !!shape.parallel;
  const edgeCircuit = c.granularity === 'edge';
  const given = new Map((c.edges ?? []).map((e) => [`${e.source}->${e.target}`, e]));
  const known = new Set(allEdges(shape.layers, shape.heads, parallel).map((e) => `${e.source}->${e.target}`));
  for (const key of given.keys()) {
    if (!known.has(key)) throw new UserError(`edge "${key}" is not an edge of a ${shape.layers}-layer, ${shape.heads}-head model${parallel ? ' with parallel attention and MLP' : ''}`);
  }
  // An edge circuit's nodes are those its edges touch; a node circuit's are its nodes.
  const inC = new Set<string>(['input', 'logits', ...c.nodes]);
  if (edgeCircuit) for (const e of given.values()) { inC.add(e.source); inC.add(e.target.replace(/<[qkv]>$/, '')); }
  const node = (id: string): EapIgNode => {
    const score = c.scores?.[id];
    return score === undefined ? { in_graph: inC.has(id) } : { in_graph: inC.has(id), score };
  };
  const nodes: Record<string, EapIgNode> = { input: node('input') };
  for (let l = 0; l < shape.layers; l++) {
    for (let h = 0; h < shape.heads; h++) nodes[headId(l, h)] = node(headId(l, h));
    nodes[mlpId(l)] = node(mlpId(l));
  }
  nodes['logits'] = node('logits');
  const edges: EapIgGraph['edges'] = {};
  for (const e of allEdges(shape.layers, shape.heads, parallel)) {
    const key = `${e.source}->${e.target}`;
    const g = given.get(key);
    const inGraph = edgeCircuit ? !!g : inC.has(e.source) && inC.has(e.target.replace(/<[qkv]>$/, ''));
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
    ? new Set(allEdges(cfg.n_layers!, cfg.n_heads!, !!cfg.parallel_attn_mlp).map((e) => `${e.source}->${e.target}`)) : undefined;
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
    const m = /^(.+)->(.+)$/.exec(key);
    if (!m) throw new UserError(`${name}: edge "${key}" is not of the form SRC->DST`);
    if (known && !known.has(key)) throw new UserError(`${name}: edge "${key}" is not an edge of the graph its cfg describes (${cfg!.n_layers} layers × ${cfg!.n_heads} heads${cfg!.parallel_attn_mlp ? ', parallel attention and MLP' : ''})`);
    if (!e || typeof e.in_graph !== 'boolean') throw new UserError(`${name}: edge "${key}" has no boolean "in_graph"`);
    if (!e.in_graph) continue;
    edges.push({ source: m[1]!, target: m[2]!, ...(typeof e.score === 'number' ? { score: e.score } : {}) });
    // A node an in-graph edge touches is in the graph, whatever its own flag says.
    for (const id of [m[1]!, m[2]!.replace(/<[qkv]>$/, '')]) {
      parseNodeId(id);
      if (id !== 'input' && id !== 'logits') inGraph.add(id);
    }
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

/**
 * Neuronpedia attribution-graph JSON: the file circuit-tracer's `create_graph_files` writes and Neuronpedia's graph
 * viewer uploads. Layout as read from three public sources:
 * - Neuronpedia's upload schema (hijohnnylin/neuronpedia, apps/webapp/app/api/graph/graph-schema.json): required
 *   `metadata` {slug, scan, prompt_tokens, prompt}, `qParams`, `nodes` [{node_id, feature, layer, ctx_idx,
 *   feature_type, jsNodeId, clerp, influence?, activation?}], `links` [{source, target, weight}]; other keys allowed.
 * - circuit-tracer's writer (decoderesearch/circuit-tracer, circuit_tracer/frontend/graph_models.py and
 *   utils/create_graph_files.py): feature nodes `{layer}_{feature}_{pos}` of type "cross layer transcoder", error nodes
 *   "mlp reconstruction error", token nodes `E_{token}_{pos}` "embedding", logit nodes "logit" with
 *   clerp `Output "tok" (p=0.233)`; links from source to target node_id.
 * - the viewer (apps/webapp/app/[modelId]/graph/utils.ts): "lorsa" nodes are attention features (drawn as triangles),
 *   nodes sit in rows by `+layer` ("E" = embeddings), a logit's clerp must contain "(p=…)", and the viewer rewrites
 *   the clerp of embedding and error nodes.
 *
 * Our circuits are component-level and position-agnostic, so the export is one node per component, honestly typed:
 * - `input` → feature_type "embedding", layer "E"; `logits` → "logit" (token_prob 1, clerp `Output "logits" (p=1.000)`:
 *   one node stands for the suite's metric, p is a placeholder the viewer needs, not a probability);
 * - head `a{L}.h{H}` → "lorsa" (the viewer's attention unit) in row 2L+1, feature H;
 *   MLP `m{L}` → "cross layer transcoder" (the viewer's MLP unit) in row 2L+2, feature 0. Heads of a block sit below
 *   its MLP, as in the residual stream; logits in row 2·layers+1. The clerp says what the node really is.
 * - node_id and jsNodeId are our node ids (`a1.h2`), so they read well in pinnedIds and come back exactly.
 * - ctx_idx is the last prompt position for every node (metrics are read there, DESIGN §4; ablation acts at every
 *   position). Without a prompt, prompt_tokens is the one pseudo-token `<all positions>`.
 * - links: a circuit with edges gets one link per (source, target) component pair; `circuitlens_edges` lists the
 *   EAP-IG edges folded into it (`a0.h1->a1.h2<k>`: score or null) and weight is the sum of their scores (1 when
 *   none is scored). A node circuit gets a link of weight 1 between every two of its nodes that the residual stream
 *   connects (input → heads → MLPs → logits, earlier rows to later rows): adjacency, not an attribution.
 * - qParams.pinnedIds: every component node (the viewer's subgraph shows the circuit); `metadata.circuitlens`
 *   keeps what has no place in the schema (name, node list, scores, metrics, ablation, granularity, model shape).
 *
 * Import takes such files back exactly, and any graph whose nodes are components (node_id `a{L}.h{H}` / `m{L}`,
 * embeddings → input, logits → logits). It refuses feature-level graphs (circuit-tracer's transcoder features): a
 * feature is one direction of one layer's MLP output (or, for cross-layer transcoders, of several layers') at one
 * token, and its edges pass through attention patterns held frozen, so no set of heads and MLPs is the same
 * circuit; mapping features to their MLPs would keep no attention head and claim a circuit that was never found.
 */
export interface NeuronpediaNode {
  node_id: string;
  feature: number;
  layer: string;
  ctx_idx: number;
  feature_type: 'embedding' | 'logit' | 'lorsa' | 'cross layer transcoder';
  token_prob: number;
  is_target_logit: boolean;
  run_idx: number;
  reverse_ctx_idx: number;
  jsNodeId: string;
  clerp: string;
  influence: number | null;
  activation: number | null;
}

export interface NeuronpediaLink { source: string; target: string; weight: number; circuitlens_edges?: Record<string, number | null> }

/** What a Neuronpedia graph cannot hold, kept under `metadata.circuitlens` so import is exact. */
export interface NeuronpediaCircuitLensBlock {
  schemaVersion: number;
  name: string;
  granularity: 'node' | 'edge';
  layers: number;
  heads: number;
  nodes: string[];
  ablation?: string;
  scores?: Record<string, number>;
  metrics?: Record<string, unknown>;
  notes?: string;
}

export interface NeuronpediaGraph {
  metadata: {
    slug: string;
    scan: string;
    prompt_tokens: string[];
    prompt: string;
    info: { description: string; generator: { name: string; version?: string; url: string }; create_time_ms?: number };
    circuitlens: NeuronpediaCircuitLensBlock;
  };
  qParams: { pinnedIds: string[]; supernodes: string[][]; linkType: string; clickedId: string; sg_pos: string };
  nodes: NeuronpediaNode[];
  links: NeuronpediaLink[];
}

export interface NeuronpediaExportOptions {
  /** Neuronpedia's model id (`metadata.scan`); defaults to "circuitlens". */
  scan?: string;
  /** `metadata.slug`; defaults to the circuit's name, lower-case with dashes. */
  slug?: string;
  /** A representative prompt, tokenized; nodes are placed at its last position. */
  promptTokens?: string[];
  prompt?: string;
  generatorVersion?: string;
}

const ALL_POSITIONS = '<all positions>';
const QKV = /<([qkv])>$/;

/** Order in the residual stream: a node can feed only nodes of a higher rank (heads of one layer do not feed each other). */
function streamRank(id: string): number {
  const n = parseNodeId(id);
  return n.kind === 'input' ? -1 : n.kind === 'logits' ? Infinity : n.kind === 'head' ? 2 * n.layer : 2 * n.layer + 1;
}

/** Row of a node in the viewer: input 0 ("E"), heads of block L 2L+1, its MLP 2L+2, logits 2·layers+1. */
function viewerRow(id: string, layers: number): number {
  const n = parseNodeId(id);
  return n.kind === 'input' ? 0 : n.kind === 'logits' ? 2 * layers + 1 : n.kind === 'head' ? 2 * n.layer + 1 : 2 * n.layer + 2;
}

function slugOf(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 60).replace(/-+$/, '') || 'circuit';
}

export function toNeuronpedia(c: Circuit, shape: { layers: number; heads: number }, opts: NeuronpediaExportOptions = {}): NeuronpediaGraph {
  const tokens = opts.promptTokens?.length ? opts.promptTokens : [ALL_POSITIONS];
  const ctx = tokens.length - 1;
  const edges = c.edges ?? [];
  // Components: the circuit's nodes in order, then those only its edges touch.
  const comps: string[] = [];
  const addComponent = (id: string) => {
    const n = parseNodeId(id);
    checkNodeInModel(id, n, shape);
    if (n.kind !== 'input' && n.kind !== 'logits' && !comps.includes(id)) comps.push(id);
    return n;
  };
  for (const id of c.nodes) addComponent(id);
  for (const e of edges) {
    const target = e.target.replace(QKV, '');
    addComponent(e.source);
    const t = addComponent(target);
    if (streamRank(e.source) >= streamRank(target)) throw new UserError(`edge "${e.source}->${e.target}" does not follow the residual stream (input → heads → MLP of each layer → logits)`);
    if (QKV.test(e.target) && t.kind !== 'head') throw new UserError(`edge "${e.source}->${e.target}": only attention heads have q, k, v inputs`);
  }

  const score = (id: string) => c.scores?.[id];
  const node = (id: string): NeuronpediaNode => {
    const n = parseNodeId(id);
    const s = score(id);
    const scored = s !== undefined ? `, score ${Number(s.toPrecision(4))}` : '';
    const [feature, feature_type, clerp]: [number, NeuronpediaNode['feature_type'], string] =
      n.kind === 'input' ? [ctx, 'embedding', 'input: token and position embeddings']
      : n.kind === 'logits' ? [0, 'logit', 'Output "logits" (p=1.000)']
      : n.kind === 'head' ? [n.head, 'lorsa', `${id}: attention head ${n.head} of layer ${n.layer} (whole head, all positions${scored})`]
      : [0, 'cross layer transcoder', `${id}: MLP of layer ${n.layer} (whole MLP, all positions${scored})`];
    const layer = n.kind === 'input' ? 'E' : String(viewerRow(id, shape.layers));
    const logit = n.kind === 'logits';
    return {
      node_id: id, feature, layer, ctx_idx: ctx, feature_type, token_prob: logit ? 1 : 0, is_target_logit: logit, run_idx: 0, reverse_ctx_idx: 0,
      jsNodeId: id, clerp, influence: null, activation: null,
    };
  };
  const nodes = ['input', ...comps, 'logits'].map(node);

  const links: NeuronpediaLink[] = [];
  if (edges.length) {
    const byPair = new Map<string, NeuronpediaLink & { circuitlens_edges: Record<string, number | null> }>();
    for (const e of edges) {
      const target = e.target.replace(QKV, '');
      const key = `${e.source} ${target}`;
      let l = byPair.get(key);
      if (!l) { l = { source: e.source, target, weight: 0, circuitlens_edges: {} }; byPair.set(key, l); links.push(l); }
      l.circuitlens_edges[`${e.source}->${e.target}`] = e.score ?? null;
    }
    for (const l of byPair.values()) {
      const scores = Object.values(l.circuitlens_edges).filter((x): x is number => x !== null);
      l.weight = scores.length ? scores.reduce((a, b) => a + b, 0) : 1;
    }
  } else {
    const ids = nodes.map((n) => n.node_id);
    for (const target of ids) for (const source of ids) {
      if (streamRank(source) < streamRank(target)) links.push({ source, target, weight: 1 });
    }
  }

  const granularity = c.granularity ?? (edges.length ? 'edge' : 'node');
  const created = c.created ? Date.parse(c.created) : NaN;
  const block: NeuronpediaCircuitLensBlock = {
    schemaVersion: CIRCUIT_SCHEMA_VERSION, name: c.name, granularity, layers: shape.layers, heads: shape.heads, nodes: [...c.nodes],
    ...(c.ablation ? { ablation: c.ablation } : {}), ...(c.scores ? { scores: c.scores } : {}),
    ...(c.metrics ? { metrics: c.metrics } : {}), ...(c.notes ? { notes: c.notes } : {}),
  };
  return {
    metadata: {
      slug: opts.slug ?? slugOf(c.name),
      scan: opts.scan ?? 'circuitlens',
      prompt_tokens: tokens,
      prompt: opts.prompt ?? tokens.join(''),
      info: {
        description: `CircuitLens ${granularity}-level circuit "${c.name}": one node per component over all positions (attention heads as "lorsa" in row 2L+1, MLPs as "cross layer transcoder" in row 2L+2), not transcoder features. ` +
          (edges.length ? 'Link weights are sums of edge attribution scores (1 where unscored).' : 'Links join components the residual stream connects (weight 1), not attributions.'),
        generator: { name: 'CircuitLens', ...(opts.generatorVersion ? { version: opts.generatorVersion } : {}), url: 'https://github.com/circuitlens/circuitlens' },
        ...(Number.isFinite(created) ? { create_time_ms: created } : {}),
      },
      circuitlens: block,
    },
    qParams: { pinnedIds: [...comps], supernodes: [], linkType: 'both', clickedId: '', sg_pos: '' },
    nodes,
    links,
  };
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isFiniteNumber = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** Our node for a graph node: embeddings are `input`, logits `logits`, components are named by their node_id. */
function componentOf(n: Record<string, unknown>): NodeId | undefined {
  const id = n.node_id as string;
  if (n.feature_type === 'embedding' || id === 'input') return 'input';
  if (n.feature_type === 'logit' || id === 'logits') return 'logits';
  if (/^a\d+\.h\d+$/.test(id) || /^m\d+$/.test(id)) return id as NodeId;
  return undefined;
}

export function fromNeuronpedia(json: unknown, what: string): Circuit {
  if (!isObject(json) || !Array.isArray(json.nodes) || !Array.isArray(json.links)) {
    throw new UserError(`${what}: not a Neuronpedia attribution graph (expected an object with "metadata" and the arrays "nodes" and "links", as circuit-tracer's create_graph_files writes)`);
  }
  const meta = isObject(json.metadata) ? json.metadata : {};
  const block = meta.circuitlens === undefined ? undefined : readBlock(meta.circuitlens, what);

  const ours = new Map<string, NodeId>();
  const unmapped: Record<string, unknown>[] = [];
  const order: NodeId[] = [];
  json.nodes.forEach((n, i) => {
    if (!isObject(n)) throw new UserError(`${what}: nodes[${i}] is not an object`);
    if (typeof n.node_id !== 'string' || n.node_id === '') throw new UserError(`${what}: nodes[${i}] has no "node_id" string`);
    if (typeof n.feature_type !== 'string') throw new UserError(`${what}: node "${n.node_id}" (nodes[${i}]) has no "feature_type" string`);
    if (ours.has(n.node_id)) throw new UserError(`${what}: node id "${n.node_id}" appears twice (nodes[${i}])`);
    const id = componentOf(n);
    if (!id) { unmapped.push(n); return; }
    ours.set(n.node_id, id);
    if (id !== 'input' && id !== 'logits' && !order.includes(id)) order.push(id);
  });
  if (unmapped.length) throw featureLevelError(what, meta, json.nodes.length, unmapped);

  const edges: CircuitEdge[] = [];
  const seen = new Set<string>();
  const plain = new Map<string, { source: NodeId; target: NodeId; weight: number; at: number }>();
  let exact = false;
  json.links.forEach((l, i) => {
    if (!isObject(l)) throw new UserError(`${what}: links[${i}] is not an object`);
    if (typeof l.source !== 'string' || typeof l.target !== 'string') throw new UserError(`${what}: links[${i}] needs "source" and "target" node ids`);
    const s = ours.get(l.source), t = ours.get(l.target);
    if (!s) throw new UserError(`${what}: links[${i}] comes from "${l.source}", which is not one of the nodes`);
    if (!t) throw new UserError(`${what}: links[${i}] goes to "${l.target}", which is not one of the nodes`);
    if (!isFiniteNumber(l.weight)) throw new UserError(`${what}: links[${i}] (${l.source} → ${l.target}) has no finite number "weight"`);
    if (streamRank(s) >= streamRank(t)) throw new UserError(`${what}: links[${i}] (${l.source} → ${l.target}) does not follow the residual stream: ${s} cannot feed ${t}`);
    if (l.circuitlens_edges === undefined) {
      const key = `${s}->${t}`;
      const p = plain.get(key);
      // Several positions of one component fold into one edge; their attributions add.
      if (p) p.weight += l.weight; else plain.set(key, { source: s, target: t, weight: l.weight, at: i });
      return;
    }
    exact = true;
    if (!isObject(l.circuitlens_edges)) throw new UserError(`${what}: links[${i}].circuitlens_edges must be an object of edge id → score or null`);
    for (const [key, sc] of Object.entries(l.circuitlens_edges)) {
      const m = /^(.+)->(.+?)(<[qkv]>)?$/.exec(key);
      if (!m || m[1] !== s || m[2] !== t) throw new UserError(`${what}: links[${i}] (${s} → ${t}) lists edge "${key}", which does not join those nodes`);
      if (m[3] && parseNodeId(t).kind !== 'head') throw new UserError(`${what}: links[${i}] lists edge "${key}", but only attention heads have q, k, v inputs`);
      if (sc !== null && !isFiniteNumber(sc)) throw new UserError(`${what}: links[${i}] gives edge "${key}" the score ${JSON.stringify(sc)} (expected a number or null)`);
      if (seen.has(key)) continue;
      seen.add(key);
      edges.push({ source: s, target: `${t}${m[3] ?? ''}`, ...(sc !== null ? { score: sc } : {}) });
    }
  });
  const granularity = block?.granularity ?? (exact ? 'edge' : 'node');
  if (granularity === 'edge') {
    for (const p of plain.values()) {
      if (parseNodeId(p.target).kind === 'head') {
        throw new UserError(`${what}: links[${p.at}] goes into attention head ${p.target} without saying which input (q, k or v) it feeds; an edge-level circuit needs that ("circuitlens_edges"), or import it as a node circuit`);
      }
      const key = `${p.source}->${p.target}`;
      if (!seen.has(key)) { seen.add(key); edges.push({ source: p.source, target: p.target, score: p.weight }); }
    }
  }

  const slug = typeof meta.slug === 'string' && meta.slug ? meta.slug : undefined;
  const scan = typeof meta.scan === 'string' && meta.scan ? meta.scan : undefined;
  return {
    schemaVersion: CIRCUIT_SCHEMA_VERSION,
    name: block?.name ?? slug ?? what.split(/[\\/]/).pop()!.replace(/\.json$/, ''),
    granularity,
    ...(block?.ablation ? { ablation: block.ablation as Circuit['ablation'] } : {}),
    nodes: block?.nodes ? (block.nodes as NodeId[]) : order,
    edges,
    ...(block?.scores ? { scores: block.scores } : {}),
    ...(block?.metrics ? { metrics: block.metrics } : {}),
    notes: block?.notes ?? `Imported from Neuronpedia graph JSON${slug ? ` "${slug}"` : ''}${scan ? ` (scan ${scan})` : ''}.`,
  };
}

function readBlock(b: unknown, what: string): Partial<NeuronpediaCircuitLensBlock> {
  const bad = (msg: string) => new UserError(`${what}: metadata.circuitlens${msg.startsWith('.') ? '' : ' '}${msg}`);
  if (!isObject(b)) throw bad('must be an object');
  if (isFiniteNumber(b.schemaVersion) && b.schemaVersion > CIRCUIT_SCHEMA_VERSION) {
    throw bad(`was written by a newer CircuitLens (schemaVersion ${b.schemaVersion}); this version reads schemaVersion ${CIRCUIT_SCHEMA_VERSION}. Update CircuitLens to import it.`);
  }
  if (b.name !== undefined && typeof b.name !== 'string') throw bad('.name must be a string');
  if (b.granularity !== undefined && b.granularity !== 'node' && b.granularity !== 'edge') throw bad('.granularity must be "node" or "edge"');
  if (b.ablation !== undefined && !['zero', 'mean', 'resample'].includes(b.ablation as string)) throw bad('.ablation must be zero, mean or resample');
  if (b.nodes !== undefined) {
    if (!Array.isArray(b.nodes)) throw bad('.nodes must be an array of node ids');
    b.nodes.forEach((id, i) => {
      if (typeof id !== 'string') throw bad(`.nodes[${i}] is not a node id`);
      try { parseNodeId(id); } catch (e) { throw bad(`.nodes[${i}]: ${(e as Error).message}`); }
    });
  }
  if (b.scores !== undefined && (!isObject(b.scores) || !Object.values(b.scores).every(isFiniteNumber))) throw bad('.scores must map node ids to numbers');
  if (b.metrics !== undefined && !isObject(b.metrics)) throw bad('.metrics must be an object');
  if (b.notes !== undefined && typeof b.notes !== 'string') throw bad('.notes must be a string');
  return b as Partial<NeuronpediaCircuitLensBlock>;
}

function featureLevelError(what: string, meta: Record<string, unknown>, total: number, unmapped: Record<string, unknown>[]): UserError {
  const byType = new Map<string, number>();
  for (const n of unmapped) byType.set(n.feature_type as string, (byType.get(n.feature_type as string) ?? 0) + 1);
  const counts = [...byType].map(([t, k]) => `${k} "${t}"`).join(', ');
  const scan = typeof meta.scan === 'string' ? `, scan "${meta.scan}"` : '';
  const features = [...byType.keys()].some((t) => t === 'cross layer transcoder' || t === 'lorsa' || t.includes('error'));
  const first = `"${unmapped[0]!.node_id as string}"`;
  if (features) {
    return new UserError(`${what}: a feature-level attribution graph (${counts} of ${total} nodes${scan}; first ${first}). ` +
      'Its nodes are transcoder features and reconstruction errors at single token positions, and its links pass through frozen attention patterns, ' +
      'so no set of attention heads and MLPs is the same circuit: it cannot become a CircuitLens circuit. ' +
      'Import takes Neuronpedia graphs whose nodes are components (node_id a<L>.h<H> or m<L>), as `circuitlens export --format neuronpedia` writes them.');
  }
  return new UserError(`${what}: node ${first} (feature_type "${unmapped[0]!.feature_type as string}") is not a model component; ` +
    `CircuitLens reads node ids a<L>.h<H> and m<L>, "embedding" nodes as input and "logit" nodes as logits (${counts} of ${total} nodes are none of these)`);
}
