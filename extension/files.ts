import * as fs from 'node:fs';
import * as path from 'node:path';

/** A file's text, or '' when it cannot be read (views show what is there; parsers report what is wrong). */
export function readOr(f: string): string {
  try { return fs.readFileSync(f, 'utf8'); } catch { return ''; }
}

/** CircuitLens' two-part extensions, kept whole when a name gets a number (`x.circuit.json` → `x-2.circuit.json`). */
const COMPOUND = /\.(?:circuit|eap-ig|suite|canary)\.(?:json|ya?ml)$/;

/** `file` itself when nothing is there, else the first of `x-2.ext`, `x-3.ext`, … that does not exist. */
export function freshName(file: string, exists: (f: string) => boolean = fs.existsSync): string {
  if (!exists(file)) return file;
  const dir = path.dirname(file);
  const base = path.basename(file);
  const ext = COMPOUND.exec(base)?.[0] ?? path.extname(base);
  const stem = base.slice(0, base.length - ext.length);
  for (let n = 2; ; n++) {
    const f = path.join(dir, `${stem}-${n}${ext}`);
    if (!exists(f)) return f;
  }
}
