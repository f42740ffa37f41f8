import * as vscode from 'vscode';
import { TrustError } from '../state';
import { fileOf, type Command, type Services } from './common';

/** Run Canaries: the given canary file, or all of them; results go to the Test Explorer, Problems and status bar. */
export function runCanaries({ state, canaries }: Services): Command {
  return async (arg) => {
    const f = fileOf(arg);
    const files = f ? [f] : await state.findFiles('**/*.canary.{yaml,yml}');
    if (!state.trusted) { void vscode.window.showWarningMessage(new TrustError().message); return; }
    const results = await canaries.runFiles(files);
    const failed = results.flatMap((r) => r.checks).filter((c) => c.status !== 'passed').length;
    const total = results.reduce((n, r) => n + r.checks.length, 0);
    void vscode.window.setStatusBarMessage(`CircuitLens canaries: ${total - failed} passed, ${failed} failed`, 8000);
  };
}

/** Refresh Explorer: re-reads the workspace's files and canaries. */
export function refresh({ state, canaries }: Services): Command {
  return async () => { state.refresh(); await canaries.discover(); };
}
