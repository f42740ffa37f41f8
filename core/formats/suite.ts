import suiteSchema from '../../schemas/suite.schema.json';
import type { AblationKind, MetricName } from '../vocabulary';
import type { Diagnostic } from './diagnostics';
import { compileSchema, SourceFile, type Path } from './source';

export const MAX_TEMPLATE_PROMPTS = 10_000;

/** One prompt as written (or expanded from a template), with where it came from. */
export interface SuitePrompt {
  text?: string;
  ids?: number[];
  answer: string | number;
  foil?: string | number;
  corrupted?: string | number[];
  tags: string[];
  /** Path of the prompt (or template) in the file, for diagnostics. */
  path: Path;
  fromTemplate: boolean;
}

export interface Suite {
  file: string;
  name: string;
  model?: string;
  metric: MetricName;
  ablation: AblationKind;
  prompts: SuitePrompt[];
  source: SourceFile;
}

export function parseSuite(file: string, text: string): { suite?: Suite; diagnostics: Diagnostic[] } {
  const src = new SourceFile(file, text);
  if (!src.ok || !src.validate(compileSchema(suiteSchema))) return { diagnostics: src.diagnostics };
  const v = src.value as {
    name: string; model?: string; metric?: MetricName; ablation?: AblationKind;
    prompts?: Omit<SuitePrompt, 'path' | 'fromTemplate' | 'tags'>[] & { tags?: string[] }[];
    templates?: { pattern: string; answer: string; foil?: string; corrupted?: string; variables: Record<string, string[]>; tags?: string[] }[];
  };
  const prompts: SuitePrompt[] = (v.prompts ?? []).map((p, i) => ({ ...(p as SuitePrompt), tags: (p as { tags?: string[] }).tags ?? [], path: ['prompts', i], fromTemplate: false }));
  (v.templates ?? []).forEach((t, i) => {
    const names = Object.keys(t.variables);
    const fields: ['pattern' | 'answer' | 'foil' | 'corrupted', string | undefined][] = [['pattern', t.pattern], ['answer', t.answer], ['foil', t.foil], ['corrupted', t.corrupted]];
    for (const [key, s] of fields) {
      for (const m of (s ?? '').matchAll(/\{(\w+)\}/g)) {
        if (!names.includes(m[1]!)) src.report(['templates', i, key], `placeholder {${m[1]}} has no entry under variables (variables: ${names.join(', ')})`);
      }
    }
    const count = names.reduce((n, k) => n * t.variables[k]!.length, 1);
    if (count > MAX_TEMPLATE_PROMPTS) {
      src.report(['templates', i, 'variables'], `template expands to ${count} prompts; the limit is ${MAX_TEMPLATE_PROMPTS}`);
      return;
    }
    for (const binding of product(names.map((k) => t.variables[k]!))) {
      const fill = (s: string) => s.replace(/\{(\w+)\}/g, (all, k: string) => (names.includes(k) ? binding[names.indexOf(k)]! : all));
      prompts.push({
        text: fill(t.pattern), answer: fill(t.answer), foil: t.foil !== undefined ? fill(t.foil) : undefined,
        corrupted: t.corrupted !== undefined ? fill(t.corrupted) : undefined, tags: t.tags ?? [], path: ['templates', i], fromTemplate: true,
      });
    }
  });
  if (prompts.length === 0) src.report([], 'the suite has no prompts');
  if (!src.ok) return { diagnostics: src.diagnostics };
  const suite: Suite = {
    file, name: v.name, model: v.model, metric: v.metric ?? 'logit_diff', ablation: v.ablation ?? 'mean', prompts, source: src,
  };
  if (suite.metric === 'logit_diff') {
    prompts.forEach((p) => { if (p.foil === undefined) src.report(p.path, 'metric logit_diff needs a foil for every prompt (or set metric: prob, accuracy or kl)'); });
  }
  if (suite.ablation === 'resample') {
    prompts.forEach((p) => { if (p.corrupted === undefined) src.report(p.path, 'ablation resample needs a corrupted counterpart for every prompt'); });
  }
  return src.ok ? { suite, diagnostics: src.diagnostics } : { diagnostics: src.diagnostics };
}

function* product(lists: string[][]): Generator<string[]> {
  if (lists.length === 0) { yield []; return; }
  const [first, ...rest] = lists;
  for (const x of first!) for (const tail of product(rest)) yield [x, ...tail];
}
