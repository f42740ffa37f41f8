// Softmax temperature per head: each layer's attention scores are divided by a per-(row, head) temperature input
// just before the Softmax that makes hook_pattern, so pattern = softmax(scores / τ) over the keys a query may see.
// The scores there are what the model computes (after the 1/√d_head scaling and the causal or padding mask): a
// masked score is −∞ or a large negative number (finfo.min, −1e4·(1−mask)), and dividing it by τ ∈ [0.5, 2]
// keeps it −∞ or hugely negative, so the masked keys keep weight 0 (finfo.min / 0.5 overflows to −∞, which the
// Softmax takes as 0 too; the diagonal is never masked, so no row is all −∞).
import { UserError } from '../errors';
import { Builder } from './builder';
import type { ModelStructure } from './detect';
import { GraphIndex, PASS_THROUGH } from './graph';
import { inferShapes } from './shapes';
import { floatValueInfo, int64Tensor, type OnnxModel, type OnnxNode } from './model';

/** The temperature input of layer l: [batch, heads] (or [1, 1], broadcast), τ > 0; 1 leaves the layer as it was. */
export const TEMPERATURE = (l: number) => `circuitlens.blocks.${l}.attn.temperature`;

/** How a layer's scores hold the heads: [B, H, Tq, Tk], or folded into the batch axis [B·H, Tq, Tk] (OPT's bmm). */
export type ScoresLayout = 'b_h_t_t' | 'bh_t_t';

/** The views a pattern may pass through between its Softmax and the hook (detect.ts streamAliases). */
const VIEWS = new Set([...PASS_THROUGH, 'Reshape']);

/**
 * Adds TEMPERATURE(l) for every layer and divides the Softmax input of layer l by it, per row and head:
 *   Softmax(x)  →  Softmax(x / Reshape(τ, [B, H, 1, 1] or [B·H, 1, 1]))
 * Rewrites `model` (a copy of the instrumented model: the engine runs it in a session of its own, so the
 * other sessions' graphs are not touched). Returns each layer's layout.
 */
export function addTemperatureInputs(model: OnnxModel, s: ModelStructure): ScoresLayout[] {
  const graph = model.graph!;
  const g = new GraphIndex(graph);
  let shapes: ReturnType<typeof inferShapes> | undefined;
  const rankOf = (t: string) => (shapes ??= inferShapes(graph)).dims.get(t)?.length;
  const b = new Builder();
  b.init(int64Tensor('circuitlens.temperature.b_h_1_1', [0, -1, 1, 1]));
  b.init(int64Tensor('circuitlens.temperature.bh_1_1', [-1, 1, 1]));
  const before = new Map<OnnxNode, OnnxNode[]>();
  const layouts = s.layers.map((L, l) => {
    const { softmax, viewed } = softmaxOf(g, L.pattern, l);
    const scores = softmax.input[0]!;
    // Without a Reshape between them the scores have the pattern's [B, H, T, T] layout.
    const rank = viewed ? rankOf(scores) : 4;
    if (rank !== 4 && rank !== 3) {
      throw new UserError(`layer ${l}: the attention scores before the Softmax have ${rank === undefined ? 'a rank shape inference cannot tell' : `rank ${rank}`}; softmax temperature needs [batch, heads, query, key] or [batch·heads, query, key]`);
    }
    const layout: ScoresLayout = rank === 4 ? 'b_h_t_t' : 'bh_t_t';
    const p = `circuitlens.blocks.${l}.attn`;
    graph.input.push(floatValueInfo(TEMPERATURE(l), 2));
    const shape = layout === 'b_h_t_t' ? 'circuitlens.temperature.b_h_1_1' : 'circuitlens.temperature.bh_1_1';
    const mark = b.nodes.length;
    b.node('Reshape', [TEMPERATURE(l), shape], [`${p}.temperature_r`], `${p}/temperature_reshape`);
    b.node('Div', [scores, `${p}.temperature_r`], [`${p}.scores_tempered`], `${p}/temperature_div`);
    before.set(softmax, b.nodes.slice(mark));
    softmax.input[0] = `${p}.scores_tempered`;
    return layout;
  });
  // Each layer's two nodes go right before its Softmax: after the scores' producer, in topological order.
  graph.node = graph.node.flatMap((n) => [...(before.get(n) ?? []), n]);
  graph.initializer.push(...b.inits);
  return layouts;
}

/** The Softmax whose output hook_pattern of layer l carries, and whether a Reshape lies between them. */
function softmaxOf(g: GraphIndex, pattern: string, l: number): { softmax: OnnxNode; viewed: boolean } {
  let t = pattern;
  let viewed = false;
  for (let hops = 0; hops < 8; hops++) {
    const p = g.producerOf(t);
    if (!p) break;
    if (p.opType === 'Softmax') return { softmax: p, viewed };
    if (!VIEWS.has(p.opType)) break;
    if (p.opType === 'Reshape') viewed = true;
    t = p.input[0]!;
  }
  throw new UserError(`layer ${l}: hook_pattern (${pattern}) is not the output of a Softmax or a view of one, so its temperature cannot be set`);
}
