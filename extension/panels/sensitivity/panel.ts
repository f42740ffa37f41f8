import * as vscode from 'vscode';
import type { SensitivityState, SensitivityToHost, SensitivityToView } from '../../../protocol/sensitivity';
import type { State } from '../../state';
import { webviewHtml } from '../html';

export const SENSITIVITY_VIEW = 'circuitlens.sensitivity';

/** The quantization-sensitivity panel: a table and bar charts per weight scope, drawn from the state the host computed. */
export class SensitivityPanel {
  static show(state: State, s: SensitivityState): SensitivityPanel {
    const panel = vscode.window.createWebviewPanel(SENSITIVITY_VIEW, s.title, vscode.ViewColumn.Active, {
      enableScripts: true,
      retainContextWhenHidden: true,
      localResourceRoots: [vscode.Uri.joinPath(state.context.extensionUri, 'dist'), vscode.Uri.joinPath(state.context.extensionUri, 'media')],
    });
    return new SensitivityPanel(panel, state, s);
  }

  constructor(readonly panel: vscode.WebviewPanel, state: State, s: SensitivityState) {
    panel.iconPath = vscode.Uri.joinPath(state.context.extensionUri, 'media', 'circuitlens.svg');
    panel.webview.html = webviewHtml(panel.webview, state.context.extensionUri, 'sensitivity', s.title);
    const sub = panel.webview.onDidReceiveMessage((m: SensitivityToHost) => {
      if (m.t === 'ready') void panel.webview.postMessage({ t: 'state', state: s } satisfies SensitivityToView);
      else if (m.t === 'error') { state.log.error(`sensitivity view: ${m.message}`); void vscode.window.showErrorMessage(`CircuitLens sensitivity: ${m.message}`); }
    });
    panel.onDidDispose(() => sub.dispose());
  }
}
