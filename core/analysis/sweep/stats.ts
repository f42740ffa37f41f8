// The statistics of a sweep: a seeded random source, percentile bootstrap intervals of a mean, and the value of
// the swept variable where a curve crosses a level (linear interpolation between the two values around it).

/** mulberry32: a small seeded generator of uniform numbers in [0, 1), so that a sweep's intervals repeat exactly. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The q-quantile of sorted numbers, interpolated linearly between order statistics (numpy's default, "type 7"). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const h = (n - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, n - 1);
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!);
}

/** The central `confidence` interval of samples by percentiles: [q((1−c)/2), q((1+c)/2)]. */
export function percentileInterval(samples: number[], confidence: number): [number, number] {
  const s = Float64Array.from(samples).sort();
  return [quantile(s, (1 - confidence) / 2), quantile(s, (1 + confidence) / 2)];
}

/**
 * Bootstrap resamples of a group's rows: `resamples` index lists, each `n` draws with replacement. Every column
 * (metric, accuracy) is averaged over the same draws, so their intervals describe the same resampled suites.
 */
export function resampleMeans(columns: number[][], resamples: number, rand: () => number): number[][] {
  const n = columns[0]?.length ?? 0;
  const out = columns.map(() => new Array<number>(resamples));
  for (let b = 0; b < resamples; b++) {
    const sums = columns.map(() => 0);
    for (let i = 0; i < n; i++) {
      const j = Math.floor(rand() * n);
      for (let c = 0; c < columns.length; c++) sums[c]! += columns[c]![j]!;
    }
    for (let c = 0; c < columns.length; c++) out[c]![b] = sums[c]! / n;
  }
  return out;
}

export type Direction = 'falls' | 'rises';

export interface Crossing {
  /** Where the curve meets the level, interpolated linearly between the two swept values around it. */
  value: number;
  direction: Direction;
  /** The two swept values it lies between. */
  between: [number, number];
}

/**
 * The first crossing of `level` by y over ascending x: it falls where y goes from ≥ level to < level, rises where
 * it goes from < level to ≥ level. Null when y stays on one side.
 */
export function firstCrossing(x: number[], y: number[], level: number): Crossing | null {
  for (let i = 0; i + 1 < x.length; i++) {
    const a = y[i]!;
    const b = y[i + 1]!;
    const falls = a >= level && b < level;
    const rises = a < level && b >= level;
    if (!falls && !rises) continue;
    const x0 = x[i]!;
    const x1 = x[i + 1]!;
    return { value: x0 + ((level - a) * (x1 - x0)) / (b - a), direction: falls ? 'falls' : 'rises', between: [x0, x1] };
  }
  return null;
}
