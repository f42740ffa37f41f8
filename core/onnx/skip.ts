// Layer skipping for ablation sweeps. Ablating a head or MLP of layer l leaves layers 0..l−1 as they were, so a
// row that ablates nothing below layer l can start at layer l from the clean residual stream, saved once per
// prompt. Each transformer block becomes an If node (onnxruntime runs only the branch taken) that runs the block
// when l ≤ its layer and passes the stream through otherwise; the weights stay shared in one session.
//
//   x_j    = start_layer == j ? start_resid : resid_pre_j
//   post_j = start_layer <= j ? block_j(x_j) : x_j
import { GraphIndex } from './graph';
import { Builder } from './builder';
import { AttrType, DataType, floatValueInfo, type Graph, type OnnxModel, type OnnxNode, type ValueInfo } from './model';
import type { ModelStructure } from './detect';

export const START = { layer: 'circuitlens.start_layer', resid: 'circuitlens.start_resid' };

/**
 * Rewrites `model` (already reduced to the outputs it needs) so every block runs only from `start_layer` on.
 * Returns false, leaving the model unchanged, when a block's values are used outside it (then nothing is skipped).
 */
export function addLayerSkipping(model: OnnxModel, s: ModelStructure): boolean {
  const graph = model.graph!;
  const g = new GraphIndex(graph);
  const outputs = new Set(graph.output.map((o) => o.name));
  const blocks: { j: number; nodes: number[] }[] = [];
  for (let j = 0; j < s.layers.length; j++) {
    const L = s.layers[j]!;
    const nodes = g.between(L.residPre, L.residPost);
    if (!nodes) return false;
    const inBlock = new Set(nodes);
    for (const i of nodes) {
      for (const o of g.node(i).output) {
        if (!o || o === L.residPost) continue;
        if (outputs.has(o) || (g.consumers.get(o) ?? []).some((c) => !inBlock.has(c))) return false;
      }
    }
    blocks.push({ j, nodes });
  }
  const removed = new Set(blocks.flatMap((b) => b.nodes));
  const insertAt = new Map(blocks.map((b) => [b.nodes[b.nodes.length - 1]!, b]));
  const scalar = (name: string, v: number) => ({ name, dims: [], dataType: DataType.INT64, rawData: new Uint8Array(new BigInt64Array([BigInt(v)]).buffer) });
  const out: OnnxNode[] = [];
  graph.node.forEach((n, i) => {
    if (!removed.has(i)) { out.push(n); return; }
    const block = insertAt.get(i);
    if (!block) return;
    const { j } = block;
    const L = s.layers[j]!;
    const p = `circuitlens.skip.${j}`;
    const b = new Builder();
    const jName = b.init(scalar(`${p}.j`, j));
    b.node('Equal', [START.layer, jName], [`${p}.is_start`], `${p}/is_start`);
    const x = b.node('Where', [`${p}.is_start`, START.resid, L.residPre], [`${p}.x`], `${p}/x`);
    b.node('LessOrEqual', [START.layer, jName], [`${p}.run`], `${p}/run`);
    // The block, renamed inside its branch (names are unique across a model and its subgraphs).
    const body = new Builder();
    const rename = body.copy(block.nodes.map((k) => g.node(k)), p, new Map([[L.residPre, x]]));
    const pass = new Builder();
    pass.node('Identity', [x], [`${p}.passed`], `${p}/pass`);
    const branch = (name: string, nodes: OnnxNode[], output: ValueInfo): Graph => ({ name, node: nodes, initializer: [], input: [], output: [output], valueInfo: [] });
    const run = branch(`${p}.run`, body.nodes, floatValueInfo(rename.get(L.residPost)!, 3));
    const skip = branch(`${p}.skip`, pass.nodes, floatValueInfo(`${p}.passed`, 3));
    b.node('If', [`${p}.run`], [L.residPost], `${p}/if`, [
      { name: 'then_branch', type: AttrType.GRAPH, g: run },
      { name: 'else_branch', type: AttrType.GRAPH, g: skip },
    ]);
    out.push(...b.nodes);
    graph.initializer.push(...b.inits);
  });
  graph.node = out;
  graph.input.push(
    { name: START.layer, type: { tensorType: { elemType: DataType.INT64, shape: { dim: [] } } } },
    floatValueInfo(START.resid, 3),
  );
  return true;
}
