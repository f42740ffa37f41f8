import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { freshName } from './files';

/**
 * Where to write `file` without overwriting a user's file silently: `file` when nothing is there; otherwise a
 * modal asks whether to replace it, keep both (a fresh name beside it, `x-2.circuit.json`) or cancel (undefined).
 * Every command that writes a file goes through here.
 */
export async function saveTarget(file: string, shown: string = path.basename(file)): Promise<string | undefined> {
  if (!fs.existsSync(file)) return file;
  const fresh = freshName(file);
  const choice = await vscode.window.showWarningMessage(`${shown} already exists. Replace it?`,
    { modal: true, detail: `Keep both writes ${path.basename(fresh)} instead.` }, 'Replace', 'Keep both');
  if (choice === 'Replace') return file;
  if (choice === 'Keep both') return freshName(file);
  return undefined;
}
