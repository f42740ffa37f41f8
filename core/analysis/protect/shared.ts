// The shared weights a circuit reads and writes through, which no node owns (core/onnx/weight-slices.ts): the
// norms in front of its heads and MLPs, the embeddings every node reads from, and the final norm and unembedding
// every node writes through. Fine-tuning them changes what the circuit's nodes see and what their output does
// even when the nodes' own weights stand still. Found from the graph's structure (core/onnx/weight-components.ts
// for what each initializer is; the layer's attention and MLP branches for which nodes a norm feeds), never from
// names.
import { UserError } from '../../errors';
import { parseNodeId } from '../../ids';
import { GraphIndex } from '../../onnx/graph';
import { readersOf } from '../../onnx/initializers';
import { weightComponents } from '../../onnx/weight-components';
import type { ProtectModel } from './protect';

/** What `--shared` can add: layer norms (and the final norm), the embeddings, the unembedding. */
export const SHARED_PARTS = ['norms', 'embedding', 'unembedding'] as const;
export type SharedPart = typeof SHARED_PARTS[number];

/** A shared initializer (the file's name) protected whole. */
export interface SharedWeight { initializer: string; part: SharedPart; layer?: number; dims: number[] }

/** `norms,embedding` or `all` → the parts; a clear error for anything else. */
export function parseSharedParts(text: string): SharedPart[] {
  const words = text.split(',').map((w) => w.trim()).filter(Boolean);
  if (words.length === 1 && words[0] === 'all') return [...SHARED_PARTS];
  const bad = words.filter((w) => !(SHARED_PARTS as readonly string[]).includes(w));
  if (bad.length || !words.length) throw new UserError(`--shared takes all or a list of ${SHARED_PARTS.join(', ')} (got "${text}")`);
  return [...new Set(words)] as SharedPart[];
}

/**
 * The shared weights of `parts` that the nodes read or write through: a layer's norms where they feed a branch
 * with a node of the circuit (the attention's norm for its heads, the MLP's for its MLP, a parallel block's
 * shared norm for either) and the final norm (norms); every embedding initializer (embedding); the unembedding
 * (unembedding). A tied embedding is one PyTorch parameter: protecting either use protects both.
 */
export function sharedWeights(pm: ProtectModel, nodes: readonly string[], parts: readonly SharedPart[], what: string): SharedWeight[] {
  if (!parts.length) return [];
  const heads = new Set<number>();
  const mlps = new Set<number>();
  for (const id of nodes) {
    const p = parseNodeId(id);
    if (p.kind === 'head') heads.add(p.layer);
    else if (p.kind === 'mlp') mlps.add(p.layer);
  }
  const g = new GraphIndex(pm.model.graph!);
  const branches = new Map<number, { attn: Set<number>; mlp: Set<number> }>();
  const branchOf = (l: number) => {
    let b = branches.get(l);
    if (!b) {
      const L = pm.structure.layers[l]!;
      b = { attn: new Set(g.between(L.residPre, L.attnOut) ?? []), mlp: new Set(g.between(L.mlpIn ?? L.residPre, L.mlpOut) ?? []) };
      branches.set(l, b);
    }
    return b;
  };
  // The nodes that read each stored initializer, in the normalised graph (through a folded Cast or dequantization).
  const readers = new Map<string, number[]>();
  for (const t of pm.model.graph!.initializer) {
    const stored = pm.origin.get(t.name) ?? t.name;
    const list = readers.get(stored) ?? [];
    list.push(...readersOf(g, t.name).map((n) => g.producer.get(n.output[0]!)!));
    readers.set(stored, list);
  }
  const stored = new Map(pm.stored.map((s) => [s.name, s.dims]));
  const out: SharedWeight[] = [];
  for (const r of weightComponents(pm.raw, what, pm.hooks)) {
    const dims = stored.get(r.tensor);
    if (!dims) continue;
    const add = (part: SharedPart, layer?: number) => out.push({ initializer: r.tensor, part, ...(layer === undefined ? {} : { layer }), dims });
    if (r.component === 'norm' && parts.includes('norms')) {
      const l = r.layers.find((x) => {
        const b = branchOf(x);
        const read = readers.get(r.tensor) ?? [];
        return (heads.has(x) && read.some((i) => b.attn.has(i))) || (mlps.has(x) && read.some((i) => b.mlp.has(i)));
      });
      if (l !== undefined) add('norms', l);
    } else if (r.component === 'final_norm' && parts.includes('norms')) add('norms');
    else if (r.uses.includes('embedding') && parts.includes('embedding')) add('embedding');
    else if (r.uses.includes('unembedding') && parts.includes('unembedding')) add('unembedding');
  }
  return out;
}
