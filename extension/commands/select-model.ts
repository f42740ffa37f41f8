import * as path from 'node:path';
import * as vscode from 'vscode';
import { fileOf, MODELS, pick, withProgress, type Command, type Services } from './common';

/** Select Model: makes a model active and loads it (the status bar says what it is). */
export function selectModel({ state }: Services): Command {
  return async (arg) => {
    const m = fileOf(arg) ?? (await pick(state, MODELS, 'model', undefined));
    if (!m) return;
    await state.setActiveModel(m);
    const e = await withProgress(state, `loading ${path.basename(m)}`, () => state.engine(m));
    if (e) void vscode.window.setStatusBarMessage(`CircuitLens: ${path.basename(m)} — ${e.info.architecture}, ${e.info.layers} layers × ${e.info.heads} heads`, 5000);
  };
}
