// What the commands share: how they find their file (argument, editor, the only one, or a quick pick), the model
// and suite they run on, how they show file problems, and long work under a cancellable progress notification.
import * as path from 'node:path';
import * as fs from 'node:fs';
import * as vscode from 'vscode';
import { openSuite, type OpenedSuite } from '../../core/analysis/open-suite';
import { describeProgress, type ProgressSink } from '../../core/analysis/progress';
import { Cancelled, isUserError } from '../../core/errors';
import { parseCircuit, type Circuit } from '../../core/formats/circuit';
import type { Diagnostic } from '../../core/formats/diagnostics';
import { parseSuite, type Suite } from '../../core/formats/suite';
import type { AblationKind } from '../../core/vocabulary';
import type { CanaryController } from '../canary/controller';
import { readOr } from '../files';
import type { State } from '../state';
import { TrustError } from '../state';
import type { CircuitExplorer, ExplorerItem } from '../views/explorer';

export interface Services { state: State; explorer: CircuitExplorer; canaries: CanaryController }

/** What a command is called with: an explorer row, a file (URI or path), or nothing (the palette). */
export type Arg = ExplorerItem | vscode.Uri | string | undefined;

export type Command = (...args: Arg[]) => Promise<unknown>;

export const SUITES = '**/*.suite.{yaml,yml}';
export const CIRCUITS = '**/*.circuit.json';
export const MODELS = '**/*.onnx';

export const fileOf = (arg: Arg): string | undefined => (typeof arg === 'string' ? arg : arg instanceof vscode.Uri ? arg.fsPath : arg?.file);

/** The file a command works on: the one it was given, the one open in the editor, the only one, or a quick pick. */
export async function pick(state: State, glob: string, what: string, arg: Arg): Promise<string | undefined> {
  const given = fileOf(arg);
  if (given) return given;
  const editor = vscode.window.activeTextEditor?.document.uri.fsPath;
  const files = await state.findFiles(glob);
  if (editor && files.includes(editor)) return editor;
  if (files.length === 1) return files[0];
  if (files.length === 0) { void vscode.window.showWarningMessage(`No ${what} in this workspace.`); return undefined; }
  const choice = await vscode.window.showQuickPick(files.map((f) => ({ label: path.basename(f), description: state.ws.display(f), file: f })), { title: `CircuitLens: pick a ${what}` });
  return choice?.file;
}

/** The active suite without asking: the one open in the editor, else the first in the workspace. */
export async function activeSuite(state: State): Promise<string | undefined> {
  const editor = vscode.window.activeTextEditor?.document.uri.fsPath;
  const files = await state.findFiles(SUITES);
  return editor && files.includes(editor) ? editor : files[0];
}

/** The model to run: the active one, else the suite's, else one picked (which becomes active). */
export async function modelFor(state: State, suite?: Suite): Promise<string | undefined> {
  if (state.activeModel && fs.existsSync(state.activeModel)) return state.activeModel;
  if (suite?.model) return state.ws.resolve(suite.file, suite.model);
  const m = await pick(state, MODELS, 'model', undefined);
  if (m) await state.setActiveModel(m);
  return m;
}

/**
 * An optional circuit, for commands that measure one if given (Pruning Curves, Quantization Sensitivity): picked
 * among the workspace's circuit files, or "No circuit" (`{}`); none in the workspace: `{}` without asking.
 * Undefined when the pick is dismissed or the file has problems (shown).
 */
export async function pickOptionalCircuit(state: State, title: string, withoutIt: string): Promise<{ chosen?: { file: string; circuit: Circuit } } | undefined> {
  const files = await state.findFiles(CIRCUITS);
  if (!files.length) return {};
  const none = { label: 'No circuit', description: withoutIt, file: '' };
  const c = await vscode.window.showQuickPick([...files.map((f) => ({ label: path.basename(f), description: state.ws.display(f), file: f })), none], { title: `CircuitLens: ${title}` });
  if (!c) return undefined;
  if (!c.file) return {};
  const parsed = parseCircuit(c.file, readOr(c.file));
  if (!parsed.circuit) { showProblems(state, parsed.diagnostics); return undefined; }
  return { chosen: { file: c.file, circuit: parsed.circuit } };
}

/** Shows file problems: the first opens at its line, all are logged. */
export function showProblems(state: State, ds: Diagnostic[]): void {
  for (const d of ds) state.log.error(`${state.ws.display(d.file)}:${d.line}:${d.col}: ${d.message}`);
  const first = ds.find((d) => d.severity === 'error');
  if (!first) return;
  void vscode.window.showErrorMessage(`${state.ws.display(first.file)}:${first.line}: ${first.message}`, 'Open').then((c) => {
    if (c) void vscode.window.showTextDocument(vscode.Uri.file(first.file), { selection: new vscode.Range(first.line - 1, first.col - 1, first.line - 1, first.col - 1) });
  });
}

/** A suite opened on its model (core/analysis/open-suite.ts: the same task/control split as the CLI's). */
export interface Loaded extends OpenedSuite { modelPath: string }

/** The suite on the model to run; problems in its file or prompts are shown at their lines (undefined then). */
export async function loadSuite(state: State, suitePath: string, ablation?: AblationKind): Promise<Loaded | undefined> {
  const { suite, diagnostics } = parseSuite(suitePath, fs.readFileSync(suitePath, 'utf8'));
  if (!suite) { showProblems(state, diagnostics); return undefined; }
  const modelPath = await modelFor(state, suite);
  if (!modelPath) return undefined;
  const r = openSuite(suite, await state.engine(modelPath), ablation);
  if (!r.opened) { showProblems(state, r.diagnostics); return undefined; }
  return { ...r.opened, modelPath };
}

/**
 * Long work: a cancellable notification with progress — messages, and the rows of batched work (rate and time left)
 * through `rows`, the sink analyses report to; errors a user can fix are shown, others logged.
 */
export async function withProgress<T>(state: State, title: string, work: (signal: AbortSignal, report: (m: string) => void, rows: ProgressSink) => Promise<T>): Promise<T | undefined> {
  return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `CircuitLens: ${title}`, cancellable: true }, async (progress, token) => {
    const abort = new AbortController();
    const sub = token.onCancellationRequested(() => abort.abort());
    const t0 = Date.now();
    try {
      let shownAt = 0;
      const rows: ProgressSink = (e) => {
        // A notification redraw per engine call would flood the UI: a few per second, and every phase's end.
        if (e.done < e.total && e.done > 0 && Date.now() - shownAt < 250) return;
        shownAt = Date.now();
        progress.report({ message: describeProgress(e) });
      };
      const r = await work(abort.signal, (message) => progress.report({ message }), rows);
      state.log.info(`${title}: done in ${Date.now() - t0} ms`);
      return r;
    } catch (e) {
      if (e instanceof Cancelled) { state.log.info(`${title}: cancelled`); return undefined; }
      if (e instanceof TrustError || isUserError(e)) { void vscode.window.showErrorMessage(`CircuitLens: ${(e as Error).message}`); state.log.warn(`${title}: ${(e as Error).message}`); return undefined; }
      state.log.error(`${title}: ${(e as Error).stack ?? e}`);
      void vscode.window.showErrorMessage(`CircuitLens: ${title} failed: ${(e as Error).message}`);
      return undefined;
    } finally {
      sub.dispose();
    }
  });
}

/** A number as the notifications show it (3 decimals). */
export const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : String(x));
