import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { UserError } from './errors';

/** A Hugging Face `tokenizer.json`, used without special tokens (prompts are raw text). */
export class Tokenizer {
  private readonly hf: HfTokenizer;

  constructor(json: unknown, readonly source = 'tokenizer.json') {
    try {
      this.hf = new HfTokenizer(json as object, {});
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
    return this.hf.encode(text, { add_special_tokens: false }).ids.map(Number);
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
