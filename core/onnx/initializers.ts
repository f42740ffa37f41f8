// Where a weight comes from: the initializer behind a node's input, and who else reads it. Shared by the
// recognisers of per-head projections (edge-heads.ts for edge graphs, weight-slices.ts for weight ownership).
import type { GraphIndex } from './graph';
import type { OnnxNode } from './model';

/** The initializer behind `t`, through Identity nodes (exporters share equal initializers that way). */
export function initializerBehind(g: GraphIndex, t: string | undefined): string | undefined {
  for (let i = 0; t !== undefined && i < 8; i++) {
    if (g.initializers.has(t)) return t;
    const p = g.producerOf(t);
    t = p?.opType === 'Identity' ? p.input[0] : undefined;
  }
  return undefined;
}

/** The nodes that read initializer `name`, through Identity nodes (the Identities themselves left out). */
export function readersOf(g: GraphIndex, name: string): OnnxNode[] {
  const out: OnnxNode[] = [];
  const pending = [name];
  for (let hops = 0; pending.length && hops < 10_000; hops++) {
    for (const n of g.consumersOf(pending.pop()!)) {
      if (n.opType === 'Identity') pending.push(n.output[0]!);
      else out.push(n);
    }
  }
  return out;
}
