import { UserError } from './errors';

/** A node of the computational graph, in EAP-IG / MIB notation (DESIGN §3). */
export type NodeId = 'input' | 'logits' | `a${number}.h${number}` | `m${number}`;

export type ParsedNode =
  | { kind: 'input' }
  | { kind: 'logits' }
  | { kind: 'head'; layer: number; head: number }
  | { kind: 'mlp'; layer: number };

const HEAD = /^a(\d+)\.h(\d+)$/;
const MLP = /^m(\d+)$/;

export function parseNodeId(s: string): ParsedNode {
  const t = s.trim();
  if (t === 'input') return { kind: 'input' };
  if (t === 'logits') return { kind: 'logits' };
  let m = HEAD.exec(t);
  if (m) return { kind: 'head', layer: Number(m[1]), head: Number(m[2]) };
  m = MLP.exec(t);
  if (m) return { kind: 'mlp', layer: Number(m[1]) };
  throw new UserError(`unknown node id "${s}" (expected input, logits, a<L>.h<H> or m<L>, e.g. a1.h2 or m0)`);
}

export function headId(layer: number, head: number): NodeId {
  return `a${layer}.h${head}`;
}

export function mlpId(layer: number): NodeId {
  return `m${layer}`;
}

/** Parses `a1.h2,m0` into node ids, checking them against the model's shape. */
export function parseNodeList(list: string, shape?: { layers: number; heads: number }): NodeId[] {
  const ids = list.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (ids.length === 0) throw new UserError('empty node list (expected ids like a1.h2,m0)');
  return ids.map((s) => {
    const n = parseNodeId(s);
    if (shape) checkNodeInModel(s, n, shape);
    return s.trim() as NodeId;
  });
}

export function checkNodeInModel(id: string, n: ParsedNode, shape: { layers: number; heads: number }): void {
  if (n.kind === 'head' && (n.layer >= shape.layers || n.head >= shape.heads)) {
    throw new UserError(`node "${id}" is not in this model: it has layers 0..${shape.layers - 1} and heads 0..${shape.heads - 1}`);
  }
  if (n.kind === 'mlp' && n.layer >= shape.layers) {
    throw new UserError(`node "${id}" is not in this model: it has MLPs m0..m${shape.layers - 1}`);
  }
}

/** Every ablatable node of a model, in layer order (heads before the MLP of the same layer). */
export function allComponentNodes(shape: { layers: number; heads: number }): NodeId[] {
  const out: NodeId[] = [];
  for (let l = 0; l < shape.layers; l++) {
    for (let h = 0; h < shape.heads; h++) out.push(headId(l, h));
    out.push(mlpId(l));
  }
  return out;
}
