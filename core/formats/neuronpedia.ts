import { UserError } from '../errors';
import { checkNodeInModel, edgeTarget, formatEdgeId, parseEdgeId, parseNodeId, splitEdgeTarget, streamRank, tryParseNodeId, QKV_INPUTS, type NodeId, type ParsedEdge } from '../ids';
import { CIRCUIT_SCHEMA_VERSION, type Circuit, type CircuitEdge } from './circuit';

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
    const { node: target, input } = splitEdgeTarget(e.target);
    addComponent(e.source);
    const t = addComponent(target);
    if (streamRank(e.source) >= streamRank(target)) throw new UserError(`edge "${formatEdgeId(e)}" does not follow the residual stream (input → heads → MLP of each layer → logits)`);
    if (input && t.kind !== 'head') throw new UserError(`edge "${formatEdgeId(e)}": only attention heads have q, k, v inputs`);
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
      const target = splitEdgeTarget(e.target).node;
      const key = `${e.source} ${target}`;
      let l = byPair.get(key);
      if (!l) { l = { source: e.source, target, weight: 0, circuitlens_edges: {} }; byPair.set(key, l); links.push(l); }
      l.circuitlens_edges[formatEdgeId(e)] = e.score ?? null;
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
  const c = tryParseNodeId(id);
  if (c?.kind === 'head' || c?.kind === 'mlp') return id as NodeId;
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
      const key = formatEdgeId({ source: s, target: t });
      const p = plain.get(key);
      // Several positions of one component fold into one edge; their attributions add.
      if (p) p.weight += l.weight; else plain.set(key, { source: s, target: t, weight: l.weight, at: i });
      return;
    }
    exact = true;
    if (!isObject(l.circuitlens_edges)) throw new UserError(`${what}: links[${i}].circuitlens_edges must be an object of edge id → score or null`);
    for (const [key, sc] of Object.entries(l.circuitlens_edges)) {
      if (![t, ...QKV_INPUTS.map((q) => `${t}<${q}>`)].some((target) => key === formatEdgeId({ source: s, target }))) {
        throw new UserError(`${what}: links[${i}] (${s} → ${t}) lists edge "${key}", which does not join those nodes`);
      }
      let p: ParsedEdge;
      try { p = parseEdgeId(key); } catch (err) { throw new UserError(`${what}: links[${i}] lists ${(err as Error).message}`); }
      if (sc !== null && !isFiniteNumber(sc)) throw new UserError(`${what}: links[${i}] gives edge "${key}" the score ${JSON.stringify(sc)} (expected a number or null)`);
      if (seen.has(key)) continue;
      seen.add(key);
      edges.push({ source: s, target: edgeTarget(p), ...(sc !== null ? { score: sc } : {}) });
    }
  });
  const granularity = block?.granularity ?? (exact ? 'edge' : 'node');
  if (granularity === 'edge') {
    for (const p of plain.values()) {
      if (parseNodeId(p.target).kind === 'head') {
        throw new UserError(`${what}: links[${p.at}] goes into attention head ${p.target} without saying which input (q, k or v) it feeds; an edge-level circuit needs that ("circuitlens_edges"), or import it as a node circuit`);
      }
      const key = formatEdgeId(p);
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
