import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { UserError } from './errors';

/** A Hugging Face `tokenizer.json`, used without special tokens (prompts are raw text). */
export class Tokenizer {
  private readonly hf: HfTokenizer;
  private readonly unkId?: number;

  constructor(json: unknown, readonly source = 'tokenizer.json') {
    try {
      this.hf = new HfTokenizer(json as object, {});
      const model = (json as { model?: { unk_token?: string; vocab?: Record<string, number> } }).model;
      const unk = model?.unk_token !== undefined && model.vocab && !Array.isArray(model.vocab) ? model.vocab[model.unk_token] : undefined;
      if (typeof unk === 'number') this.unkId = unk;
    } catch (e) {
      throw new UserError(`${source} is not a Hugging Face tokenizer.json: ${(e as Error).message}`);
    }
  }

  static parse(text: string, source = 'tokenizer.json'): Tokenizer {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new UserError(`${source} is not valid JSON: ${(e as Error).message}`);
    }
    return new Tokenizer(json, source);
  }

  encode(text: string): number[] {
    const enc = this.hf.encode(text, { add_special_tokens: false });
    // tokenizers.js leaves out-of-vocabulary words of a WordLevel model undefined instead of mapping them to unk.
    return enc.ids.map((id, i) => {
      if (id !== undefined && id !== null) return Number(id);
      if (this.unkId !== undefined) return this.unkId;
      throw new UserError(`${JSON.stringify(enc.tokens[i])} is not in the vocabulary of ${this.source} and it has no unknown token`);
    });
  }

  decode(ids: number[]): string {
    return this.hf.decode(ids, { skip_special_tokens: false });
  }

  /** The text of one token, as the tokenizer prints it. */
  tokenText(id: number): string {
    return this.decode([id]);
  }

  /** Encodes a string that must be exactly one token (answers, foils); the error says how it tokenizes. */
  singleToken(text: string, what = 'answer'): number {
    const ids = this.encode(text);
    if (ids.length !== 1) {
      const parts = ids.map((i) => JSON.stringify(this.tokenText(i))).join(' + ');
      throw new UserError(`${what} ${JSON.stringify(text)} is ${ids.length} tokens (${parts || 'nothing'}); it must be a single token`);
    }
    return ids[0]!;
  }
}
