import suiteSchema from '../../schemas/suite.schema.json';
import type { AblationKind, MetricName } from '../vocabulary';
import type { Diagnostic } from './diagnostics';
import { compileSchema, SourceFile, type Path } from './source';
import { fill, placeholders, repeatCount } from './template';

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
  /** Swept variables and their values (`sweep: {n: [0, 2, 4]}`); prompts carry their value as the tag `n=4`. */
  sweep?: Record<string, number[]>;
  source: SourceFile;
}

/** The tag that records a prompt's value of a swept variable. */
export const sweepTag = (variable: string, value: number): string => `${variable}=${value}`;

/** A prompt's value of a swept variable, from its `VAR=value` tag (undefined when it has none). */
export function sweepValueOf(tags: readonly string[], variable: string): number | undefined {
  const t = tags.find((x) => x.startsWith(`${variable}=`));
  if (t === undefined) return undefined;
  const v = Number(t.slice(variable.length + 1));
  return Number.isFinite(v) ? v : undefined;
}

export function parseSuite(file: string, text: string): { suite?: Suite; diagnostics: Diagnostic[] } {
  const src = new SourceFile(file, text);
  if (!src.ok || !src.validate(compileSchema(suiteSchema))) return { diagnostics: src.diagnostics };
  const v = src.value as {
    name: string; model?: string; metric?: MetricName; ablation?: AblationKind;
    prompts?: Omit<SuitePrompt, 'path' | 'fromTemplate' | 'tags'>[] & { tags?: string[] }[];
    templates?: { pattern: string; answer: string; foil?: string; corrupted?: string; variables?: Record<string, string[]>; tags?: string[] }[];
    sweep?: Record<string, number[]>;
  };
  const sweep = v.sweep ?? {};
  const swept = Object.keys(sweep);
  const prompts: SuitePrompt[] = (v.prompts ?? []).map((p, i) => ({ ...(p as SuitePrompt), tags: (p as { tags?: string[] }).tags ?? [], path: ['prompts', i], fromTemplate: false }));
  (v.prompts ?? []).forEach((p, i) => (p as { tags?: string[] }).tags?.forEach((tag, j) => {
    const k = swept.find((x) => tag.startsWith(`${x}=`));
    if (k !== undefined && sweepValueOf([tag], k) === undefined) src.report(['prompts', i, 'tags', j], `tag "${tag}" gives the swept variable ${k} a value that is not a number`);
  }));
  (v.templates ?? []).forEach((t, i) => {
    const variables = t.variables ?? {};
    const names = Object.keys(variables);
    for (const k of names.filter((x) => swept.includes(x))) src.report(['templates', i, 'variables', k], `${k} is a swept variable (under sweep:); a template cannot give it values too`, 'error', true);
    const fields: ['pattern' | 'answer' | 'foil' | 'corrupted', string | undefined][] = [['pattern', t.pattern], ['answer', t.answer], ['foil', t.foil], ['corrupted', t.corrupted]];
    const used = new Set<string>();
    let malformed = false;
    for (const [key, s] of fields) {
      const { found, error } = placeholders(s ?? '');
      if (error) { src.report(['templates', i, key], error); malformed = true; }
      for (const ph of found) {
        if (swept.includes(ph.name)) used.add(ph.name);
        else if (!names.includes(ph.name)) src.report(['templates', i, key], `placeholder {${ph.name}} has no entry under variables${swept.length ? ' or sweep' : ''} (variables: ${names.join(', ') || 'none'}${swept.length ? `; sweep: ${swept.join(', ')}` : ''})`);
        else if (ph.kind === 'repeat') {
          const bad = variables[ph.name]!.map((x) => repeatCount(x).error).find(Boolean);
          if (bad) src.report(['templates', i, 'variables', ph.name], `${bad} (in ${key}'s repeat(${ph.name}, ...))`);
        }
      }
    }
    // A template expands over its variables and over the swept variables it uses, each prompt tagged with its sweep values.
    const sweptHere = swept.filter((k) => used.has(k));
    const lists = [...names.map((k) => variables[k]!), ...sweptHere.map((k) => sweep[k]!.map(String))];
    const count = lists.reduce((n, l) => n * l.length, 1);
    if (count > MAX_TEMPLATE_PROMPTS) {
      src.report(['templates', i, sweptHere.length ? 'pattern' : 'variables'], `template expands to ${count} prompts; the limit is ${MAX_TEMPLATE_PROMPTS}`);
      return;
    }
    if (names.length === 0 && sweptHere.length === 0 && t.variables === undefined && !malformed) {
      src.report(['templates', i], 'a template needs variables: (or a swept variable from sweep: in its pattern)');
      return;
    }
    if (!src.ok) return;
    const keys = [...names, ...sweptHere];
    for (const values of product(lists)) {
      const binding = Object.fromEntries(keys.map((k, j) => [k, values[j]!]));
      const sweepTags = sweptHere.map((k) => sweepTag(k, Number(binding[k])));
      const at = (s: string | undefined) => (s === undefined ? undefined : fill(s, binding));
      prompts.push({
        text: at(t.pattern), answer: at(t.answer)!, foil: at(t.foil), corrupted: at(t.corrupted),
        tags: [...(t.tags ?? []), ...sweepTags], path: ['templates', i], fromTemplate: true,
      });
    }
  });
  if (prompts.length === 0) src.report([], 'the suite has no prompts');
  if (!src.ok) return { diagnostics: src.diagnostics };
  const suite: Suite = {
    file, name: v.name, model: v.model, metric: v.metric ?? 'logit_diff', ablation: v.ablation ?? 'mean', prompts, source: src,
    ...(swept.length ? { sweep } : {}),
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
