import * as vscode from 'vscode';
import type { State } from '../state';
import type { StateToView, ViewToHost } from '../../protocol/ipc';
import { webviewHtml, type ViewBundle } from './html';

/**
 * A view that draws one result the host computed (sweep, pruning curves, quantization sensitivity, redundancy and
 * relate): the host sends the state when the view is ready, the view saves it (setState) and draws it again after a
 * window reload.
 */
export interface ResultView<S extends { title: string }> {
  /** The webview panel type (also the serializer's key). */
  type: string;
  /** The webview bundle that draws it (dist/webview/<bundle>.js). */
  bundle: ViewBundle;
  /** How the view's errors are introduced in the log and the notification. */
  what: string;
  /** Whether a state saved by the view is one it can draw again. */
  restorable(saved: S | undefined): saved is S;
  /** One panel at a time: a new result is drawn in the open panel (retitled and revealed) instead of a new one. */
  reuse?: boolean;
}

/** A panel of a view that reuses one, and how it takes a new result. */
interface Reusable { panel: vscode.WebviewPanel; show(s: unknown): void }

/** The open panel of each view that reuses one, by view type. */
const reusable = new Map<string, Reusable>();

export function resultPanelOptions(state: State): vscode.WebviewPanelOptions & vscode.WebviewOptions {
  return {
    enableScripts: true,
    retainContextWhenHidden: true,
    localResourceRoots: [vscode.Uri.joinPath(state.context.extensionUri, 'dist'), vscode.Uri.joinPath(state.context.extensionUri, 'media')],
  };
}

/** Opens a panel drawing `s` (or, for a view that reuses one, draws `s` in the open panel). */
export function showResult<S extends { title: string }>(state: State, view: ResultView<S>, s: S): vscode.WebviewPanel {
  const open = view.reuse ? reusable.get(view.type) : undefined;
  if (open) { open.show(s); return open.panel; }
  const panel = vscode.window.createWebviewPanel(view.type, s.title, vscode.ViewColumn.Active, resultPanelOptions(state));
  attachResult(panel, state, view, s);
  return panel;
}

function attachResult<S extends { title: string }>(panel: vscode.WebviewPanel, state: State, view: ResultView<S>, first: S): void {
  let s = first;
  const post = () => void panel.webview.postMessage({ t: 'state', state: s } satisfies StateToView<S>);
  panel.iconPath = vscode.Uri.joinPath(state.context.extensionUri, 'media', 'circuitlens.svg');
  panel.webview.html = webviewHtml(panel.webview, state.context.extensionUri, view.bundle, s.title);
  const sub = panel.webview.onDidReceiveMessage((m: ViewToHost) => {
    if (m.t === 'ready') post();
    else if (m.t === 'error') { state.log.error(`${view.what} view: ${m.message}`); void vscode.window.showErrorMessage(`CircuitLens ${view.what}: ${m.message}`); }
  });
  const open: Reusable = { panel, show(next) { s = next as S; panel.title = s.title; panel.reveal(); post(); } };
  if (view.reuse) reusable.set(view.type, open);
  panel.onDidDispose(() => { sub.dispose(); if (reusable.get(view.type) === open) reusable.delete(view.type); });
}

/** Brings the view's panels back after a reload, from the state each saved. */
export function restoreResults<S extends { title: string }>(state: State, view: ResultView<S>): vscode.Disposable {
  return vscode.window.registerWebviewPanelSerializer(view.type, {
    async deserializeWebviewPanel(panel, saved: S | undefined) {
      if (!view.restorable(saved)) { panel.dispose(); return; }
      panel.webview.options = resultPanelOptions(state);
      attachResult(panel, state, view, saved);
    },
  });
}
