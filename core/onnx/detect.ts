// Hook detection: where the hook points of a plain decoder LM export live, found from the graph's structure (the
// residual stream's chain of Adds, attention and MLP branches, embeddings, the final norm) or named in a sidecar.
import { UserError } from '../errors';
import { hookName, parseHookName, type HookName } from '../hooks';
import { GraphIndex, isConstScalar, PASS_THROUGH } from './graph';
import { inferShapes } from './shapes';
import { DataType, metadata, num, type Graph, type OnnxModel, type TensorProto, type ValueInfo } from './model';

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

/** What the detection steps share; `found` lists what was recognised, for the message when something is missing. */
interface Detection {
  graph: Graph;
  g: GraphIndex;
  found: string[];
  fail(missing: string): never;
}

/** A residual branch: the nodes between the stream it reads (`input`) and its `output`, added to the stream as `sum`. */
type Branch = { input: string; output: string; sum: string; nodes: Set<number> };

/**
 * A block is sequential (attention, then an MLP reading the stream after it) or parallel (GPT-NeoX/Pythia, GPT-J,
 * Phi: attention and MLP both read the block's input, and their outputs are added to it).
 */
type Block = { attn: Branch; mlp: Branch; parallel: boolean };

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
  const d: Detection = { graph, g, found, fail };
  const { inputs, inputIds, logits } = findEnds(d);
  const { embed, embedTable, posEmbed, posTable, resid0 } = findEmbedding(d, inputIds);
  const { blocks, last } = findBlocks(d, resid0);
  const layers = findLayers(d, blocks);
  found.push(`${layers.length} layers`);
  const lnFinal = findFinalNorm(d, logits, last);
  const { architecture, features, attnNodes, rotary } = classify(d, blocks, !!posEmbed);
  const contextLength = contextFromMetadata(model) ?? (posTable ? num(posTable.dims[0]) : rotary ? rotaryCacheLength(g, attnNodes, embedTable) : undefined);
  const extraInputs = inputs.filter((v) => v.name !== inputIds);
  return { architecture, features, inputIds, logits, embed, posEmbed, layers, lnFinal, contextLength, extraInputs, source: 'graph' };
}

/** The token ids input, the logits output, and the graph's inputs (initializers aside). */
function findEnds({ graph, g, found, fail }: Detection): { inputs: ValueInfo[]; inputIds: string; logits: string } {
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
  return { inputs, inputIds, logits };
}

/** The token embedding, learned positions added to it, and where the residual stream starts (`resid0`). */
function findEmbedding({ graph, g, found, fail }: Detection, inputIds: string):
  { embed: string; embedTable: string; posEmbed?: string; posTable?: TensorProto; resid0: string } {
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
  return { embed, embedTable: embedNode!.input[0]!, posEmbed, posTable, resid0 };
}

/** The branch from the stream `from` to `output` (added to it as `sum`); undefined when `output` does not depend on `from`. */
function branchFrom(g: GraphIndex, from: string, output: string, sum: string): Branch | undefined {
  const anc = g.ancestors(output, from);
  if (!anc.reachedStop) return undefined;
  const desc = g.descendants(from);
  return { input: from, output, sum, nodes: new Set([...anc.nodes].filter((i) => desc.has(i))) };
}

/** The residual stream from `resid0`: a chain of Adds, each adding a branch computed from the stream itself, grouped into blocks. */
function findBlocks({ g, found, fail }: Detection, resid0: string): { blocks: Block[]; last: string } {
  const hasSoftmax = (b: Branch) => [...b.nodes].some((i) => g.node(i).opType === 'Softmax');
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
        next = branchFrom(g, at, other, c.output[0]!) ?? (at !== cur ? branchFrom(g, cur, other, c.output[0]!) : undefined);
        if (next) break search;
        // x + attn(x) + mlp(x) added one at a time: the second branch reads the stream before the first was added.
        if (pendingAttn) parallelPartner = branchFrom(g, pendingAttn.input, other, c.output[0]!);
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
      const parts = inner.input.map((t) => branchFrom(g, next!.input, t, next!.sum));
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
  return { blocks, last: cur };
}

/** Each block's hook tensors: the attention pattern (the Softmax) and per-head outputs (pattern·V) found in it. */
function findLayers({ graph, g, fail }: Detection, blocks: Block[]): LayerTensors[] {
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
  return layers;
}

/** Final norm: the input of the unembedding MatMul (or Gemm), possibly followed by a bias Add. */
function findFinalNorm({ g, fail }: Detection, logits: string, last: string): string {
  let lp = g.producerOf(g.followBackward(logits));
  if (lp?.opType === 'Add') {
    const mm = lp.input.map((t) => g.producerOf(t)).find((p) => p?.opType === 'MatMul' || p?.opType === 'Gemm');
    lp = mm ?? lp;
  }
  if (!lp || (lp.opType !== 'MatMul' && lp.opType !== 'Gemm')) fail('the unembedding MatMul that produces the logits');
  const lnFinal = lp!.input[0]!;
  if (!g.ancestors(lnFinal, last).reachedStop) fail('a final norm between the last residual stream and the unembedding');
  return lnFinal;
}

/** The architecture's features, read from the operators its branches use. */
function classify({ g }: Detection, blocks: Block[], learnedPositions: boolean):
  { architecture: ModelStructure['architecture']; features: ModelStructure['features']; attnNodes: Set<number>; rotary: boolean } {
  const attnNodes = new Set(blocks.flatMap((b) => [...b.attn.nodes]));
  const mlpNodes = new Set(blocks.flatMap((b) => [...b.mlp.nodes]));
  const ops = (s: Set<number>) => new Set([...s].map((i) => g.node(i).opType));
  const attnOps = ops(attnNodes);
  const mlpOps = ops(mlpNodes);
  const norm = attnOps.has('LayerNormalization') || attnOps.has('Sub') ? 'LayerNorm' : 'RMSNorm';
  const rotary = !learnedPositions && (attnOps.has('Neg') || attnOps.has('Sin') || attnOps.has('Cos'));
  const positions = learnedPositions ? 'learned' : rotary ? 'rotary' : 'none';
  const mlp = mlpOps.has('Sigmoid') ? 'SwiGLU' : mlpOps.has('Erf') || mlpOps.has('Tanh') ? 'GELU' : mlpOps.has('Relu') ? 'ReLU' : 'other';
  const weightMatMuls = [...attnNodes].map((i) => g.node(i)).filter((n) => (n.opType === 'MatMul' || n.opType === 'Gemm') && n.input.some((t) => g.isConstant(t))).length / blocks.length;
  const qkv = weightMatMuls <= 2 ? 'fused' : 'separate';
  const architecture = norm === 'LayerNorm' && positions === 'learned' ? 'gpt2' : norm === 'RMSNorm' && positions === 'rotary' ? 'llama' : 'custom';
  const block = blocks.some((b) => b.parallel) ? 'parallel' : 'sequential';
  return { architecture, features: { norm, positions, mlp, qkv, block }, attnNodes, rotary };
}

/** Operators through which a tensor (the residual stream, a pattern) stays itself: no-op Casts and Identities, and Reshapes (views). */
const VIEWS = new Set([...PASS_THROUGH, 'Reshape']);

/** The tensors that carry `t` as it is: itself and its views. */
const streamAliases = (g: GraphIndex, t: string): string[] => g.followForward(t, VIEWS);

/** Operators that keep token ids as they are (only their layout may change). */
const ID_PRESERVING = new Set([...PASS_THROUGH, 'Reshape', 'Unsqueeze', 'Squeeze', 'Flatten']);

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
