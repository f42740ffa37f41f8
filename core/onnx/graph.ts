import { int64Data, num, type Graph, type OnnxNode } from './model';

/** Producer/consumer index over a graph's tensors. Node order is topological (ONNX requires it). */
export class GraphIndex {
  readonly producer = new Map<string, number>();
  readonly consumers = new Map<string, number[]>();
  readonly initializers = new Set<string>();
  readonly graphInputs = new Set<string>();

  constructor(readonly graph: Graph) {
    graph.node.forEach((n, i) => {
      for (const o of n.output) if (o) this.producer.set(o, i);
      for (const t of n.input) {
        if (!t) continue;
        const c = this.consumers.get(t);
        if (c) c.push(i); else this.consumers.set(t, [i]);
      }
    });
    for (const t of graph.initializer) this.initializers.add(t.name);
    for (const v of graph.input) if (!this.initializers.has(v.name)) this.graphInputs.add(v.name);
  }

  node(i: number): OnnxNode {
    return this.graph.node[i]!;
  }

  producerOf(tensor: string): OnnxNode | undefined {
    const i = this.producer.get(tensor);
    return i === undefined ? undefined : this.graph.node[i];
  }

  consumersOf(tensor: string): OnnxNode[] {
    return (this.consumers.get(tensor) ?? []).map((i) => this.graph.node[i]!);
  }

  isConstant(tensor: string): boolean {
    if (this.initializers.has(tensor)) return true;
    const p = this.producerOf(tensor);
    return p?.opType === 'Constant';
  }

  /** Nodes that `tensor` depends on, not crossing `stop` (which is then reported as reached). */
  ancestors(tensor: string, stop?: string): { nodes: Set<number>; reachedStop: boolean } {
    const nodes = new Set<number>();
    let reachedStop = false;
    const stack = [tensor];
    const seen = new Set<string>();
    while (stack.length) {
      const t = stack.pop()!;
      if (seen.has(t)) continue;
      seen.add(t);
      if (t === stop) { reachedStop = true; continue; }
      const p = this.producer.get(t);
      if (p === undefined || nodes.has(p)) continue;
      nodes.add(p);
      for (const i of this.graph.node[p]!.input) if (i) stack.push(i);
    }
    return { nodes, reachedStop };
  }

  /** The nodes between `from` and `to` (ancestors of `to` that depend on `from`) in graph order; undefined when `to` does not depend on `from`. */
  between(from: string, to: string): number[] | undefined {
    const anc = this.ancestors(to, from);
    if (!anc.reachedStop) return undefined;
    const desc = this.descendants(from);
    return [...anc.nodes].filter((i) => desc.has(i)).sort((a, b) => a - b);
  }

  /** Nodes that depend on `tensor`. */
  descendants(tensor: string): Set<number> {
    const nodes = new Set<number>();
    const stack = [tensor];
    while (stack.length) {
      const t = stack.pop()!;
      for (const c of this.consumers.get(t) ?? []) {
        if (nodes.has(c)) continue;
        nodes.add(c);
        for (const o of this.graph.node[c]!.output) if (o) stack.push(o);
      }
    }
    return nodes;
  }

  /** The tensor and what `ops` (default: the pass-through ops Identity, Cast, Dropout) make of it, reading it as their first input. */
  followForward(tensor: string, ops: ReadonlySet<string> = PASS_THROUGH): string[] {
    const out = [tensor];
    for (const c of this.consumersOf(tensor)) {
      if (ops.has(c.opType) && c.input[0] === tensor) out.push(...this.followForward(c.output[0]!, ops));
    }
    return out;
  }

  /** Skips pass-through ops backward from a tensor. */
  followBackward(tensor: string): string {
    let t = tensor;
    for (;;) {
      const p = this.producerOf(t);
      if (!p || !PASS_THROUGH.has(p.opType)) return t;
      t = p.input[0]!;
    }
  }
}

export const PASS_THROUGH = new Set(['Identity', 'Cast', 'Dropout']);

/** A constant with one element (an initializer or a Constant node, possibly through a Cast). */
export function isConstScalar(g: GraphIndex, t: string): boolean {
  const src = g.followBackward(t);
  const init = g.graph.initializer.find((x) => x.name === src);
  if (init) return init.dims.reduce<number>((a, d) => a * num(d), 1) === 1;
  const p = g.producerOf(src);
  const v = p?.opType === 'Constant' ? p.attribute.find((a) => a.name === 'value')?.t : undefined;
  return !!v && v.dims.reduce<number>((a, d) => a * num(d), 1) === 1;
}

/** The values of an int64 constant (an initializer or a Constant node). */
export function constInts(g: GraphIndex, t: string): number[] | undefined {
  const init = g.graph.initializer.find((x) => x.name === t);
  if (init) return int64Data(init);
  const p = g.producerOf(t);
  const v = p?.opType === 'Constant' ? p.attribute.find((a) => a.name === 'value')?.t : undefined;
  return v ? int64Data(v) : undefined;
}

// Operators that act on each position separately (norms over the last axis, elementwise maths, the unembedding
// product): a path made of these gives the same last-position values on the last position alone.
export const PER_POSITION_OPS = new Set([
  'LayerNormalization', 'SimplifiedLayerNormalization', 'RMSNormalization', 'ReduceMean', 'Sub', 'Pow', 'Add', 'Sqrt',
  'Div', 'Mul', 'Reciprocal', 'Cast', 'MatMul', 'Identity', 'Tanh', 'Neg',
]);

/** Whether node n acts on each position alone: an operator of `ops`, reductions and norms over the last axis only. */
export function perPosition(n: OnnxNode, g: GraphIndex, ops: Set<string>): boolean {
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

/** Orders nodes so every input is produced before use (Kahn's algorithm, stable for already-ordered nodes). */
export function topoSort(nodes: OnnxNode[], graph: Graph): OnnxNode[] {
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => n.output.forEach((o) => o && producer.set(o, i)));
  const indeg = new Array<number>(nodes.length).fill(0);
  const users: number[][] = nodes.map(() => []);
  nodes.forEach((n, i) => {
    for (const t of new Set(n.input)) {
      const p = t ? producer.get(t) : undefined;
      if (p !== undefined && p !== i) { indeg[i]!++; users[p]!.push(i); }
    }
  });
  // A min-heap on the original index would keep the order closest to the original; a sorted ready list is enough.
  const ready: number[] = [];
  indeg.forEach((d, i) => { if (d === 0) ready.push(i); });
  const out: OnnxNode[] = [];
  while (ready.length) {
    ready.sort((a, b) => b - a);
    const i = ready.pop()!;
    out.push(nodes[i]!);
    for (const u of users[i]!) if (--indeg[u]! === 0) ready.push(u);
  }
  if (out.length !== nodes.length) throw new Error(`edge instrumentation made a cycle in ${graph.name || 'the graph'}`);
  return out;
}
