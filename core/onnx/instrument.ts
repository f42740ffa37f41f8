// Instrumentation: the hook points detected (core/onnx/detect.ts) become graph outputs, and every head's output and
// MLP's output gets ablation inputs; the last position's logits and the logit lens are outputs of their own.
import { hookName, type HookName } from '../hooks';
import { Builder } from './builder';
import type { ModelStructure } from './detect';
import { GraphIndex, perPosition, PER_POSITION_OPS } from './graph';
import { UPTO } from './shapes';
import { floatValueInfo, int64Tensor, intAttr, intsAttr, num, type Graph, type OnnxModel, type OnnxNode, type ValueInfo } from './model';

/** Names of the inputs and outputs the instrumenter adds. */
export const IN = {
  zMask: (l: number) => `circuitlens.blocks.${l}.attn.z_mask`,
  zAdd: (l: number) => `circuitlens.blocks.${l}.attn.z_add`,
  mlpMask: (l: number) => `circuitlens.blocks.${l}.mlp_mask`,
  mlpAdd: (l: number) => `circuitlens.blocks.${l}.mlp_add`,
};

/** Tensors of the instrumented graph that the rest of the model reads: per-head output [B, H, T, Dh] after patching, MLP output. */
export const PATCHED = {
  z: (l: number) => `circuitlens.blocks.${l}.z_patched`,
  mlp: (l: number) => `circuitlens.blocks.${l}.hook_mlp_out`,
};

/** Graph output with the logits at the last position, [batch, 1, vocab]. */
export const LAST_LOGITS = 'circuitlens.logits_last';

export interface InstrumentedModel {
  model: OnnxModel;
  /** Hook name → graph output that carries it. Several hooks may share one output (resid_post L = resid_pre L+1). */
  taps: Record<HookName, string>;
  /** Hook name → tensor in the original graph (what `info` prints). */
  hooks: Record<HookName, string>;
}

/**
 * Adds hook taps as graph outputs and ablation inputs:
 *   z'   = z ⊙ z_mask[b,h] + z_add[b,t,h,d]     (per head, in hook_z layout)
 *   mlp' = mlp ⊙ mlp_mask[b] + mlp_add[b,t,d]
 * Masks are 1 to keep and 0 to remove; the additive inputs carry mean or resampled values. Every dimension of
 * the new inputs is symbolic, so callers may feed broadcastable shapes ([1,1,1,1] zeros when nothing is patched).
 */
export function instrument(model: OnnxModel, s: ModelStructure): InstrumentedModel {
  const graph = model.graph!;
  const b = new Builder();
  const rewires = new Map<string, string>();
  const taps: Record<HookName, string> = {};
  const hooks: Record<HookName, string> = {};
  const outputs = new Map<string, number>();
  const addOutput = (tensor: string, rank: number) => { if (!outputs.has(tensor)) outputs.set(tensor, rank); };
  const tap = (hook: HookName, tensor: string, rank: number, original = tensor) => {
    taps[hook] = tensor;
    hooks[hook] = original;
    addOutput(tensor, rank);
  };

  b.init(int64Tensor('circuitlens.shape.b_h_1_1', [0, -1, 1, 1]));
  b.init(int64Tensor('circuitlens.shape.b_1_1', [-1, 1, 1]));
  // The ablation inputs' batch and position axes are fed as 1 (broadcast) or as input_ids' size: their dim_params
  // say so (core/onnx/shapes.ts), so the backward graph can prove which of its gradients were broadcast.
  const idsDims = graph.input.find((v) => v.name === s.inputIds)?.type?.tensorType?.shape?.dim;
  const upto = (axis: number): string | undefined => {
    const d = idsDims?.[axis];
    return d?.dimParam ? UPTO + d.dimParam : d?.dimValue !== undefined && num(d.dimValue) > 0 ? UPTO + num(d.dimValue) : undefined;
  };
  const ablationInput = (name: string, params: (string | undefined)[]): ValueInfo => {
    const v = floatValueInfo(name, params.length);
    v.type!.tensorType!.shape!.dim.forEach((d, i) => { if (params[i]) d.dimParam = params[i]; });
    return v;
  };

  tap('hook_embed', s.embed, 3);
  if (s.posEmbed) {
    // Positions may be [1,T,D] or [T,D]: broadcast to the embedding's [B,T,D].
    const shape = 'circuitlens.embed_shape';
    b.node('Shape', [s.embed], [shape], 'circuitlens/pos_shape');
    b.node('Expand', [s.posEmbed, shape], ['circuitlens.hook_pos_embed'], 'circuitlens/pos_expand');
    tap('hook_pos_embed', 'circuitlens.hook_pos_embed', 3, s.posEmbed);
  }
  s.layers.forEach((L, l) => {
    const p = `circuitlens.blocks.${l}`;
    graph.input.push(
      ablationInput(IN.zMask(l), [upto(0), undefined]), ablationInput(IN.zAdd(l), [upto(0), upto(1), undefined, undefined]),
      ablationInput(IN.mlpMask(l), [upto(0)]), ablationInput(IN.mlpAdd(l), [upto(0), upto(1), undefined]),
    );
    b.node('Reshape', [IN.zMask(l), 'circuitlens.shape.b_h_1_1'], [`${p}.z_mask4`], `${p}/z_mask_reshape`);
    b.node('Mul', [L.zBhtd, `${p}.z_mask4`], [`${p}.z_masked`], `${p}/z_mask_mul`);
    b.node('Transpose', [IN.zAdd(l)], [`${p}.z_add_bhtd`], `${p}/z_add_transpose`, [intsAttr('perm', [0, 2, 1, 3])]);
    b.node('Add', [`${p}.z_masked`, `${p}.z_add_bhtd`], [`${p}.z_patched`], `${p}/z_add`);
    b.node('Transpose', [`${p}.z_patched`], [`${p}.hook_z`], `${p}/z_tap`, [intsAttr('perm', [0, 2, 1, 3])]);
    b.node('Reshape', [IN.mlpMask(l), 'circuitlens.shape.b_1_1'], [`${p}.mlp_mask3`], `${p}/mlp_mask_reshape`);
    b.node('Mul', [L.mlpOut, `${p}.mlp_mask3`], [`${p}.mlp_masked`], `${p}/mlp_mask_mul`);
    b.node('Add', [`${p}.mlp_masked`, IN.mlpAdd(l)], [`${p}.hook_mlp_out`], `${p}/mlp_add`);
    rewires.set(L.zBhtd, `${p}.z_patched`);
    rewires.set(L.mlpOut, `${p}.hook_mlp_out`);
    tap(hookName('resid_pre', l), L.residPre, 3);
    tap(hookName('pattern', l), L.pattern, 4);
    tap(hookName('z', l), `${p}.hook_z`, 4, L.zBhtd);
    tap(hookName('attn_out', l), L.attnOut, 3);
    tap(hookName('mlp_out', l), `${p}.hook_mlp_out`, 3, L.mlpOut);
    tap(hookName('resid_post', l), L.residPost, 3);
  });
  tap('ln_final.hook_normalized', s.lnFinal, 3);
  tap('logits', s.logits, 3);
  // The last position's logits alone: what metrics read. When the final norm and unembedding work per position,
  // they run on the last position only (a clone of that path), so a session that fetches only these logits never
  // forms the [B, T, vocab] product; otherwise the full logits are gathered at the last position.
  b.init(int64Tensor('circuitlens.last_index', [-1]));
  if (!addLastPositionPath(graph, s, b)) b.node('Gather', [s.logits, 'circuitlens.last_index'], [LAST_LOGITS], 'circuitlens/last_logits', [intAttr('axis', 1)]);
  addOutput(LAST_LOGITS, 3);

  // Rewire every original consumer of a patched tensor to the patched value.
  for (const n of graph.node) n.input = n.input.map((t) => rewires.get(t) ?? t);
  // Graph outputs naming a patched tensor (rare, e.g. an exporter exposing the MLP output) keep the original.
  graph.node = placeAfterProducers(graph.node, b.nodes);
  graph.initializer.push(...b.inits);

  const existing = new Set(graph.output.map((o) => o.name));
  for (const [tensor, rank] of outputs) if (!existing.has(tensor)) graph.output.push(floatValueInfo(tensor, rank));
  // Stale value_info for rewired tensors is harmless, but shapes we changed must not be asserted.
  graph.valueInfo = graph.valueInfo.filter((v) => !outputs.has(v.name));
  return { model, taps, hooks };
}

/**
 * Adds the logit lens to an instrumented model: the final norm and unembedding, cloned, applied to every
 * layer's residual stream, as graph outputs. onnxruntime computes every output on every run, so the lens
 * lives in a separate session (one more unembedding per layer is expensive for a large vocabulary).
 */
export function addLogitLensOutputs(model: OnnxModel, s: ModelStructure): string[] {
  const graph = model.graph!;
  const lens = addLogitLens(graph, s);
  const existing = new Set(graph.output.map((o) => o.name));
  for (const t of lens) if (!existing.has(t)) graph.output.push(floatValueInfo(t, 3));
  return lens;
}

/**
 * Builds LAST_LOGITS = unembed(final_norm(resid[:, -1:])): the path from the last residual stream to the logits,
 * cloned onto the gathered last position. False, building nothing (use Gather after the logits), when the path
 * has an operator that may mix positions or reshape (a Gemm on a flattened [B·T, D], a Reshape, ...), or reduces
 * over an axis other than the last.
 */
function addLastPositionPath(graph: Graph, s: ModelStructure, b: Builder): boolean {
  const g = new GraphIndex(graph);
  const last = s.layers[s.layers.length - 1]?.residPost;
  if (!last || !s.logits) return false;
  const path = g.between(last, s.logits)?.map((i) => g.node(i));
  if (!path) return false;
  if (!path.every((n) => perPosition(n, g, PER_POSITION_OPS))) return false;
  const gathered = b.node('Gather', [last, 'circuitlens.last_index'], ['circuitlens.last_resid'], 'circuitlens/gather_last', [intAttr('axis', 1)]);
  const rename = b.copy(path, 'last', new Map([[last, gathered]]));
  b.node('Identity', [rename.get(s.logits)!], [LAST_LOGITS], 'circuitlens/last_logits');
  return true;
}

/** Graph output with layer L's residual stream read out through the final norm and unembedding. */
export const LENS = (l: number) => `circuitlens.lens.${l}`;

function addLogitLens(graph: Graph, s: ModelStructure): string[] {
  const g = new GraphIndex(graph);
  const b = new Builder();
  const last = s.layers[s.layers.length - 1]!.residPost;
  const path = (g.between(last, s.logits) ?? []).map((i) => g.node(i));
  const out: string[] = [];
  s.layers.forEach((L, l) => {
    if (l === s.layers.length - 1) { out.push(s.logits); return; }
    const rename = b.copy(path, `lens${l}`, new Map([[last, L.residPost]]));
    out.push(b.node('Identity', [rename.get(s.logits)!], [LENS(l)], `circuitlens/lens_${l}`));
  });
  b.appendTo(graph);
  return out;
}

/**
 * Places each new node right after the last producer of its inputs, keeping the original order otherwise.
 * Original consumers of a rewired tensor come after its original producer, hence after the patch nodes too.
 */
function placeAfterProducers(nodes: OnnxNode[], added: OnnxNode[]): OnnxNode[] {
  const key = new Map<string, number>();
  const keyed: { node: OnnxNode; key: number }[] = nodes.map((node, i) => {
    node.output.forEach((t) => key.set(t, i));
    return { node, key: i };
  });
  // A chain of n added nodes moves at most n/(n+2) < 1 past its producer, so it stays before the next original node.
  const step = 1 / (added.length + 2);
  added.forEach((node) => {
    const k = Math.max(-1, ...node.input.map((t) => key.get(t) ?? -1)) + step;
    node.output.forEach((t) => key.set(t, k));
    keyed.push({ node, key: k });
  });
  return keyed.sort((a, b) => a.key - b.key).map((x) => x.node);
}
