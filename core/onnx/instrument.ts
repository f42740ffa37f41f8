import { UserError } from '../errors';
import { hookName, parseHookName, type HookName } from '../hooks';
import { GraphIndex, PASS_THROUGH } from './graph';
import { inferShapes, UPTO } from './shapes';
import {
  DataType, dimsOf, floatValueInfo, int64Data, int64Tensor, intAttr, intsAttr, makeNode, metadata, num,
  type OnnxModel, type OnnxNode, type TensorProto, type ValueInfo,
} from './model';

/** Where each hook point lives in the original graph. */
export interface LayerTensors {
  residPre: string;
  pattern: string;
  /** Per-head attention output pattern·V, layout [batch, heads, seq, d_head]. */
  zBhtd: string;
  attnOut: string;
  /** The stream the MLP branch reads: resid_mid in sequential blocks, resid_pre in parallel ones (undefined from a sidecar). */
  mlpIn?: string;
  /** MLP branch output before the residual add. */
  mlpOut: string;
  residPost: string;
}

export interface ModelStructure {
  architecture: 'gpt2' | 'llama' | 'custom';
  /** `block`: 'sequential' (attention, then the MLP reads the stream after it) or 'parallel' (both read the block's input). */
  features: { norm: string; positions: string; mlp: string; qkv: string; block: 'sequential' | 'parallel' };
  inputIds: string;
  logits: string;
  embed: string;
  posEmbed?: string;
  layers: LayerTensors[];
  lnFinal: string;
  contextLength?: number;
  /** Graph inputs besides input_ids (attention_mask, position_ids, past key/values) that the engine fills. */
  extraInputs: ValueInfo[];
  /** Where detection came from: 'graph' or the sidecar's path. */
  source: string;
}

/** A `<model>.hooks.json` sidecar: hook name → ONNX tensor name, overriding detection. */
export interface HooksSidecar {
  hooks: Record<HookName, string>;
  contextLength?: number;
}

// Operators of onnxruntime's transformer optimizer and contrib domain: they hide the hook points inside one kernel.
const FUSED_HINT =
  'This graph was pre-fused (onnxruntime transformer optimizer or a contrib-op export), which hides attention patterns and per-head outputs inside single kernels. ' +
  'Export the plain model instead (torch.onnx.export or `optimum-cli export onnx` without --optimize), or map the hooks by hand in a <model>.hooks.json sidecar.';

export function detectStructure(model: OnnxModel, what: string, sidecar?: HooksSidecar, sidecarPath?: string): ModelStructure {
  const graph = model.graph!;
  const fused = graph.node.filter((n) => (n.domain && n.domain !== 'ai.onnx') || FUSED_OPS.has(n.opType));
  if (fused.length > 0) {
    const ops = [...new Set(fused.map((n) => `${n.domain ? n.domain + '.' : ''}${n.opType}`))].join(', ');
    throw new UserError(`${what}: unsupported fused operators found: ${ops} (e.g. node "${fused[0]!.name}"). ${FUSED_HINT}`);
  }
  const g = new GraphIndex(graph);
  let detected: ModelStructure | undefined;
  let failure: UserError | undefined;
  try {
    detected = detectFromGraph(model, g, what);
  } catch (e) {
    if (!(e instanceof UserError) || !sidecar) throw e;
    failure = e;
  }
  if (!sidecar) return detected!;
  return applySidecar(g, detected, sidecar, sidecarPath ?? 'hooks.json', failure);
}

const FUSED_OPS = new Set([
  'Attention', 'MultiHeadAttention', 'GroupQueryAttention', 'PackedAttention', 'SkipLayerNormalization',
  'SkipSimplifiedLayerNormalization', 'EmbedLayerNormalization', 'FastGelu', 'BiasGelu', 'RotaryEmbedding', 'MatMulNBits',
]);

function detectFromGraph(model: OnnxModel, g: GraphIndex, what: string): ModelStructure {
  const graph = model.graph!;
  const found: string[] = [];
  const fail = (missing: string): never => {
    throw new UserError(
      `${what}: could not find the transformer structure by graph shape. Found: ${found.length ? found.join('; ') : 'nothing recognisable'}. ` +
        `Missing: ${missing}. CircuitLens supports plain (not pre-fused) exports of decoder LMs with attention and MLP blocks on a residual stream (GPT-2, GPT-Neo, GPT-NeoX/Pythia, OPT, Phi, Llama, Mistral, Qwen2, Gemma and the like); for other graphs, ` +
        `write a sidecar <model>.hooks.json mapping hook names to tensor names (see README).`,
    );
  };

  const inputs = graph.input.filter((v) => !g.initializers.has(v.name));
  const idsInput = inputs.find((v) => v.name === 'input_ids') ??
    inputs.find((v) => v.type?.tensorType?.elemType === DataType.INT64 && (v.type.tensorType.shape?.dim.length ?? 0) === 2);
  if (!idsInput) fail('an int64 input `input_ids` [batch, seq]');
  const inputIds = idsInput!.name;
  found.push(`input "${inputIds}"`);

  const logitsOut = graph.output.find((v) => v.name === 'logits') ?? graph.output[0];
  if (!logitsOut) fail('a graph output `logits`');
  const logits = logitsOut!.name;
  found.push(`output "${logits}"`);

  // Token embedding: a Gather from a rank-2 initializer indexed by input_ids, possibly reshaped first (Hugging Face's
  // GPT-2 and others flatten input_ids to [-1, T] with a view).
  const idsTensors = g.followForward(inputIds, ID_PRESERVING);
  const embedNode = graph.node.find((n) => n.opType === 'Gather' && idsTensors.includes(n.input[1]!) && isRank2Const(g, n.input[0]!));
  if (!embedNode) fail('the token embedding (a Gather from a [vocab, d_model] table indexed by input_ids)');
  const embed = embedNode!.output[0]!;
  found.push('token embedding');

  // Learned positions: the embedding is added to a Gather from another table.
  let resid0 = embed;
  let posEmbed: string | undefined;
  let posTable: TensorProto | undefined;
  for (const c of g.consumersOf(embed)) {
    if (c.opType !== 'Add') continue;
    const other = c.input[0] === embed ? c.input[1]! : c.input[0]!;
    const table = gatherTable(g, other);
    if (table) {
      posEmbed = other;
      posTable = graph.initializer.find((t) => t.name === table);
      resid0 = c.output[0]!;
      found.push('learned position embedding');
    }
  }

  // A constant scale of the embedding (Gemma multiplies it by √d_model) is part of the stream's start.
  for (let hops = 0; hops < 4; hops++) {
    const scale = g.consumersOf(resid0).find((c) => (c.opType === 'Mul' || c.opType === 'Div') && c.input[0] === resid0 && isConstScalar(g, c.input[1]!) ||
      (c.opType === 'Mul' && c.input[1] === resid0 && isConstScalar(g, c.input[0]!)));
    if (!scale || g.consumersOf(resid0).length > 1 + g.consumersOf(resid0).filter((c) => c.opType === 'Shape').length) break;
    resid0 = scale.output[0]!;
    found.push('scaled embedding');
  }

  // The residual stream: a chain of Adds, each adding a branch computed from the stream itself.
  type Branch = { input: string; output: string; sum: string; nodes: Set<number> };
  const branchFrom = (from: string, output: string, sum: string): Branch | undefined => {
    const anc = g.ancestors(output, from);
    if (!anc.reachedStop) return undefined;
    const desc = g.descendants(from);
    return { input: from, output, sum, nodes: new Set([...anc.nodes].filter((i) => desc.has(i))) };
  };
  const hasSoftmax = (b: Branch) => [...b.nodes].some((i) => g.node(i).opType === 'Softmax');
  // A block is sequential (attention, then an MLP reading the stream after it) or parallel (GPT-NeoX/Pythia, GPT-J,
  // Phi: attention and MLP both read the block's input, and their outputs are added to it).
  type Block = { attn: Branch; mlp: Branch; parallel: boolean };
  const blocks: Block[] = [];
  const kinds: string[] = [];
  let cur = resid0;
  let pendingAttn: Branch | undefined;
  const branchesFound = () => `${kinds.length} residual branches (${kinds.join(', ') || 'none'})`;
  const fail2 = (): never => {
    found.push(branchesFound());
    return fail('alternating attention and MLP branches on the residual stream, or parallel attention + MLP blocks (attention branches contain a Softmax)');
  };
  for (;;) {
    let next: Branch | undefined;
    let parallelPartner: Branch | undefined;
    // The stream may pass through a no-op Cast or Identity first (Hugging Face's RMSNorm casts its input to
    // float32, and the export adds the residual after that Cast).
    // OPT flattens the stream to [B·T, D] around its MLP and adds the views back: a Reshape of the stream is the
    // stream too, and a branch may read the stream before the view that the Add reads.
    search: for (const at of streamAliases(g, cur)) {
      for (const c of g.consumersOf(at)) {
        if (c.opType !== 'Add') continue;
        const other = c.input[0] === at ? c.input[1]! : c.input[0]!;
        if (other === at) continue;
        next = branchFrom(at, other, c.output[0]!) ?? (at !== cur ? branchFrom(cur, other, c.output[0]!) : undefined);
        if (next) break search;
        // x + attn(x) + mlp(x) added one at a time: the second branch reads the stream before the first was added.
        if (pendingAttn) parallelPartner = branchFrom(pendingAttn.input, other, c.output[0]!);
        if (parallelPartner) break search;
      }
    }
    if (parallelPartner) {
      const first = pendingAttn!;
      const [attn, mlp] = hasSoftmax(first) && !hasSoftmax(parallelPartner) ? [first, parallelPartner] : !hasSoftmax(first) && hasSoftmax(parallelPartner) ? [parallelPartner, first] : [undefined, undefined];
      if (!attn || !mlp) fail2();
      kinds.push('parallel(attn, mlp)');
      blocks.push({ attn: { ...attn!, sum: parallelPartner.sum }, mlp: { ...mlp!, input: first.input, sum: parallelPartner.sum }, parallel: true });
      pendingAttn = undefined;
      cur = parallelPartner.sum;
      continue;
    }
    if (!next) break;
    // (attn(x) + mlp(x)) + x: one branch whose output is the sum of an attention and an MLP branch of the same input.
    const inner = g.producerOf(next.output);
    if (hasSoftmax(next) && inner?.opType === 'Add' && inner.input[0] !== inner.input[1]) {
      const parts = inner.input.map((t) => branchFrom(next!.input, t, next!.sum));
      if (parts.every(Boolean)) {
        const soft = parts.map((b) => hasSoftmax(b!));
        if (soft[0] !== soft[1]) {
          const attn = parts[soft[0] ? 0 : 1]!;
          const mlp = parts[soft[0] ? 1 : 0]!;
          if (pendingAttn) fail2();
          kinds.push('parallel(attn, mlp)');
          blocks.push({ attn, mlp, parallel: true });
          cur = next.sum;
          continue;
        }
      }
    }
    const kind = hasSoftmax(next) ? 'attn' : 'mlp';
    kinds.push(kind);
    if (kind === 'attn') {
      if (pendingAttn) fail2();
      pendingAttn = next;
    } else {
      if (!pendingAttn) fail2();
      blocks.push({ attn: pendingAttn!, mlp: next, parallel: false });
      pendingAttn = undefined;
    }
    cur = next.sum;
  }
  if (blocks.length === 0 || pendingAttn) fail2();
  found.push(branchesFound());
  const parallelBlocks = blocks.filter((b) => b.parallel).length;
  if (parallelBlocks !== 0 && parallelBlocks !== blocks.length) fail('blocks that are all sequential or all parallel (this model mixes both)');

  let shapes: ReturnType<typeof inferShapes> | undefined;
  const rankOf = (t: string): number | undefined => (shapes ??= inferShapes(graph)).dims.get(t)?.length;
  const layers: LayerTensors[] = [];
  for (let l = 0; l < blocks.length; l++) {
    const { attn, mlp } = blocks[l]!;
    const softmaxes = [...attn.nodes].map((i) => g.node(i)).filter((n) => n.opType === 'Softmax');
    if (softmaxes.length !== 1) fail(`one Softmax in the attention branch of layer ${l} (found ${softmaxes.length})`);
    // Exports that fold the heads into the batch axis (OPT's torch.bmm attention: [B·H, T, T]) view the pattern
    // and the per-head outputs as [B, H, ...] on the way: those views are the hooks.
    const softmaxOut = softmaxes[0]!.output[0]!;
    const patternAliases = streamAliases(g, softmaxOut);
    const pattern = patternAliases.find((t) => rankOf(t) === 4) ?? softmaxOut;
    const pv = graph.node.find((n) => n.opType === 'MatMul' && patternAliases.includes(n.input[0]!));
    if (!pv) fail(`the pattern·V MatMul after the Softmax of layer ${l}`);
    const pvOut = pv!.output[0]!;
    // (A rank shape inference cannot tell, e.g. after an operator it has no rule for, is taken as the usual 4.)
    const zBhtd = (rankOf(pvOut) ?? 4) === 4 ? pvOut : streamAliases(g, pvOut).find((t) => rankOf(t) === 4);
    if (!zBhtd) fail(`the per-head attention output [batch, heads, seq, d_head] of layer ${l} (the pattern·V product is never viewed with a heads axis)`);
    layers.push({ residPre: attn.input, pattern, zBhtd: zBhtd!, attnOut: attn.output, mlpIn: mlp.input, mlpOut: mlp.output, residPost: mlp.sum });
  }
  found.push(`${layers.length} layers`);
  const parallel = parallelBlocks > 0;

  // Final norm: the input of the unembedding MatMul (or Gemm), possibly followed by a bias Add.
  let lp = g.producerOf(g.followBackward(logits));
  if (lp?.opType === 'Add') {
    const mm = lp.input.map((t) => g.producerOf(t)).find((p) => p?.opType === 'MatMul' || p?.opType === 'Gemm');
    lp = mm ?? lp;
  }
  if (!lp || (lp.opType !== 'MatMul' && lp.opType !== 'Gemm')) fail('the unembedding MatMul that produces the logits');
  const lnFinal = lp!.input[0]!;
  if (!g.ancestors(lnFinal, cur).reachedStop) fail('a final norm between the last residual stream and the unembedding');

  const attnNodes = new Set(blocks.flatMap((b) => [...b.attn.nodes]));
  const mlpNodes = new Set(blocks.flatMap((b) => [...b.mlp.nodes]));
  const ops = (s: Set<number>) => new Set([...s].map((i) => g.node(i).opType));
  const attnOps = ops(attnNodes);
  const mlpOps = ops(mlpNodes);
  const norm = attnOps.has('LayerNormalization') || attnOps.has('Sub') ? 'LayerNorm' : 'RMSNorm';
  const rotary = !posEmbed && (attnOps.has('Neg') || attnOps.has('Sin') || attnOps.has('Cos'));
  const positions = posEmbed ? 'learned' : rotary ? 'rotary' : 'none';
  const mlpKind = mlpOps.has('Sigmoid') ? 'SwiGLU' : mlpOps.has('Erf') || mlpOps.has('Tanh') ? 'GELU' : mlpOps.has('Relu') ? 'ReLU' : 'other';
  const weightMatMuls = [...attnNodes].map((i) => g.node(i)).filter((n) => (n.opType === 'MatMul' || n.opType === 'Gemm') && n.input.some((t) => g.isConstant(t))).length / layers.length;
  const qkv = weightMatMuls <= 2 ? 'fused' : 'separate';
  const architecture = norm === 'LayerNorm' && positions === 'learned' ? 'gpt2' : norm === 'RMSNorm' && positions === 'rotary' ? 'llama' : 'custom';

  const contextLength = contextFromMetadata(model) ?? (posTable ? num(posTable.dims[0]) : rotary ? rotaryCacheLength(g, attnNodes, embedNode!.input[0]!) : undefined);
  const extraInputs = inputs.filter((v) => v.name !== inputIds);

  return {
    architecture, features: { norm, positions, mlp: mlpKind, qkv, block: parallel ? 'parallel' : 'sequential' }, inputIds, logits, embed, posEmbed, layers, lnFinal,
    contextLength, extraInputs, source: 'graph',
  };
}

/** Operators through which a tensor (the residual stream, a pattern) stays itself: no-op Casts and Identities, and Reshapes (views). */
const VIEWS = new Set([...PASS_THROUGH, 'Reshape']);

/** The tensors that carry `t` as it is: itself and its views. */
const streamAliases = (g: GraphIndex, t: string): string[] => g.followForward(t, VIEWS);

/** Operators that keep token ids as they are (only their layout may change). */
const ID_PRESERVING = new Set([...PASS_THROUGH, 'Reshape', 'Unsqueeze', 'Squeeze', 'Flatten']);

/** A constant with one element (an initializer or a Constant node, possibly through a Cast). */
export function isConstScalar(g: GraphIndex, t: string): boolean {
  const src = g.followBackward(t);
  const init = g.graph.initializer.find((x) => x.name === src);
  if (init) return init.dims.reduce<number>((a, d) => a * num(d), 1) === 1;
  const p = g.producerOf(src);
  const v = p?.opType === 'Constant' ? p.attribute.find((a) => a.name === 'value')?.t : undefined;
  return !!v && v.dims.reduce<number>((a, d) => a * num(d), 1) === 1;
}

function isRank2Const(g: GraphIndex, t: string): boolean {
  const init = g.graph.initializer.find((x) => x.name === t);
  return !!init && init.dims.length === 2;
}

/** The table name when `t` is (a reshaped/broadcast copy of) a Gather or Slice of a rank-2 initializer. */
function gatherTable(g: GraphIndex, t: string): string | undefined {
  let cur = t;
  for (let hops = 0; hops < 4; hops++) {
    const p = g.producerOf(cur);
    if (!p) return undefined;
    if ((p.opType === 'Gather' || p.opType === 'Slice') && isRank2Const(g, p.input[0]!)) return p.input[0];
    if (!['Unsqueeze', 'Expand', 'Reshape', 'Identity', 'Cast'].includes(p.opType)) return undefined;
    cur = p.input[0]!;
  }
  return undefined;
}

function contextFromMetadata(model: OnnxModel): number | undefined {
  const m = metadata(model);
  for (const k of ['circuitlens.context_length', 'context_length', 'n_ctx', 'max_position_embeddings']) {
    const v = Number(m[k]);
    if (Number.isInteger(v) && v > 0) return v;
  }
  return undefined;
}

/** Rotary cos/sin caches are rank-2 constants sliced or gathered by position inside attention: their first dim. */
function rotaryCacheLength(g: GraphIndex, attnNodes: Set<number>, embedTable: string): number | undefined {
  const lens: number[] = [];
  for (const t of g.graph.initializer) {
    if (t.dims.length !== 2 || t.dataType !== DataType.FLOAT || t.name === embedTable) continue;
    const uses = g.consumersOf(t.name);
    if (uses.length === 0 || !uses.every((n) => ['Slice', 'Gather', 'Identity'].includes(n.opType))) continue;
    const used = (g.consumers.get(t.name) ?? []).some((i) => {
      const out = g.node(i).output[0]!;
      return [...g.descendants(out)].some((d) => attnNodes.has(d));
    });
    if (used) lens.push(num(t.dims[0]));
  }
  return lens.length ? Math.min(...lens) : undefined;
}

function applySidecar(g: GraphIndex, detected: ModelStructure | undefined, sidecar: HooksSidecar, path: string, failure?: UserError): ModelStructure {
  const known = new Set<string>([...g.producer.keys(), ...g.graphInputs, ...g.initializers]);
  const layerCount = Math.max(-1, ...Object.keys(sidecar.hooks).map((h) => parseHookName(h)?.layer ?? -1)) + 1;
  for (const [hook, tensor] of Object.entries(sidecar.hooks)) {
    if (!parseHookName(hook)) throw new UserError(`${path}: "${hook}" is not a hook name (e.g. blocks.0.attn.hook_z, see DESIGN §2)`);
    if (!known.has(tensor)) throw new UserError(`${path}: hook "${hook}" maps to tensor "${tensor}", which the model does not have`);
  }
  const base: ModelStructure = detected ?? {
    architecture: 'custom', features: { norm: '?', positions: '?', mlp: '?', qkv: '?', block: 'sequential' }, inputIds: 'input_ids', logits: 'logits',
    embed: '', layers: Array.from({ length: layerCount }, () => ({ residPre: '', pattern: '', zBhtd: '', attnOut: '', mlpOut: '', residPost: '' })),
    lnFinal: '', extraInputs: [...g.graphInputs].filter((n) => n !== 'input_ids').map((name) => g.graph.input.find((v) => v.name === name)!),
    source: path,
  };
  const s: ModelStructure = { ...base, layers: base.layers.map((l) => ({ ...l })), source: path };
  if (sidecar.contextLength) s.contextLength = sidecar.contextLength;
  const field = { resid_pre: 'residPre', pattern: 'pattern', z: 'zBhtd', attn_out: 'attnOut', mlp_out: 'mlpOut', resid_post: 'residPost' } as const;
  for (const [hook, tensor] of Object.entries(sidecar.hooks)) {
    const p = parseHookName(hook)!;
    if (p.kind === 'embed') s.embed = tensor;
    else if (p.kind === 'pos_embed') s.posEmbed = tensor;
    else if (p.kind === 'ln_final') s.lnFinal = tensor;
    else if (p.kind === 'logits') s.logits = tensor;
    else if (p.layer !== undefined && p.layer < s.layers.length) s.layers[p.layer]![field[p.kind]] = tensor;
  }
  const missing: string[] = [];
  if (!s.embed) missing.push('hook_embed');
  if (!s.lnFinal) missing.push('ln_final.hook_normalized');
  s.layers.forEach((l, i) => (Object.keys(field) as (keyof typeof field)[]).forEach((k) => { if (!l[field[k]]) missing.push(hookName(k, i)); }));
  if (missing.length) {
    throw new UserError(`${path}: graph detection failed${failure ? ` (${failure.message})` : ''} and the sidecar does not name: ${missing.join(', ')}`);
  }
  return s;
}

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
  const newNodes: OnnxNode[] = [];
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

  graph.initializer.push(int64Tensor('circuitlens.shape.b_h_1_1', [0, -1, 1, 1]), int64Tensor('circuitlens.shape.b_1_1', [-1, 1, 1]));
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
    newNodes.push(makeNode('Shape', [s.embed], [shape], 'circuitlens/pos_shape'));
    newNodes.push(makeNode('Expand', [s.posEmbed, shape], ['circuitlens.hook_pos_embed'], 'circuitlens/pos_expand'));
    tap('hook_pos_embed', 'circuitlens.hook_pos_embed', 3, s.posEmbed);
  }
  s.layers.forEach((L, l) => {
    const p = `circuitlens.blocks.${l}`;
    graph.input.push(
      ablationInput(IN.zMask(l), [upto(0), undefined]), ablationInput(IN.zAdd(l), [upto(0), upto(1), undefined, undefined]),
      ablationInput(IN.mlpMask(l), [upto(0)]), ablationInput(IN.mlpAdd(l), [upto(0), upto(1), undefined]),
    );
    newNodes.push(
      makeNode('Reshape', [IN.zMask(l), 'circuitlens.shape.b_h_1_1'], [`${p}.z_mask4`], `${p}/z_mask_reshape`),
      makeNode('Mul', [L.zBhtd, `${p}.z_mask4`], [`${p}.z_masked`], `${p}/z_mask_mul`),
      makeNode('Transpose', [IN.zAdd(l)], [`${p}.z_add_bhtd`], `${p}/z_add_transpose`, [intsAttr('perm', [0, 2, 1, 3])]),
      makeNode('Add', [`${p}.z_masked`, `${p}.z_add_bhtd`], [`${p}.z_patched`], `${p}/z_add`),
      makeNode('Transpose', [`${p}.z_patched`], [`${p}.hook_z`], `${p}/z_tap`, [intsAttr('perm', [0, 2, 1, 3])]),
      makeNode('Reshape', [IN.mlpMask(l), 'circuitlens.shape.b_1_1'], [`${p}.mlp_mask3`], `${p}/mlp_mask_reshape`),
      makeNode('Mul', [L.mlpOut, `${p}.mlp_mask3`], [`${p}.mlp_masked`], `${p}/mlp_mask_mul`),
      makeNode('Add', [`${p}.mlp_masked`, IN.mlpAdd(l)], [`${p}.hook_mlp_out`], `${p}/mlp_add`),
    );
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
  graph.initializer.push(int64Tensor('circuitlens.last_index', [-1]));
  const lastPath = addLastPositionPath(graph, s);
  if (lastPath) newNodes.push(...lastPath);
  else newNodes.push(makeNode('Gather', [s.logits, 'circuitlens.last_index'], [LAST_LOGITS], 'circuitlens/last_logits', [intAttr('axis', 1)]));
  addOutput(LAST_LOGITS, 3);

  // Rewire every original consumer of a patched tensor to the patched value.
  for (const n of graph.node) n.input = n.input.map((t) => rewires.get(t) ?? t);
  // Graph outputs naming a patched tensor (rare, e.g. an exporter exposing the MLP output) keep the original.
  graph.node = placeAfterProducers(graph.node, newNodes);

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

// Operators that act on each position separately (norms over the last axis, elementwise maths, the unembedding
// product): a path made of these gives the same last-position values on the last position alone.
const PER_POSITION_OPS = new Set([
  'LayerNormalization', 'SimplifiedLayerNormalization', 'RMSNormalization', 'ReduceMean', 'Sub', 'Pow', 'Add', 'Sqrt',
  'Div', 'Mul', 'Reciprocal', 'Cast', 'MatMul', 'Identity', 'Tanh', 'Neg',
]);

/**
 * Nodes computing LAST_LOGITS = unembed(final_norm(resid[:, -1:])): the path from the last residual stream to the
 * logits, cloned onto the gathered last position. Undefined (use Gather after the logits) when the path has an
 * operator that may mix positions or reshape (a Gemm on a flattened [B·T, D], a Reshape, ...), or reduces over
 * an axis other than the last.
 */
function addLastPositionPath(graph: OnnxModel['graph'] & object, s: ModelStructure): OnnxNode[] | undefined {
  const g = new GraphIndex(graph);
  const last = s.layers[s.layers.length - 1]?.residPost;
  if (!last || !s.logits) return undefined;
  const path = g.between(last, s.logits)?.map((i) => g.node(i));
  if (!path) return undefined;
  if (!path.every((n) => perPosition(n, g, PER_POSITION_OPS))) return undefined;
  const gathered = 'circuitlens.last_resid';
  const rename = new Map<string, string>([[last, gathered]]);
  for (const n of path) for (const o of n.output) if (o) rename.set(o, `${o}@last`);
  const out: OnnxNode[] = [makeNode('Gather', [last, 'circuitlens.last_index'], [gathered], 'circuitlens/gather_last', [intAttr('axis', 1)])];
  for (const n of path) out.push({ ...n, name: `${n.name}@last`, input: n.input.map((t) => rename.get(t) ?? t), output: n.output.map((t) => rename.get(t) ?? t) });
  out.push(makeNode('Identity', [rename.get(s.logits)!], [LAST_LOGITS], 'circuitlens/last_logits'));
  return out;
}

export function constInts(g: GraphIndex, t: string): number[] | undefined {
  const init = g.graph.initializer.find((x) => x.name === t);
  if (init) return int64Data(init);
  const p = g.producerOf(t);
  const v = p?.opType === 'Constant' ? p.attribute.find((a) => a.name === 'value')?.t : undefined;
  return v ? int64Data(v) : undefined;
}

/** Whether node n acts on each position alone: an operator of `ops`, reductions and norms over the last axis only. */
function perPosition(n: OnnxNode, g: GraphIndex, ops: Set<string>): boolean {
  if (!ops.has(n.opType) || (n.domain && n.domain !== 'ai.onnx')) return false;
  if (n.opType === 'ReduceMean') {
    const axes = n.attribute.find((a) => a.name === 'axes')?.ints?.map(num) ?? (n.input[1] ? constInts(g, n.input[1]) : undefined);
    if (!axes || axes.length !== 1 || (axes[0] !== -1 && axes[0] !== 2)) return false;
  }
  if (n.opType === 'LayerNormalization' || n.opType === 'SimplifiedLayerNormalization' || n.opType === 'RMSNormalization') {
    const axis = n.attribute.find((a) => a.name === 'axis');
    if (axis && num(axis.i) !== -1) return false;
  }
  return true;
}

/** Elementwise activations an MLP may use, on top of PER_POSITION_OPS. */
const MLP_OPS = new Set([...PER_POSITION_OPS, 'Erf', 'Sigmoid', 'Relu', 'Gelu', 'FastGelu', 'Exp', 'Softplus', 'Max', 'Min', 'Clip']);

/**
 * For the lean metrics graphs (last-position logits only): the last layer's MLP and residual add run on the last
 * position only, from its resid_mid (the MLP is per position, so the other positions' MLP outputs reach nothing
 * those graphs return). `model` is such a graph (withOutputsOnly); returns a pruned copy and the resid_mid tensor
 * the last layer now ends at (for layer skipping), or undefined when the MLP branch is not a per-position path.
 */
export function withLastMlpOnLastPosition(model: OnnxModel, s: ModelStructure): { model: OnnxModel; lastStart: string } | undefined {
  const graph = model.graph!;
  const g = new GraphIndex(graph);
  const l = s.layers.length - 1;
  const L = s.layers[l];
  const gatherLast = graph.node.find((n) => n.name === 'circuitlens/gather_last');
  if (!L || !gatherLast || gatherLast.input[0] !== L.residPost) return undefined;
  const post = g.producerOf(L.residPost);
  const mlpOut = PATCHED.mlp(l);
  if (!post || post.opType !== 'Add' || !post.input.includes(mlpOut)) return undefined;
  const mid = post.input[0] === mlpOut ? post.input[1]! : post.input[0]!;
  const branch = g.between(mid, mlpOut)?.map((i) => g.node(i));
  if (!branch) return undefined;
  const desc = g.descendants(mid);
  for (const n of branch) {
    if (!perPosition(n, g, MLP_OPS)) return undefined;
    // A product of two activations could mix positions; a weight (not computed from the stream) cannot.
    if (n.opType === 'MatMul' && n.input.every((t) => desc.has(g.producer.get(t) ?? -1) || t === mid)) return undefined;
  }
  const p = 'circuitlens.lastmlp';
  const rename = new Map<string, string>([[mid, `${p}.mid`], [IN.mlpAdd(l), `${p}.add`]]);
  for (const n of branch) for (const o of n.output) if (o) rename.set(o, `${o}@lastmlp`);
  const added: OnnxNode[] = [
    makeNode('Gather', [mid, 'circuitlens.last_index'], [`${p}.mid`], `${p}/gather_mid`, [intAttr('axis', 1)]),
    // The ablation's additive term may hold a value per position ([B, T, D]) or broadcast ([1, 1, 1]): its last one.
    makeNode('Gather', [IN.mlpAdd(l), 'circuitlens.last_index'], [`${p}.add`], `${p}/gather_add`, [intAttr('axis', 1)]),
    ...branch.map((n) => ({ ...n, name: `${n.name}@lastmlp`, input: n.input.map((t) => rename.get(t) ?? t), output: n.output.map((t) => rename.get(t) ?? t) })),
    makeNode('Add', post.input.map((t) => rename.get(t)!), ['circuitlens.last_resid'], `${p}/residual`),
  ];
  const node = graph.node.filter((n) => n !== gatherLast);
  const at = node.findIndex((n) => n.input.includes('circuitlens.last_resid'));
  node.splice(at < 0 ? node.length : at, 0, ...added);
  const out = withOutputsOnly({ ...model, graph: { ...graph, node } }, graph.output.map((o) => o.name));
  return { model: out, lastStart: mid };
}

/**
 * A copy of `model` whose graph outputs are `outputs` only, without the nodes none of them needs: onnxruntime
 * computes every graph output on every run, fetched or not. Shares tensors with `model` (no weight copies).
 */
export function withOutputsOnly(model: OnnxModel, outputs: string[]): OnnxModel {
  const graph = model.graph!;
  const keep = new Set(outputs);
  const output = graph.output.filter((o) => keep.has(o.name));
  const missing = outputs.filter((o) => !output.some((x) => x.name === o));
  if (missing.length) throw new Error(`withOutputsOnly: not graph outputs: ${missing.join(', ')}`);
  const g = new GraphIndex(graph);
  const needed = new Set<number>();
  for (const o of output) for (const i of g.ancestors(o.name).nodes) needed.add(i);
  const node = graph.node.filter((_, i) => needed.has(i));
  const used = new Set(node.flatMap((n) => n.input));
  return { ...model, graph: { ...graph, node, output, initializer: graph.initializer.filter((t) => used.has(t.name)) } };
}

/** Graph output with statistics of each row of LAST_LOGITS, [batch, 1, 4]: see withLastRowStats. */
export const LAST_STATS = 'circuitlens.logits_last_stats';

/**
 * A copy of `model` (which outputs LAST_LOGITS, [B, 1, V]) with one more output, LAST_STATS [B, 1, 4]: per row
 * the maximum logit m, Σ exp(logit − m) as the float32 pair hi + lo of its float64 sum, and the index of the
 * first maximum (a float, exact below 2^24); core/analysis/metrics.ts `rowStats` reads a row. With them a
 * row's log-normaliser is m + log(hi + lo) without JavaScript's Math.exp over the vocabulary (~10 ns per entry: 0.5 ms of a 50k-vocabulary row, most of a
 * sweep's scoring). The exponentials are float32, 1-2 ulp each: the log-normaliser is good to ~1e-7 (a weighted
 * mean of their relative errors; ~1e-9 on a flat 50k row), where float64 exponentials in onnxruntime cost as much
 * as JavaScript's. The sum is float64 (a float32 sum is off by ~4e-6 on 50k entries). Needs double-precision
 * Cast and ReduceSum: onnxruntime's CPU kernels (native and WASM), not WebGPU's. ReduceSum takes its axes as an
 * input: opset 13 on. onnxruntime computes every output on every run, so every run of a session with these
 * nodes pays for them (~0.1 ms per 50k row, and ~3 row-sized buffers, one float64, at the arena's peak).
 */
export function withLastRowStats(model: OnnxModel): OnnxModel {
  const graph = model.graph!;
  if (!graph.output.some((o) => o.name === LAST_LOGITS)) throw new Error(`withLastRowStats: ${LAST_LOGITS} is not a graph output`);
  const t = (n: string) => `circuitlens.stats.${n}`;
  const node = [
    ...graph.node,
    makeNode('ArgMax', [LAST_LOGITS], [t('argmax')], 'circuitlens/stats_argmax', [intAttr('axis', -1), intAttr('keepdims', 1)]),
    makeNode('GatherElements', [LAST_LOGITS, t('argmax')], [t('max')], 'circuitlens/stats_max', [intAttr('axis', -1)]),
    makeNode('Sub', [LAST_LOGITS, t('max')], [t('shifted')], 'circuitlens/stats_shift'),
    makeNode('Exp', [t('shifted')], [t('exp')], 'circuitlens/stats_exp'),
    makeNode('Cast', [t('exp')], [t('exp64')], 'circuitlens/stats_exp64', [intAttr('to', DataType.DOUBLE)]),
    makeNode('ReduceSum', [t('exp64'), t('axes')], [t('sum64')], 'circuitlens/stats_sum', [intAttr('keepdims', 1)]),
    makeNode('Cast', [t('sum64')], [t('hi')], 'circuitlens/stats_hi', [intAttr('to', DataType.FLOAT)]),
    makeNode('Cast', [t('hi')], [t('hi64')], 'circuitlens/stats_hi64', [intAttr('to', DataType.DOUBLE)]),
    makeNode('Sub', [t('sum64'), t('hi64')], [t('lo64')], 'circuitlens/stats_lo64'),
    makeNode('Cast', [t('lo64')], [t('lo')], 'circuitlens/stats_lo', [intAttr('to', DataType.FLOAT)]),
    makeNode('Cast', [t('argmax')], [t('argmaxf')], 'circuitlens/stats_argmaxf', [intAttr('to', DataType.FLOAT)]),
    makeNode('Concat', [t('max'), t('hi'), t('lo'), t('argmaxf')], [LAST_STATS], 'circuitlens/stats', [intAttr('axis', -1)]),
  ];
  return {
    ...model,
    graph: { ...graph, node, initializer: [...graph.initializer, int64Tensor(t('axes'), [-1])], output: [...graph.output, floatValueInfo(LAST_STATS, 3)] },
  };
}

/** Graph output with layer L's residual stream read out through the final norm and unembedding. */
export const LENS = (l: number) => `circuitlens.lens.${l}`;

function addLogitLens(graph: OnnxModel['graph'] & object, s: ModelStructure): string[] {
  const g = new GraphIndex(graph);
  const last = s.layers[s.layers.length - 1]!.residPost;
  const path = (g.between(last, s.logits) ?? []).map((i) => g.node(i));
  const out: string[] = [];
  s.layers.forEach((L, l) => {
    if (l === s.layers.length - 1) { out.push(s.logits); return; }
    const rename = new Map<string, string>([[last, L.residPost]]);
    for (const n of path) for (const o of n.output) if (o) rename.set(o, `${o}@lens${l}`);
    for (const n of path) {
      graph.node.push({ ...n, name: `${n.name}@lens${l}`, input: n.input.map((t) => rename.get(t) ?? t), output: n.output.map((t) => rename.get(t) ?? t), attribute: n.attribute });
    }
    const logits = rename.get(s.logits)!;
    graph.node.push(makeNode('Identity', [logits], [LENS(l)], `circuitlens/lens_${l}`));
    out.push(LENS(l));
  });
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

export { dimsOf, PASS_THROUGH };
