// The edges of a model's computational graph (EAP-IG's order and ids) and where each edge's mask entry lives in
// the graph inputs that edge instrumentation (core/onnx/edges.ts) adds.

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
  /** Every edge, in EAP-IG order (core/formats/interop.ts allEdges). */
  edges: EdgeSlot[];
  /** Mask inputs with their per-row shape [rows, cols]. */
  masks: { name: string; rows: number; cols: number }[];
}

/** Index of an upstream node in the stacked outputs: input, then per layer its heads and its MLP. */
export function upstreamIndex(node: string, heads: number): number {
  if (node === 'input') return 0;
  const h = /^a(\d+)\.h(\d+)$/.exec(node);
  if (h) return 1 + Number(h[1]) * (heads + 1) + Number(h[2]);
  const m = /^m(\d+)$/.exec(node);
  if (m) return 1 + Number(m[1]) * (heads + 1) + heads;
  throw new Error(`not an upstream node: ${node}`);
}

/** `parallel`: attention and MLP read the block's input (GPT-NeoX, GPT-J, Phi): no edge from a head to its own layer's MLP. */
export function edgeLayout(layers: number, heads: number, parallel = false): EdgeLayout {
  const edges: EdgeSlot[] = [];
  const masks: EdgeLayout['masks'] = [];
  const up: string[] = ['input'];
  for (let l = 0; l < layers; l++) {
    masks.push({ name: EDGE.maskQkv(l), rows: 3 * heads, cols: up.length });
    for (let h = 0; h < heads; h++) {
      for (const u of up) {
        ['q', 'k', 'v'].forEach((x, i) => edges.push({ source: u, target: `a${l}.h${h}<${x}>`, input: EDGE.maskQkv(l), row: i * heads + h, col: upstreamIndex(u, heads) }));
      }
    }
    const attn = Array.from({ length: heads }, (_, h) => `a${l}.h${h}`);
    const mlpUp = parallel ? [...up] : [...up, ...attn];
    masks.push({ name: EDGE.maskMlp(l), rows: 1, cols: mlpUp.length });
    for (const u of mlpUp) edges.push({ source: u, target: `m${l}`, input: EDGE.maskMlp(l), row: 0, col: upstreamIndex(u, heads) });
    up.push(...attn, `m${l}`);
  }
  masks.push({ name: EDGE.maskLogits, rows: 1, cols: up.length });
  for (const u of up) edges.push({ source: u, target: 'logits', input: EDGE.maskLogits, row: 0, col: upstreamIndex(u, heads) });
  return { edges, masks };
}
