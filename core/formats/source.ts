import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import type { Diagnostic } from './diagnostics';

export type Path = (string | number)[];

/**
 * A YAML (or JSON, which is YAML) file parsed with its source positions, so that every problem can be
 * reported at its own line and column.
 */
export class SourceFile {
  readonly diagnostics: Diagnostic[] = [];
  readonly value: unknown;
  private readonly lines = new LineCounter();
  private readonly doc: Document.Parsed;

  constructor(readonly file: string, readonly text: string) {
    this.doc = parseDocument(text, { lineCounter: this.lines, prettyErrors: false, uniqueKeys: true });
    for (const e of this.doc.errors) {
      let offset = e.pos[0];
      let message = e.message.split('\n')[0]!;
      // The parser notices a missing closing quote where the file ends; point at the quote that was opened.
      const q = /Missing closing "?(quote|')/.exec(message) ? unclosedQuote(text, offset) : undefined;
      if (q !== undefined) { offset = q; message = 'unclosed quote: the string that starts here never ends'; }
      const [line, col] = this.pos(offset);
      this.diagnostics.push({ file, line, col, severity: 'error', message: `YAML syntax: ${message}` });
    }
    let value: unknown;
    try {
      value = this.doc.errors.length ? undefined : this.doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      this.diagnostics.push({ file, line: 1, col: 1, severity: 'error', message: `YAML: ${(e as Error).message}` });
    }
    this.value = value;
  }

  get ok(): boolean {
    return !this.diagnostics.some((d) => d.severity === 'error');
  }

  private pos(offset: number): [number, number] {
    const p = this.lines.linePos(Math.max(0, Math.min(offset, this.text.length)));
    return [p.line, p.col];
  }

  /** The node at a path; with `key`, the key node of the last segment (to point at an unknown key). */
  private nodeAt(path: Path, key = false): YamlNode | undefined {
    let node: unknown = this.doc.contents;
    for (let i = 0; i < path.length; i++) {
      const seg = path[i]!;
      if (isMap(node)) {
        const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
        if (!pair) return node as YamlNode;
        if (key && i === path.length - 1) return pair.key as YamlNode;
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg];
        if (item === undefined) return node as YamlNode;
        node = item;
      } else return node as YamlNode | undefined;
    }
    return node as YamlNode | undefined;
  }

  /** 1-based position of the value (or key) at a path; the nearest existing parent when it is absent. */
  locate(path: Path, key = false): { line: number; col: number; endLine: number; endCol: number } {
    const n = this.nodeAt(path, key) ?? (this.doc.contents as YamlNode | null) ?? undefined;
    const range = n?.range ?? [0, 0, 0];
    const [line, col] = this.pos(range[0]);
    const [endLine, endCol] = this.pos(range[1]);
    return { line, col, endLine, endCol };
  }

  report(path: Path, message: string, severity: Diagnostic['severity'] = 'error', key = false): void {
    this.diagnostics.push({ file: this.file, ...this.locate(path, key), severity, message });
  }

  /** Validates against a JSON Schema, reporting each problem at its own line with a message a person can act on. */
  validate(validator: ValidateFunction): boolean {
    if (this.value === undefined) return false;
    if (validator(this.value)) return true;
    const start = this.diagnostics.length;
    this.reportSchemaErrors(validator);
    const added = this.diagnostics.splice(start).sort((a, b) => a.line - b.line || a.col - b.col);
    this.diagnostics.push(...added);
    return false;
  }

  private reportSchemaErrors(validator: ValidateFunction): void {
    for (const e of simplify(validator.errors ?? [])) {
      const path = pointerToPath(e.instancePath);
      if (e.keyword === 'additionalProperties') {
        const k = (e.params as { additionalProperty: string }).additionalProperty;
        const allowed = Object.keys((e.parentSchema as { properties?: object }).properties ?? {});
        this.report([...path, k], `unknown key "${k}"${allowed.length ? ` (expected one of: ${allowed.join(', ')})` : ''}`, 'error', true);
      } else if (e.keyword === 'required') {
        this.report(path, `missing required key "${(e.params as { missingProperty: string }).missingProperty}"`);
      } else if (e.keyword === 'enum') {
        this.report(path, `${describe(path)} must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`);
      } else if (e.keyword === 'pattern') {
        this.report(path, `${describe(path)} ${JSON.stringify(getIn(this.value, path))} is malformed${(e.parentSchema as { description?: string })?.description ? ` (${(e.parentSchema as { description: string }).description})` : ''}`);
      } else if (e.keyword === 'oneOf' && e.schemaPath.endsWith('/oneOf') && (e.parentSchema as { oneOf?: { required?: string[] }[] }).oneOf?.every((s) => s.required)) {
        const alts = (e.parentSchema as { oneOf: { required: string[] }[] }).oneOf.map((s) => s.required.join('+'));
        this.report(path, `${describe(path)} needs exactly one of: ${alts.join(', ')}`);
      } else if (e.keyword === 'anyOf' && (e.parentSchema as { anyOf?: { required?: string[] }[] }).anyOf?.every((s) => s.required)) {
        const alts = (e.parentSchema as { anyOf: { required: string[] }[] }).anyOf.map((s) => s.required.join('+'));
        this.report(path, `${describe(path)} needs at least one of: ${alts.join(', ')}`);
      } else {
        this.report(path, `${describe(path)} ${e.message ?? 'is invalid'}`);
      }
    }
  }
}

/** Offset of the last quote before `end` that opens a string left unclosed on its line. */
function unclosedQuote(text: string, end: number): number | undefined {
  let lineStart = 0;
  let found: number | undefined;
  for (const line of text.slice(0, end).split('\n')) {
    const m = /^[^#"']*?(["'])/.exec(line);
    if (m) {
      const quote = m[1]!;
      const first = line.indexOf(quote);
      const count = line.split(quote).length - 1;
      if (count % 2 === 1) found = lineStart + first;
    }
    lineStart += line.length + 1;
  }
  return found;
}

/** Drops errors implied by a more specific one at the same place (ajv reports every failed branch of a oneOf). */
function simplify(errors: ErrorObject[]): ErrorObject[] {
  const specific = errors.filter((e) => !['oneOf', 'anyOf', 'if'].includes(e.keyword));
  const out: ErrorObject[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    // A oneOf's branch errors ("must be string", "must be integer") are noise when the oneOf itself explains.
    if (['type', 'minLength'].includes(e.keyword) && errors.some((o) => o.keyword === 'oneOf' && o.instancePath === e.instancePath)) {
      const o = errors.find((x) => x.keyword === 'oneOf' && x.instancePath === e.instancePath)!;
      const key = `${o.instancePath}|oneOf`;
      if (!seen.has(key)) { seen.add(key); out.push({ ...o, message: typeMessage(o) }); }
      continue;
    }
    if ((e.keyword === 'oneOf' || e.keyword === 'anyOf') && specific.some((s) => s.instancePath.startsWith(e.instancePath) && s.instancePath !== e.instancePath)) continue;
    if (e.keyword === 'required' && (e.schemaPath.includes('/oneOf/') || e.schemaPath.includes('/anyOf/'))) continue;
    const key = `${e.instancePath}|${e.keyword}|${JSON.stringify(e.params)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(e);
  }
  return out;
}

function typeMessage(o: ErrorObject): string {
  const alts = ((o.parentSchema as { oneOf?: { type?: string }[] }).oneOf ?? []).map((s) => s.type).filter(Boolean);
  return alts.length ? `must be a ${alts.join(' or a ')}` : 'is invalid';
}

function pointerToPath(ptr: string): Path {
  if (!ptr) return [];
  return ptr.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~')).map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function describe(path: Path): string {
  if (path.length === 0) return 'the file';
  return path.map((p) => (typeof p === 'number' ? `[${p + 1}]` : `.${p}`)).join('').replace(/^\./, '');
}

export function getIn(value: unknown, path: Path): unknown {
  let v = value;
  for (const p of path) v = (v as Record<string | number, unknown> | undefined)?.[p];
  return v;
}

const ajv = new Ajv({ allErrors: true, strict: false, verbose: true });
const compiled = new Map<object, ValidateFunction>();
export function compileSchema(schema: object): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) {
    v = ajv.compile(schema);
    compiled.set(schema, v);
  }
  return v;
}
