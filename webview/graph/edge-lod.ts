// Level of detail for the graph view's edges. A model's full edge graph is large (GPT-2-small: 32,491 edges), so
// the view draws only the strongest: the edges are sorted by importance once per state, each drawn line trace
// (colour kind × width bucket) holds its edges' NaN-separated segments in that order, and the edges shown are
// always a prefix of the sorted list — a threshold or a cap becomes one binary search and, per trace, a subarray
// of arrays built once. No DOM here (unit-tested in Node).
import { splitEdgeTarget } from '../../core/ids';

/** One edge as the view draws it: `size` is its importance (|score|, or in a diff view the larger of the two). */
export interface LodEdge { source: string; target: string; score: number; size: number; kind: string; describe: () => string }

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
  /** Each edge's ends in sorted order: x0, y0, x1, y1. */
  ends: Float64Array;
}

/** Where an edge ends: a head's q, k and v inputs side by side under it, so the three edges of one pair stay apart. */
export function edgeEnd(target: string, pos: Map<string, [number, number]>): [number, number] | undefined {
  const { node, input } = splitEdgeTarget(target);
  const p = pos.get(node);
  if (!p) return undefined;
  return input ? [p[0] + { q: -0.15, k: 0, v: 0.15 }[input], p[1] - 0.12] : p;
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
  const ends = new Float64Array(4 * n);
  for (let r = 0; r < n; r++) {
    const a = from[order[r]!]!;
    const c = to[order[r]!]!;
    ends[4 * r] = a[0]; ends[4 * r + 1] = a[1]; ends[4 * r + 2] = c[0]; ends[4 * r + 3] = c[1];
  }
  return { size, max, edges, traces, ends };
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

/** A linear map from data to pixels along one axis: pixel = offset + (value - from) * scale. */
export interface AxisMap { offset: number; from: number; scale: number }

/**
 * The drawn edge nearest a pointer at (px, py) in pixels, within `within` pixels, or -1: a scan of the first `shown`
 * edges (a few hundred by default; 32k take about a millisecond), strongest first, so of two equally near the
 * stronger wins. The plot hovers nodes itself; edges are not Plotly hover targets (a marker per edge would add a
 * point per edge to every redraw).
 */
export function nearestEdge(lod: EdgeLod, shown: number, px: number, py: number, xa: AxisMap, ya: AxisMap, within = 5): number {
  let best = -1;
  let bestD = within * within;
  const e = lod.ends;
  for (let r = 0; r < shown; r++) {
    const x0 = xa.offset + (e[4 * r]! - xa.from) * xa.scale;
    const y0 = ya.offset + (e[4 * r + 1]! - ya.from) * ya.scale;
    const dx = xa.offset + (e[4 * r + 2]! - xa.from) * xa.scale - x0;
    const dy = ya.offset + (e[4 * r + 3]! - ya.from) * ya.scale - y0;
    const len = dx * dx + dy * dy;
    const t = len > 0 ? Math.max(0, Math.min(1, ((px - x0) * dx + (py - y0) * dy) / len)) : 0;
    const qx = x0 + t * dx - px;
    const qy = y0 + t * dy - py;
    const d = qx * qx + qy * qy;
    if (d < bestD) { bestD = d; best = r; }
  }
  return best;
}
