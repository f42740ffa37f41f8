// Where a weight comes from: the initializer behind a node's input, and who else reads it. Shared by the
// recognisers of per-head projections (edge-heads.ts for edge graphs, weight-slices.ts for weight ownership) and
// by what counts as a weight matrix (weightReads: prune.ts, weight-scope.ts).
import type { GraphIndex } from './graph';
import { num, type OnnxNode } from './model';

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

/** A node that reads an initializer: at which input (the first that reads it), and its axes there (axis i there is
 * axis perm[i] of the stored initializer). */
export interface WeightRead { node: OnnxNode; at: number; perm: number[] }

/**
 * The nodes that read initializer `name` (of rank `rank`), followed through the operators of `through` (left out
 * themselves); a Transpose among them permutes the axes (without `perm`: reverses them).
 */
export function weightReads(g: GraphIndex, name: string, rank: number, through: ReadonlySet<string>): WeightRead[] {
  const out: WeightRead[] = [];
  const pending: [string, number[]][] = [[name, Array.from({ length: rank }, (_, i) => i)]];
  for (let hops = 0; pending.length && hops < 1000; hops++) {
    const [t, perm] = pending.pop()!;
    for (const n of g.consumersOf(t)) {
      if (!through.has(n.opType)) { out.push({ node: n, at: n.input.indexOf(t), perm }); continue; }
      const p = n.opType === 'Transpose' ? n.attribute.find((a) => a.name === 'perm')?.ints?.map(num) ?? Array.from({ length: perm.length }, (_, i) => perm.length - 1 - i) : undefined;
      pending.push([n.output[0]!, p ? p.map((i) => perm[i]!) : perm]);
    }
  }
  return out;
}
