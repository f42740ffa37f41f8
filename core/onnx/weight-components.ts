// What each initializer of a model is, found from the graph's structure and never from the exporter's names
// (exports rename weights: `onnx::MatMul_404`). The hook tensors detect.ts finds bound the regions of the graph:
// a layer's attention branch is the nodes between its resid_pre and attn_out, its MLP branch those between the
// stream the MLP reads and mlp_out; inside a branch, the nodes reached from the stream before its first MatMul or
// Gemm are its norm. The embedding is what resid_pre of layer 0 is made from, the final norm what lies between the
// last resid_post and ln_final, the unembedding what lies between ln_final and the logits. An initializer belongs
// where the node that first meets the activations with it sits (its consumer): weights reach it through constant
// nodes (a Cast of fp16 weights, a DequantizeLinear of int8 ones, the Transpose of a tied embedding), and a
// consumer outside every region (a rotary cache gathered by position) belongs where its result is used.
// Whole initializers only: slices of them (a head's rows of a fused QKV) are another question.
import type { HooksSidecar } from './detect';
import { detectStructure, type ModelStructure } from './detect';
import { GraphIndex } from './graph';
import { DataType, num, type Graph, type OnnxModel } from './model';
import { normalizeExport } from './normalize';
import { withInitializers } from './weight-swap';

export type WeightComponent = 'embedding' | 'norm' | 'attention' | 'mlp' | 'final_norm' | 'unembedding' | 'other';

/** Model order: which component a tensor read by several is listed under. */
export const COMPONENT_ORDER: readonly WeightComponent[] = ['embedding', 'norm', 'attention', 'mlp', 'final_norm', 'unembedding', 'other'];

export interface WeightRole {
  /** The ONNX initializer name, as in the file. */
  tensor: string;
  /** Where it is used (the first of `uses` in model order). */
  component: WeightComponent;
  /** The one layer that reads it; undefined outside the blocks or when several layers share it. */
  layer?: number;
  /** Every layer that reads it. */
  layers: number[];
  /** Every component that reads it (a tied embedding: embedding and unembedding). */
  uses: WeightComponent[];
  /** The nodes where it meets the activations: node names (or `<op> → <output>` for unnamed nodes). */
  consumers: string[];
  dims: number[];
  elements: number;
  dataType: number;
}

type Tag = { component: WeightComponent; layer?: number };

const FLOAT_TYPES = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE]);
export const isFloatType = (t: number): boolean => FLOAT_TYPES.has(t);

/** Operators a branch's norm ends at: the projections, and Shape (a shape carries none of the stream's values). */
const NORM_ENDS = new Set(['MatMul', 'Gemm', 'Shape', 'Size']);

/**
 * Every initializer of `model` (as decoded from the file; not changed here) with its component, layer and
 * consumers. The hooks are detected on a normalized copy (with the model's sidecar, when it has one).
 */
export function weightComponents(model: OnnxModel, what: string, sidecar?: { sidecar?: HooksSidecar; sidecarPath?: string }): WeightRole[] {
  const raw = model.graph!;
  // Normalization folds Casts and DequantizeLinears of weights into new initializers named after their outputs:
  // what each of those was made from, in the file's names.
  const rawNames = new Set(raw.initializer.map((t) => t.name));
  const rawSources = constantSources(raw, (name) => (rawNames.has(name) ? [name] : undefined));
  const copy = withInitializers(model, []);
  normalizeExport(copy, what);
  const structure = detectStructure(copy, what, sidecar?.sidecar, sidecar?.sidecarPath);
  const graph = copy.graph!;
  const g = new GraphIndex(graph);
  const sources = constantSources(graph, (name) => (rawNames.has(name) ? [name] : rawSources.get(name) ? [...rawSources.get(name)!] : g.initializers.has(name) ? [] : undefined));
  const tags = regionTags(g, structure);

  const found = new Map<string, { tags: Tag[]; consumers: Set<string> }>();
  graph.node.forEach((n, i) => {
    if (n.output.every((o) => !o || sources.has(o))) return; // a constant node: its result is followed instead
    const constInputs = n.input.filter((t) => t && sources.has(t));
    if (!constInputs.length) return;
    const where = tags.get(i) ?? tagsDownstream(g, i, tags);
    for (const t of constInputs) {
      for (const name of sources.get(t)!) {
        const f = found.get(name) ?? { tags: [], consumers: new Set<string>() };
        f.tags.push(...where);
        f.consumers.add(n.name || `${n.opType} → ${n.output[0]}`);
        found.set(name, f);
      }
    }
  });

  return raw.initializer.map((t) => {
    const f = found.get(t.name);
    const ts = f?.tags ?? [];
    const uses = COMPONENT_ORDER.filter((c) => ts.some((x) => x.component === c));
    const layers = [...new Set(ts.flatMap((x) => (x.layer === undefined ? [] : [x.layer])))].sort((a, b) => a - b);
    const component = uses[0] ?? 'other';
    const inLayer = component === 'norm' || component === 'attention' || component === 'mlp';
    const dims = t.dims.map(num);
    return {
      tensor: t.name, component, ...(inLayer && layers.length === 1 ? { layer: layers[0] } : {}), layers, uses: uses.length ? uses : ['other'],
      consumers: [...(f?.consumers ?? [])], dims, elements: dims.reduce((a, d) => a * d, 1), dataType: t.dataType,
    };
  });
}

/**
 * Constant tensors of a graph and the initializers (named by `seed`) each is computed from: initializers
 * themselves, Constant nodes, and the outputs of nodes whose inputs are all constant.
 */
function constantSources(graph: Graph, seed: (name: string) => string[] | undefined): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const t of graph.initializer) { const s = seed(t.name); if (s) out.set(t.name, new Set(s)); }
  for (const n of graph.node) {
    const inputs = n.input.filter(Boolean);
    const constant = n.opType === 'Constant' || (inputs.length > 0 && inputs.every((t) => out.has(t)));
    if (!constant) continue;
    const s = new Set(inputs.flatMap((t) => [...(out.get(t) ?? [])]));
    for (const o of n.output) if (o) out.set(o, s);
  }
  return out;
}

/** Node index → the regions it lies in (a parallel block's shared norm lies in both branches). */
function regionTags(g: GraphIndex, s: ModelStructure): Map<number, Tag[]> {
  const tags = new Map<number, Tag[]>();
  const add = (nodes: Iterable<number>, tag: (i: number) => Tag) => {
    for (const i of nodes) {
      const t = tag(i);
      const list = tags.get(i) ?? [];
      if (!list.some((x) => x.component === t.component && x.layer === t.layer)) list.push(t);
      tags.set(i, list);
    }
  };
  add(g.ancestors(s.layers[0]!.residPre).nodes, () => ({ component: 'embedding' }));
  s.layers.forEach((L, layer) => {
    const attn = g.between(L.residPre, L.attnOut) ?? [];
    const attnSet = new Set(attn);
    const mlp = L.mlpIn ? g.between(L.mlpIn, L.mlpOut) ?? [] : (g.between(L.residPre, L.mlpOut) ?? []).filter((i) => !attnSet.has(i));
    const attnNorm = normNodes(g, L.residPre, attnSet);
    const mlpSet = new Set(mlp);
    const mlpNorm = normNodes(g, L.mlpIn ?? L.residPre, mlpSet);
    add(attn, (i) => ({ component: attnNorm.has(i) ? 'norm' : 'attention', layer }));
    add(mlp, (i) => ({ component: mlpNorm.has(i) ? 'norm' : 'mlp', layer }));
  });
  const last = s.layers[s.layers.length - 1]!.residPost;
  add(g.between(last, s.lnFinal) ?? [], () => ({ component: 'final_norm' }));
  add(g.between(s.lnFinal, s.logits) ?? [], () => ({ component: 'unembedding' }));
  return tags;
}

/** The nodes of a branch reached from its input stream before a projection (its norm, and views of the stream). */
function normNodes(g: GraphIndex, input: string, branch: Set<number>): Set<number> {
  const out = new Set<number>();
  const stack = [input];
  const seen = new Set<string>();
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    for (const c of g.consumers.get(t) ?? []) {
      if (!branch.has(c) || out.has(c) || NORM_ENDS.has(g.node(c).opType)) continue;
      out.add(c);
      for (const o of g.node(c).output) if (o) stack.push(o);
    }
  }
  return out;
}

/** The regions of the first tagged nodes downstream of node `i` (where a value made outside every region is used). */
function tagsDownstream(g: GraphIndex, i: number, tags: Map<number, Tag[]>): Tag[] {
  const out: Tag[] = [];
  const seen = new Set<number>([i]);
  const stack = [i];
  while (stack.length) {
    const n = stack.pop()!;
    for (const o of g.node(n).output) {
      for (const c of g.consumers.get(o) ?? []) {
        if (seen.has(c)) continue;
        seen.add(c);
        const t = tags.get(c);
        if (t) { for (const x of t) if (!out.some((y) => y.component === x.component && y.layer === x.layer)) out.push(x); } else stack.push(c);
      }
    }
  }
  return out;
}

/** A group's words: `layer 1 attention`, `embedding`, `attention (layers 0, 1)`. */
export function describeRole(component: WeightComponent, layer: number | undefined, layers: number[] = []): string {
  const name = component.replace('_', ' ');
  if (layer !== undefined) return `layer ${layer} ${name}`;
  return layers.length > 1 ? `${name} (layers ${layers.join(', ')})` : name;
}
