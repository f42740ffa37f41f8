import * as vscode from 'vscode';
import type { PruneState, PruneToHost, PruneToView } from '../../../protocol/prune';
import type { State } from '../../state';
import { webviewHtml } from '../html';

export const PRUNE_VIEW = 'circuitlens.prune';

/** The pruning panel: metric and accuracy against sparsity per strategy, drawn from the state the host computed. */
export class PrunePanel {
  static show(state: State, s: PruneState): PrunePanel {
    const panel = vscode.window.createWebviewPanel(PRUNE_VIEW, s.title, vscode.ViewColumn.Active, PrunePanel.options(state));
    return new PrunePanel(panel, state, s);
  }

  static options(state: State): vscode.WebviewPanelOptions & vscode.WebviewOptions {
    return {
      enableScripts: true,
      retainContextWhenHidden: true,
      localResourceRoots: [vscode.Uri.joinPath(state.context.extensionUri, 'dist'), vscode.Uri.joinPath(state.context.extensionUri, 'media')],
    };
  }

  constructor(readonly panel: vscode.WebviewPanel, state: State, s: PruneState) {
    panel.iconPath = vscode.Uri.joinPath(state.context.extensionUri, 'media', 'circuitlens.svg');
    panel.webview.html = webviewHtml(panel.webview, state.context.extensionUri, 'prune', s.title);
    const sub = panel.webview.onDidReceiveMessage((m: PruneToHost) => {
      if (m.t === 'ready') void panel.webview.postMessage({ t: 'state', state: s } satisfies PruneToView);
      else if (m.t === 'error') { state.log.error(`prune view: ${m.message}`); void vscode.window.showErrorMessage(`CircuitLens pruning: ${m.message}`); }
    });
    panel.onDidDispose(() => sub.dispose());
  }
}
