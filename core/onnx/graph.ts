import type { Graph, OnnxNode } from './model';

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
