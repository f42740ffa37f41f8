// The EAP graph: edge instrumentation at zero (core/onnx/edges.ts) with the backward graph, and each mask's
// gradient contracted from the gradients of the destinations' copies of the residual stream.
import { addGradients } from './autodiff';
import { Builder, freshNames } from './builder';
import type { ModelStructure } from './detect';
import { EDGE, type EdgeLayout } from './edge-layout';
import { addEdgeInputs } from './edges';
import { floatValueInfo, intAttr, intsAttr, type OnnxModel } from './model';

/** The output carrying a mask's gradient in a graph from addEdgeGradientsAtZero. */
export const zeroMaskGradient = (mask: string) => `${mask}.grad_at_zero`;

/**
 * The EAP graph: `model` (instrumented) with the edge inputs at zero (addEdgeInputs `atZero`), the gradients of
 * L = Σ seed ⊙ `y` with respect to every destination's copy of the stream, and each mask's gradient as an output
 * zeroMaskGradient(mask) [B, rows, cols] (`layout`'s mask order): the copies' gradients contracted with the
 * upstream pieces over positions and features.
 *
 * The contraction is batched MatMuls of a layer's copies' gradients ([B, 3H + 1, T·D]: q, k, v rows, the MLP's)
 * by blocks of pieces (a few layers' worth each, concatenated once): a block per product keeps the products
 * large (one per piece re-reads the gradients for every piece, a few columns at a time), and a block is used
 * only by layers it (partly) precedes, so at most a block's width of unneeded columns is computed per layer.
 */
export function addEdgeGradientsAtZero(model: OnnxModel, s: ModelStructure, heads: number, what: string, y: string, layout: EdgeLayout,
  opts: { sliceHeads?: boolean; positive?: string[]; blockLayers?: number }): { outputs: string[]; grads: string[] } {
  const { outputs, zero } = addEdgeInputs(model, s, heads, what, { sliceHeads: opts.sliceHeads, atZero: true });
  const parallel = s.features.block === 'parallel';
  const z = zero!;
  const wrt = [...z.layers.flatMap((x) => [...x.qkv, x.mlp]), z.logits];
  const { grads } = addGradients(model, y, wrt, { positive: opts.positive });
  const graph = model.graph!;
  const b = new Builder(freshNames('circuitlens.edges.z', 'circuitlens/edges'));
  const flat = (t: string, rows: number) => b.op('Reshape', [t, b.i64([0, rows, -1])]); // [B, rows, T·D]
  // Blocks of pieces: the input, then `per` layers' heads and MLPs each (about four blocks in all by default).
  const L = z.layers.length;
  const per = opts.blockLayers ?? Math.ceil(L / 4);
  if (!Number.isInteger(per) || per < 1) throw new Error(`addEdgeGradientsAtZero: blockLayers must be a positive whole number (got ${per})`);
  const blocks: { t: string; start: number; end: number }[] = [];
  let col = 0;
  let p = 0;
  for (let j = 0; j < L; j += per) {
    const take = (j === 0 ? 1 : 0) + 2 * Math.min(per, L - j);
    const ps = z.pieces.slice(p, p + take);
    const rows = ps.reduce((a, x) => a + x.rows, 0);
    const cat = ps.length === 1 ? ps[0]!.t : b.op('Concat', ps.map((x) => x.t), [intAttr('axis', 1)]);
    blocks.push({ t: b.op('Transpose', [flat(cat, rows)], [intsAttr('perm', [0, 2, 1])]), start: col, end: col + rows }); // [B, T·D, rows]
    p += take;
    col += rows;
  }
  // The pieces are the input, then each layer's heads and MLP: all of them in blocks, one column per upstream node.
  const N = 1 + L * (heads + 1);
  if (p !== z.pieces.length || col !== N) throw new Error(`addEdgeGradientsAtZero: ${z.pieces.length} upstream pieces with ${col} columns in blocks, expected ${1 + 2 * L} with ${N}`);
  /** [B, rows, cols] = gradient rows · pieces [0, cols), from the blocks that start before cols. */
  const contract = (g: string, cols: number): string => {
    const parts = blocks.filter((k) => k.start < cols).map((k) => b.op('MatMul', [g, k.t]));
    const all = parts.length === 1 ? parts[0]! : b.op('Concat', parts, [intAttr('axis', 2)]);
    return b.op('Slice', [all, b.i64([0]), b.i64([cols]), b.i64([2])]);
  };
  const out = new Map<string, string>();
  const emit = (mask: string, t: string) => {
    b.node('Identity', [t], [zeroMaskGradient(mask)], `circuitlens/edges/${zeroMaskGradient(mask)}`);
    out.set(mask, zeroMaskGradient(mask));
  };
  z.layers.forEach((x, l) => {
    const n = 1 + l * (heads + 1);
    const g = b.op('Concat', [...x.qkv.map((t) => flat(grads[t]!, heads)), flat(grads[x.mlp]!, 1)], [intAttr('axis', 1)]); // [B, 3H + 1, T·D]
    const r = contract(g, n + heads);
    emit(EDGE.maskQkv(l), b.op('Slice', [r, b.i64([0, 0]), b.i64([3 * heads, n]), b.i64([1, 2])]));
    emit(EDGE.maskMlp(l), b.op('Slice', [r, b.i64([3 * heads, 0]), b.i64([3 * heads + 1, parallel ? n : n + heads]), b.i64([1, 2])]));
  });
  emit(EDGE.maskLogits, contract(flat(grads[z.logits]!, 1), N));
  b.appendTo(graph);
  const names = layout.masks.map((m) => {
    const name = out.get(m.name);
    if (name === undefined) throw new Error(`addEdgeGradientsAtZero: no gradient for mask ${m.name} (the layout and the model's structure disagree)`);
    return name;
  });
  for (const o of names) graph.output.push(floatValueInfo(o, 3));
  return { outputs, grads: names };
}
