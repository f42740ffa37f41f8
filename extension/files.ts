import * as fs from 'node:fs';

/** A file's text, or '' when it cannot be read (views show what is there; parsers report what is wrong). */
export function readOr(f: string): string {
  try { return fs.readFileSync(f, 'utf8'); } catch { return ''; }
}
