// The edges of a model's computational graph (EAP-IG's order and ids) and where each edge's mask entry lives in
// the graph inputs that edge instrumentation (core/onnx/edges.ts) adds.
import { allEdges, parseNodeId, QKV_INPUTS, splitEdgeTarget } from '../ids';

/** Graph inputs and outputs added for edges. */
export const EDGE = {
  /** [B, 3H, n_l]: rows q of heads 0..H−1, then k, then v; columns the n_l = 1 + l·(H + 1) upstream nodes. */
  maskQkv: (l: number) => `circuitlens.edges.${l}.mask_qkv`,
  /** [B, 1, n_l + H]: the MLP's upstream nodes include its own layer's heads ([B, 1, n_l] in parallel blocks). */
  maskMlp: (l: number) => `circuitlens.edges.${l}.mask_mlp`,
  /** [B, 1, 1 + L·(H + 1)] */
  maskLogits: 'circuitlens.edges.mask_logits',
  corrInput: 'circuitlens.edges.corr_input',
  corrHeads: (l: number) => `circuitlens.edges.${l}.corr_heads`,
  corrMlp: (l: number) => `circuitlens.edges.${l}.corr_mlp`,
  /** Per-head outputs [B, T, H, D] (each head's share of hook_attn_out, without the output bias). */
  outHeads: (l: number) => `circuitlens.edges.${l}.head_out`,
};

/** Where one edge's mask entry lives. */
export interface EdgeSlot { source: string; target: string; input: string; row: number; col: number }

export interface EdgeLayout {
  /** Every edge, in EAP-IG order (core/ids.ts allEdges). */
  edges: EdgeSlot[];
  /** Mask inputs with their per-row shape [rows, cols]. */
  masks: { name: string; rows: number; cols: number }[];
}

/** Index of an upstream node in the stacked outputs: input, then per layer its heads and its MLP. */
export function upstreamIndex(node: string, heads: number): number {
  const n = parseNodeId(node);
  if (n.kind === 'input') return 0;
  if (n.kind === 'head') return 1 + n.layer * (heads + 1) + n.head;
  if (n.kind === 'mlp') return 1 + n.layer * (heads + 1) + heads;
  throw new Error(`not an upstream node: ${node}`);
}

/**
 * Where each of the model's edges (core/ids.ts allEdges, the one enumeration) sits in the mask inputs. `parallel`:
 * attention and MLP read the block's input (GPT-NeoX, GPT-J, Phi): no edge from a head to its own layer's MLP.
 */
export function edgeLayout(layers: number, heads: number, parallel = false): EdgeLayout {
  const upstream = (l: number) => 1 + l * (heads + 1);
  const masks: EdgeLayout['masks'] = [];
  for (let l = 0; l < layers; l++) {
    masks.push({ name: EDGE.maskQkv(l), rows: 3 * heads, cols: upstream(l) });
    masks.push({ name: EDGE.maskMlp(l), rows: 1, cols: upstream(l) + (parallel ? 0 : heads) });
  }
  masks.push({ name: EDGE.maskLogits, rows: 1, cols: upstream(layers) });
  const edges = allEdges({ layers, heads }, parallel).map((e): EdgeSlot => {
    const col = upstreamIndex(e.source, heads);
    const { node, input } = splitEdgeTarget(e.target);
    const t = parseNodeId(node);
    if (t.kind === 'head') return { ...e, input: EDGE.maskQkv(t.layer), row: QKV_INPUTS.indexOf(input!) * heads + t.head, col };
    if (t.kind === 'mlp') return { ...e, input: EDGE.maskMlp(t.layer), row: 0, col };
    return { ...e, input: EDGE.maskLogits, row: 0, col };
  });
  return { edges, masks };
}
