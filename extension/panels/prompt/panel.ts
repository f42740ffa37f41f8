import * as path from 'node:path';
import * as vscode from 'vscode';
import type { State } from '../../state';
import { computeSetup, webviewHtml } from '../html';
import type { StateToView } from '../../../protocol/ipc';
import type { PromptState, PromptToHost } from '../../../protocol/prompt';

export const ATTENTION_VIEW = 'circuitlens.attention';
export const LENS_VIEW = 'circuitlens.lens';

/** The attention and logit-lens panels: one prompt traced in the view's compute worker. */
export class PromptPanel {
  static show(state: State, s: PromptState): PromptPanel {
    const type = s.view === 'attention' ? ATTENTION_VIEW : LENS_VIEW;
    const title = `${s.view === 'attention' ? 'Attention' : 'Logit lens'}: ${s.text.slice(0, 30)}`;
    const panel = vscode.window.createWebviewPanel(type, title, vscode.ViewColumn.Active, PromptPanel.options(state, s));
    return new PromptPanel(panel, state, s);
  }

  static options(state: State, s: PromptState): vscode.WebviewPanelOptions & vscode.WebviewOptions {
    return {
      enableScripts: true,
      retainContextWhenHidden: true,
      localResourceRoots: [vscode.Uri.joinPath(state.context.extensionUri, 'dist'), vscode.Uri.joinPath(state.context.extensionUri, 'media'), vscode.Uri.file(path.dirname(s.modelPath))],
    };
  }

  constructor(readonly panel: vscode.WebviewPanel, state: State, private s: PromptState) {
    this.s = { ...s, compute: computeSetup(panel.webview, state.context.extensionUri, s.modelPath) };
    panel.iconPath = vscode.Uri.joinPath(state.context.extensionUri, 'media', 'circuitlens.svg');
    panel.webview.html = webviewHtml(panel.webview, state.context.extensionUri, s.view, panel.title);
    const sub = panel.webview.onDidReceiveMessage((m: PromptToHost) => {
      if (m.t === 'ready') void panel.webview.postMessage({ t: 'state', state: this.s } satisfies StateToView<PromptState>);
      else if (m.t === 'status') state.log.info(`${s.view} view: ${m.message} (${m.backend})`);
      else if (m.t === 'error') { state.log.error(`${s.view} view: ${m.message}`); void vscode.window.showErrorMessage(`CircuitLens ${s.view}: ${m.message}`); }
    });
    panel.onDidDispose(() => sub.dispose());
  }
}
