import type { Engine } from '../engine/engine';
import { UserError } from '../errors';
import type { Diagnostic } from '../formats/diagnostics';
import type { Suite } from '../formats/suite';

/** A suite prompt turned into token ids for one model. */
export interface ResolvedPrompt {
  index: number;
  text: string;
  ids: number[];
  answer: number;
  foil?: number;
  corruptedIds?: number[];
  tags: string[];
}

/**
 * Tokenizes a suite's prompts for a model and checks what only the model can tell: answers and foils are
 * single tokens, prompts fit the context, ids are in the vocabulary. Problems are reported at their lines.
 */
export function resolvePrompts(suite: Suite, engine: Engine): { prompts: ResolvedPrompt[]; diagnostics: Diagnostic[] } {
  const src = suite.source;
  const before = src.diagnostics.length;
  const tok = engine.tokenizer;
  const prompts: ResolvedPrompt[] = [];
  const reported = new Set<string>();
  const report = (path: (string | number)[], msg: string) => {
    const key = `${path.join('.')}|${msg}`;
    if (!reported.has(key)) { reported.add(key); src.report(path, msg); }
  };
  suite.prompts.forEach((p, index) => {
    const at = (field: string) => (p.fromTemplate ? [...p.path, field === 'text' ? 'pattern' : field] : [...p.path, field]);
    let ok = true;
    const tokenOf = (v: string | number, field: 'answer' | 'foil'): number | undefined => {
      if (typeof v === 'number') {
        if (v >= engine.info.vocab) { report(at(field), `${field} id ${v} is outside the vocabulary 0..${engine.info.vocab - 1}`); ok = false; }
        return v;
      }
      if (!tok) { report(at(field), `the model has no tokenizer.json, so ${field} must be a token id`); ok = false; return undefined; }
      try {
        return tok.singleToken(v, field);
      } catch (e) {
        report(at(field), (e as Error).message + (p.fromTemplate ? ` (in the prompt "${p.text}")` : ''));
        ok = false;
        return undefined;
      }
    };
    const idsOf = (text: string | number[] | undefined, field: string): number[] | undefined => {
      if (text === undefined) return undefined;
      if (Array.isArray(text)) return text;
      if (!tok) { report(at(field), `the model has no tokenizer.json; give token ids instead of text`); ok = false; return undefined; }
      return tok.encode(text);
    };
    const ids = p.ids ?? idsOf(p.text, 'text');
    const answer = tokenOf(p.answer, 'answer');
    const foil = p.foil === undefined ? undefined : tokenOf(p.foil, 'foil');
    const corruptedIds = idsOf(p.corrupted, 'corrupted');
    if (ids) {
      try {
        engine.checkIds(ids, p.fromTemplate ? `prompt "${p.text}"` : 'prompt');
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
        report(at(p.ids ? 'ids' : 'text'), e.message);
        ok = false;
      }
    }
    if (ids && corruptedIds && corruptedIds.length !== ids.length) {
      report(at('corrupted'), `corrupted prompt is ${corruptedIds.length} tokens but the prompt is ${ids.length}; resample ablation needs equal lengths`);
      ok = false;
    }
    if (ok && ids && answer !== undefined) {
      prompts.push({ index, text: p.text ?? (tok ? tok.decode(ids) : ids.join(',')), ids, answer, foil, corruptedIds, tags: p.tags });
    }
  });
  return { prompts, diagnostics: src.diagnostics.slice(before) };
}
