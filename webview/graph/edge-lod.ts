// Level of detail for the graph view's edges. A model's full edge graph is large (GPT-2-small: 32,491 edges), so
// the view draws only the strongest: the edges are sorted by importance once per state, each drawn line trace
// (colour kind × width bucket) holds its edges' NaN-separated segments in that order, and the edges shown are
// always a prefix of the sorted list — a threshold or a cap becomes one binary search and, per trace, a subarray
// of arrays built once. No DOM here (unit-tested in Node).
import { splitEdgeTarget } from '../../core/ids';

/** One edge as the view draws it: `size` is its importance (|score|, or in a diff view the larger of the two). */
export interface LodEdge { source: string; target: string; score: number; size: number; kind: string; hover: () => string }

/**
 * Line width and opacity, strongest first: an edge gets the thinner of the bucket its |score| relative to the
 * strongest edge earns (≥ `ratio`) and the one its rank earns (< `rank`), so a few hundred edges of similar
 * scores do not all draw wide (the strongest tens stand out) and a graph ruled by one edge does not draw its
 * runners-up wide either.
 */
export const WIDTH_BUCKETS = [
  { ratio: 0.5, rank: 30, width: 5, opacity: 0.9 },
  { ratio: 0.25, rank: 100, width: 2.5, opacity: 0.6 },
  { ratio: 0.1, rank: 300, width: 1.2, opacity: 0.35 },
  { ratio: 0, rank: Infinity, width: 0.8, opacity: 0.25 },
] as const;

/** The bucket of the edge of rank `rank` (0 = strongest) and importance `ratio` of the strongest's. */
export function widthBucket(rank: number, ratio: number): number {
  let b = 0;
  while (b < WIDTH_BUCKETS.length - 1 && (ratio < WIDTH_BUCKETS[b]!.ratio || rank >= WIDTH_BUCKETS[b]!.rank)) b++;
  return b;
}

export interface EdgeTraceData {
  kind: string;
  width: number;
  opacity: number;
  /** Segments in sorted order: x0, x1, NaN per edge. */
  x: Float64Array;
  y: Float64Array;
  /** Each segment's rank in the sorted list (ascending). */
  rank: Int32Array;
}

export interface EdgeLod {
  /** Importance, sorted descending. */
  size: Float64Array;
  max: number;
  edges: LodEdge[];
  traces: EdgeTraceData[];
  /** Hover targets on the first `upTo` edges (each one's middle unless a node is there), in sorted order. */
  mids(upTo: number): { x: Float64Array; y: Float64Array };
}

/** Where an edge ends: a head's q, k and v inputs side by side under it, so the three edges of one pair stay apart. */
export function edgeEnd(target: string, pos: Map<string, [number, number]>): [number, number] | undefined {
  const { node, input } = splitEdgeTarget(target);
  const p = pos.get(node);
  if (!p) return undefined;
  return input ? [p[0] + { q: -0.15, k: 0, v: 0.15 }[input], p[1] - 0.12] : p;
}

/** Whether a point is clear of every node (nodes sit on rows of integer y; within ±0.3 in x and ±0.4 in y counts
 *  as on it): an edge's hover target on a node would take the node's hover and clicks. */
export function awayFromNodes(pos: Map<string, [number, number]>): (x: number, y: number) => boolean {
  const rows = new Map<number, number[]>();
  for (const [x, y] of pos.values()) (rows.get(y) ?? rows.set(y, []).get(y)!).push(x);
  return (x, y) => {
    for (const row of [Math.floor(y), Math.ceil(y)]) {
      if (Math.abs(row - y) >= 0.4) continue;
      for (const nx of rows.get(row) ?? []) if (Math.abs(nx - x) < 0.3) return false;
    }
    return true;
  };
}

/** An edge's hover target: its middle, or the nearest point along it off the nodes (the middle when none is). */
export function hoverPoint(a: [number, number], b: [number, number], clear: (x: number, y: number) => boolean): [number, number] {
  for (const t of [0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74]) {
    const x = a[0] + t * (b[0] - a[0]);
    const y = a[1] + t * (b[1] - a[1]);
    if (clear(x, y)) return [x, y];
  }
  return [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
}

/** Sorts the edges once and builds every trace's segments (edges with an end off the plot are left out). */
export function buildEdgeLod(all: LodEdge[], pos: Map<string, [number, number]>, kinds: readonly string[]): EdgeLod {
  // Ends by name, parsed once per distinct name (a few hundred), not per edge.
  const endOf = new Map<string, [number, number] | undefined>();
  const end = (id: string) => (endOf.has(id) ? endOf.get(id) : endOf.set(id, edgeEnd(id, pos)).get(id));
  const from: ([number, number] | undefined)[] = new Array(all.length);
  const to: ([number, number] | undefined)[] = new Array(all.length);
  const key = new Float64Array(all.length);
  let placeable = 0;
  for (let i = 0; i < all.length; i++) {
    from[i] = end(all[i]!.source);
    to[i] = end(all[i]!.target);
    key[i] = all[i]!.size;
    if (from[i] && to[i]) placeable++;
  }
  const order = new Uint32Array(placeable);
  for (let i = 0, j = 0; i < all.length; i++) if (from[i] && to[i]) order[j++] = i;
  order.sort((a, b) => key[b]! - key[a]!);
  const n = order.length;
  const edges: LodEdge[] = new Array(n);
  const size = new Float64Array(n);
  for (let r = 0; r < n; r++) { edges[r] = all[order[r]!]!; size[r] = key[order[r]!]!; }
  const max = Math.max(1e-9, size[0] ?? 0);
  const nb = WIDTH_BUCKETS.length;
  const kindIndex = new Map(kinds.map((k, i) => [k, i]));
  const members: number[][] = Array.from({ length: kinds.length * nb }, () => []);
  for (let r = 0; r < n; r++) {
    const k = kindIndex.get(edges[r]!.kind);
    if (k !== undefined) members[k * nb + widthBucket(r, edges[r]!.size / max)]!.push(r);
  }
  const traces: EdgeTraceData[] = [];
  kinds.forEach((kind, k) => WIDTH_BUCKETS.forEach(({ width, opacity }, b) => {
    const ranks = members[k * nb + b]!;
    const x = new Float64Array(3 * ranks.length);
    const y = new Float64Array(3 * ranks.length);
    ranks.forEach((r, j) => {
      const a = from[order[r]!]!;
      const c = to[order[r]!]!;
      x[3 * j] = a[0]; x[3 * j + 1] = c[0]; x[3 * j + 2] = NaN;
      y[3 * j] = a[1]; y[3 * j + 1] = c[1]; y[3 * j + 2] = NaN;
    });
    traces.push({ kind, width, opacity, x, y, rank: Int32Array.from(ranks) });
  }));
  // Hover targets are placed when first drawn (the strongest few hundred, usually), not for every edge up front.
  const clear = awayFromNodes(pos);
  const midX = new Float64Array(n);
  const midY = new Float64Array(n);
  let placed = 0;
  const mids = (upTo: number) => {
    for (; placed < Math.min(upTo, n); placed++) [midX[placed], midY[placed]] = hoverPoint(from[order[placed]!]!, to[order[placed]!]!, clear);
    return { x: midX.subarray(0, upTo), y: midY.subarray(0, upTo) };
  };
  return { size, max, edges, traces, mids };
}

/** How many entries of a descending array are ≥ cut (binary search). */
export function countAtLeast(desc: Float64Array, cut: number): number {
  let lo = 0;
  let hi = desc.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (desc[mid]! >= cut) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/** How many entries of an ascending array are < n (binary search). */
export function countBelow(asc: Int32Array, n: number): number {
  let lo = 0;
  let hi = asc.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (asc[mid]! < n) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/** The edges to draw: those of importance ≥ cut, the `cap` strongest at most (a prefix of the sorted list). */
export function shownEdges(lod: EdgeLod, cut: number, cap: number): number {
  return Math.min(cap, countAtLeast(lod.size, cut));
}

/** A trace's segments for the first `shown` edges: views of the arrays built once, nothing copied. */
export function traceSlice(t: EdgeTraceData, shown: number): { x: Float64Array; y: Float64Array; count: number } {
  const count = countBelow(t.rank, shown);
  return { x: t.x.subarray(0, 3 * count), y: t.y.subarray(0, 3 * count), count };
}
