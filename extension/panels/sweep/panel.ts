import * as vscode from 'vscode';
import type { SweepState, SweepToHost, SweepToView } from '../../../protocol/sweep';
import type { State } from '../../state';
import { webviewHtml } from '../html';

export const SWEEP_VIEW = 'circuitlens.sweep';

/** The sweep panel: metric and accuracy against the swept variable, drawn from the state the host computed. */
export class SweepPanel {
  static show(state: State, s: SweepState): SweepPanel {
    const panel = vscode.window.createWebviewPanel(SWEEP_VIEW, s.title, vscode.ViewColumn.Active, SweepPanel.options(state));
    return new SweepPanel(panel, state, s);
  }

  static options(state: State): vscode.WebviewPanelOptions & vscode.WebviewOptions {
    return {
      enableScripts: true,
      retainContextWhenHidden: true,
      localResourceRoots: [vscode.Uri.joinPath(state.context.extensionUri, 'dist'), vscode.Uri.joinPath(state.context.extensionUri, 'media')],
    };
  }

  constructor(readonly panel: vscode.WebviewPanel, state: State, s: SweepState) {
    panel.iconPath = vscode.Uri.joinPath(state.context.extensionUri, 'media', 'circuitlens.svg');
    panel.webview.html = webviewHtml(panel.webview, state.context.extensionUri, 'sweep', s.title);
    const sub = panel.webview.onDidReceiveMessage((m: SweepToHost) => {
      if (m.t === 'ready') void panel.webview.postMessage({ t: 'state', state: s } satisfies SweepToView);
      else if (m.t === 'error') { state.log.error(`sweep view: ${m.message}`); void vscode.window.showErrorMessage(`CircuitLens sweep: ${m.message}`); }
    });
    panel.onDidDispose(() => sub.dispose());
  }
}
