// The benchmark's induction-style prompt suite, generated (token ids, no tokenizer needed).
import { seededRandom } from '../../core/analysis/sweep/stats';
import type { ResolvedPrompt } from '../../core/analysis/prompts';

/**
 * `count` prompts of `length` tokens: P distinct random tokens (P from 6 to 10), then a repeat of them from the
 * start, cut at `length`; the answer is the next token of the repeat, the foil another token of the prefix.
 * All prompts have one length, so both CircuitLens and the PyTorch loop batch them in one tensor.
 * Tokens are drawn from [lo, vocab) (the demo vocabulary keeps ids 0 and 1 for <unk> and <pad>).
 */
export function inductionSuite(count: number, length: number, vocab: number, seed: number, lo = 2): ResolvedPrompt[] {
  const r = seededRandom(seed);
  return Array.from({ length: count }, (_, index) => {
    const P = 6 + Math.floor(r() * 5);
    const prefix: number[] = [];
    while (prefix.length < P) {
      const t = lo + Math.floor(r() * (vocab - lo));
      if (!prefix.includes(t)) prefix.push(t);
    }
    const ids = Array.from({ length }, (_, i) => prefix[i % P]!);
    const answer = prefix[length % P]!;
    const foil = prefix[(length + Math.floor(P / 2)) % P]!;
    return { index, text: ids.join(' '), ids, answer, foil, tags: ['task'] };
  });
}

/** What the PyTorch reference needs of a prompt. */
export function forTorch(prompts: ResolvedPrompt[]): { ids: number[]; answer: number; foil: number }[] {
  return prompts.map((p) => ({ ids: p.ids, answer: p.answer, foil: p.foil! }));
}
