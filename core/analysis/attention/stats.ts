// Statistics of attention patterns (hook_pattern), pure functions of the numbers: what the attention view, the
// `attention` command and the tests compute alike.

/** The softmax temperatures the attention view and `circuitlens attention` sweep by default (1 = the model). */
export const DEFAULT_TEMPERATURES = [0.5, 0.75, 1, 1.5, 2];

/**
 * Entropy in nats, H(q) = −Σ_k p(k|q) ln p(k|q), of each query position's attention distribution, per head:
 * [H × T] row-major (head-major) from one prompt's pattern [H, T, T] (`offset`: where that prompt's pattern starts
 * in a batch). Keys of weight 0 (masked) add nothing. A query at position q sees q + 1 keys, so its entropy lies
 * in [0, ln(q + 1)]: position 0 is always 0.
 */
export function entropyPerPosition(pattern: Float32Array, H: number, T: number, offset = 0): Float64Array {
  const out = new Float64Array(H * T);
  for (let h = 0; h < H; h++) {
    for (let q = 0; q < T; q++) {
      const row = offset + (h * T + q) * T;
      let e = 0;
      for (let k = 0; k < T; k++) {
        const p = pattern[row + k]!;
        if (p > 0) e -= p * Math.log(p);
      }
      out[h * T + q] = e;
    }
  }
  return out;
}

/** Per head, the mean over positions of entropyPerPosition's [H × T]. */
export function meanOverPositions(entropy: Float64Array, H: number, T: number): Float64Array {
  const out = new Float64Array(H);
  for (let h = 0; h < H; h++) {
    let s = 0;
    for (let q = 0; q < T; q++) s += entropy[h * T + q]!;
    out[h] = s / T;
  }
  return out;
}

/** The largest entropy a query at position q can have (uniform over its q + 1 keys): ln(q + 1). */
export function maxEntropyAt(q: number): number {
  return Math.log(q + 1);
}

/**
 * Mean entropy per position over prompts of different lengths: add each prompt's [H × T] (T its own length);
 * position q is averaged over the prompts that reach it.
 */
export class EntropyByPosition {
  private sums: Float64Array[] = [];
  private counts: number[] = [];

  constructor(readonly heads: number) {}

  add(entropy: Float64Array, T: number): void {
    for (let h = 0; h < this.heads; h++) {
      const s = (this.sums[h] ??= new Float64Array(0));
      if (s.length < T) { const grown = new Float64Array(T); grown.set(s); this.sums[h] = grown; }
      for (let q = 0; q < T; q++) this.sums[h]![q]! += entropy[h * T + q]!;
    }
    for (let q = 0; q < T; q++) this.counts[q] = (this.counts[q] ?? 0) + 1;
  }

  /** Per head, the mean at each position (up to the longest prompt's length). */
  means(): number[][] {
    return Array.from({ length: this.heads }, (_, h) => Array.from({ length: this.counts.length }, (_, q) => (this.sums[h]?.[q] ?? 0) / this.counts[q]!));
  }

  /** How many prompts reach each position. */
  get positions(): number[] {
    return [...this.counts];
  }
}
