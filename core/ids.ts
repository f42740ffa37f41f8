import { UserError } from './errors';

/** A node of the computational graph, in EAP-IG / MIB notation (DESIGN §3). */
export type NodeId = 'input' | 'logits' | `a${number}.h${number}` | `m${number}`;

export type ParsedNode =
  | { kind: 'input' }
  | { kind: 'logits' }
  | { kind: 'head'; layer: number; head: number }
  | { kind: 'mlp'; layer: number };

/** The input of an attention head an edge feeds: its queries, keys or values. */
export type QkvInput = 'q' | 'k' | 'v';
export const QKV_INPUTS: readonly QkvInput[] = ['q', 'k', 'v'];

/** One input of one head as the destination of an edge: `a0.h1<q>`. */
export type HeadInputId = `a${number}.h${number}<${QkvInput}>`;

/** What an edge flows into: an MLP or the logits (the residual stream), or one input of a head. */
export type EdgeTarget = NodeId | HeadInputId;

/** An edge, `SRC->DST` (DESIGN §3): `a0.h1->a1.h3<k>`, `a1.h3->m1`, `m1->logits`. */
export type EdgeId = `${string}->${string}`;

/** An edge by its ends; a head as target carries its input (`a1.h3<k>`). */
export interface Edge { source: NodeId; target: EdgeTarget }

/** An edge id taken apart: the target is the bare node, `input` the head input it feeds. */
export interface ParsedEdge { source: NodeId; target: NodeId; input?: QkvInput }

const HEAD = /^a(\d+)\.h(\d+)$/;
const MLP = /^m(\d+)$/;
const HEAD_INPUT = /<([qkv])>$/;
const NODE_HELP = 'expected input, logits, a<L>.h<H> or m<L>, e.g. a1.h2 or m0';
const EDGE_HELP = 'e.g. a0.h1->a1.h3<k>, a1.h3->m1 or m1->logits';

/** The node an id names, or undefined when it names none (no surrounding space allowed). */
export function tryParseNodeId(s: string): ParsedNode | undefined {
  if (s === 'input') return { kind: 'input' };
  if (s === 'logits') return { kind: 'logits' };
  let m = HEAD.exec(s);
  if (m) return { kind: 'head', layer: Number(m[1]), head: Number(m[2]) };
  m = MLP.exec(s);
  if (m) return { kind: 'mlp', layer: Number(m[1]) };
  return undefined;
}

export function parseNodeId(s: string): ParsedNode {
  const n = tryParseNodeId(s.trim());
  if (!n) throw new UserError(`unknown node id "${s}" (${NODE_HELP})`);
  return n;
}

export function headId(layer: number, head: number): `a${number}.h${number}` {
  return `a${layer}.h${head}`;
}

export function mlpId(layer: number): `m${number}` {
  return `m${layer}`;
}

export function headInputId(layer: number, head: number, input: QkvInput): HeadInputId {
  return `${headId(layer, head)}<${input}>`;
}

/** Splits an edge's target into its node and, for a head, the input it feeds (`a1.h3<k>` → a1.h3, k); no checks. */
export function splitEdgeTarget(target: string): { node: string; input?: QkvInput } {
  const m = HEAD_INPUT.exec(target);
  return m ? { node: target.slice(0, m.index), input: m[1] as QkvInput } : { node: target };
}

/** The node an edge flows into, without a head's `<q>`/`<k>`/`<v>`. */
export function targetNode(target: string): string {
  return target.replace(HEAD_INPUT, '');
}

/** A parsed edge's target as edges name it: the node, with a head's input (`a1.h3<k>`). */
export function edgeTarget(e: ParsedEdge): EdgeTarget {
  return e.input ? `${e.target as `a${number}.h${number}`}<${e.input}>` : e.target;
}

/**
 * `SRC->DST`, the target as edges name it (`a1.h3<k>`; from a parsed edge: `edgeTarget`). Takes only the two ends:
 * the engine's edge slots carry an `input` of their own (the mask they sit in).
 */
export function formatEdgeId(e: { source: string; target: string }): EdgeId {
  return `${e.source}->${e.target}`;
}

/**
 * Order in the residual stream: a node can feed only nodes of a higher rank (heads of one layer do not feed each
 * other; a layer's heads come before its MLP).
 */
export function streamRank(id: string): number {
  const n = parseNodeId(id);
  return n.kind === 'input' ? -1 : n.kind === 'logits' ? Infinity : n.kind === 'head' ? 2 * n.layer : 2 * n.layer + 1;
}

/**
 * Parses an edge id (DESIGN §3), checking what holds in every model: both ends are nodes, the edge follows the
 * residual stream, and a head as destination (and only a head) names the input it feeds. Whether the model has
 * the edge (its size, parallel attention and MLP) is for `allEdges`.
 */
export function parseEdgeId(s: string): ParsedEdge {
  const at = s.indexOf('->');
  if (at <= 0 || at + 2 >= s.length) throw new UserError(`edge "${s}" is not of the form SRC->DST (${EDGE_HELP})`);
  const src = s.slice(0, at);
  const { node: dst, input } = splitEdgeTarget(s.slice(at + 2));
  const source = tryParseNodeId(src);
  if (!source) throw new UserError(`edge "${s}": unknown source node id "${src}" (${NODE_HELP})`);
  const target = tryParseNodeId(dst);
  if (!target) throw new UserError(`edge "${s}": unknown target node id "${dst}" (${NODE_HELP}, and a head as target names its input: a1.h2<q>, <k> or <v>)`);
  if (input && target.kind !== 'head') throw new UserError(`edge "${s}": only attention heads have q, k, v inputs`);
  if (!input && target.kind === 'head') throw new UserError(`edge "${s}": a head as target names the input it feeds: ${dst}<q>, ${dst}<k> or ${dst}<v>`);
  if (streamRank(src) >= streamRank(dst)) throw new UserError(`edge "${s}" does not follow the residual stream (input → heads → MLP of each layer → logits)`);
  return { source: src as NodeId, target: dst as NodeId, ...(input ? { input } : {}) };
}

/** Parses `a1.h2,m0` into node ids, checking them against the model's shape. */
export function parseNodeList(list: string, shape?: { layers: number; heads: number }): NodeId[] {
  const ids = list.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (ids.length === 0) throw new UserError('empty node list (expected ids like a1.h2,m0)');
  return ids.map((s) => {
    const n = parseNodeId(s);
    if (shape) checkNodeInModel(s, n, shape);
    return s.trim() as NodeId;
  });
}

export function checkNodeInModel(id: string, n: ParsedNode, shape: { layers: number; heads: number }): void {
  if (n.kind === 'head' && (n.layer >= shape.layers || n.head >= shape.heads)) {
    throw new UserError(`node "${id}" is not in this model: it has layers 0..${shape.layers - 1} and heads 0..${shape.heads - 1}`);
  }
  if (n.kind === 'mlp' && n.layer >= shape.layers) {
    throw new UserError(`node "${id}" is not in this model: it has MLPs m0..m${shape.layers - 1}`);
  }
}

/** Every ablatable node of a model, in layer order (heads before the MLP of the same layer). */
export function allComponentNodes(shape: { layers: number; heads: number }): NodeId[] {
  const out: NodeId[] = [];
  for (let l = 0; l < shape.layers; l++) {
    for (let h = 0; h < shape.heads; h++) out.push(headId(l, h));
    out.push(mlpId(l));
  }
  return out;
}

/**
 * Every edge of the model's computational graph, in EAP-IG order (the order of the engine's edge masks and of
 * EAP-IG's own graph): for each layer, each head's q, k, v inputs from every earlier node, then the MLP's, then the
 * logits'. With parallel attention and MLP (GPT-NeoX/Pythia, GPT-J, Phi) a layer's MLP reads the same stream as its
 * heads, so there is no edge from a head to the MLP of its own layer.
 */
export function allEdges(shape: { layers: number; heads: number }, parallel = false): Edge[] {
  const out: Edge[] = [];
  const upstream: NodeId[] = ['input'];
  for (let l = 0; l < shape.layers; l++) {
    for (let h = 0; h < shape.heads; h++) for (const u of upstream) for (const q of QKV_INPUTS) out.push({ source: u, target: headInputId(l, h, q) });
    const attn = Array.from({ length: shape.heads }, (_, h) => headId(l, h));
    for (const u of parallel ? upstream : [...upstream, ...attn]) out.push({ source: u, target: mlpId(l) });
    upstream.push(...attn, mlpId(l));
  }
  for (const u of upstream) out.push({ source: u, target: 'logits' });
  return out;
}
