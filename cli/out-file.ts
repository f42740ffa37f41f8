import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../core/errors';
import { writeFileAtomic } from '../core/nodejs/workspace';

/**
 * An output file named by --out (or canary's --output), resolved. Refused when the file exists and --force was not
 * given: nothing is overwritten silently (DESIGN §7). Commands call it before their work, so a long discovery does
 * not end in a refusal, and again through writeOutFile when they write.
 */
export function outFile(value: string, force: boolean | undefined): string {
  const abs = path.resolve(value);
  if (!force && fs.existsSync(abs)) {
    const rel = path.relative(process.cwd(), abs);
    const shown = rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : abs;
    throw new UserError(`${shown} exists; pass --force to replace it`);
  }
  return abs;
}

/** Writes an output file atomically (a temporary file renamed over it), refusing an existing one without --force. */
export async function writeOutFile(abs: string, content: string | Uint8Array, force: boolean | undefined): Promise<void> {
  outFile(abs, force);
  await writeFileAtomic(abs, content);
}
