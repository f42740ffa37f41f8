// The smallest set of items whose restoring makes a check pass, by QuickXplain (Junker 2004): split the candidates
// in halves, find what the second half must add to the first, then what of the first that still needs. With k
// items needed out of n it takes about 2k·log2(n/k) + 2k checks and never more than 2n − 1, against n for trying
// them one at a time (which also misses items that only matter together). It assumes monotonicity (restoring more
// never breaks a passing check); where that fails the result may not be minimal, and the caller re-checks it.

/** Whether restoring exactly these items makes the check pass (the caller counts and caches the evaluations). */
export type Passes<T> = (items: T[]) => Promise<boolean>;

/**
 * A minimal subset of `candidates` that passes, given that all of `candidates` pass and none of them does not.
 * Order matters only among equally small answers: items earlier in `candidates` are preferred.
 */
export async function minimalPassingSet<T>(candidates: T[], passes: Passes<T>): Promise<T[]> {
  const qx = async (base: T[], added: boolean, c: T[]): Promise<T[]> => {
    if (added && (await passes(base))) return [];
    if (c.length <= 1) return c;
    const k = Math.ceil(c.length / 2);
    const c1 = c.slice(0, k);
    const c2 = c.slice(k);
    const d2 = await qx([...base, ...c1], c1.length > 0, c2);
    const d1 = await qx([...base, ...d2], d2.length > 0, c1);
    return [...d1, ...d2];
  };
  return qx([], false, candidates);
}

/** The most evaluations minimalPassingSet makes on n candidates (a bound for progress estimates). */
export const maxEvaluations = (n: number): number => Math.max(0, 2 * n - 1);
