import * as vscode from 'vscode';
import { brokerStatus } from './broker';
import { CanaryController } from './canary/controller';
import { commandTable } from './commands';
import { State } from './state';
import { CircuitExplorer } from './views/explorer';
import type { GraphState } from '../protocol/graph';
import type { PromptState } from '../protocol/prompt';
import { GRAPH_VIEW, GraphPanel } from './panels/graph/panel';
import { SWEEP_VIEW } from './panels/sweep/panel';
import { PRUNE_VIEW } from './panels/prune/panel';
import { restoreResults } from './panels/result-panel';
import { SENSITIVITY_VIEW } from './panels/sensitivity/panel';
import { ATTENTION_VIEW, LENS_VIEW, PromptPanel } from './panels/prompt/panel';
import { RELATIONS_VIEW } from './panels/redundancy/panel';

export async function activate(context: vscode.ExtensionContext): Promise<{ services: unknown }> {
  const log = vscode.window.createOutputChannel('CircuitLens', { log: true });
  const state = new State(context, log);
  const explorer = new CircuitExplorer(state);
  const canaries = new CanaryController(state);
  context.subscriptions.push(log, state, canaries, canaries.onDidRunCanary((r) => explorer.setCanaryResult(r)), brokerStatus());
  context.subscriptions.push(vscode.window.createTreeView('circuitlens.explorer', { treeDataProvider: explorer, showCollapseAll: true }));
  const services = { state, explorer, canaries };
  for (const [id, run] of Object.entries(commandTable(services))) {
    context.subscriptions.push(vscode.commands.registerCommand(id, async (...args) => {
      try {
        return await run(...(args as Parameters<typeof run>));
      } catch (e) {
        log.error(`${id}: ${(e as Error).stack ?? e}`);
        void vscode.window.showErrorMessage(`CircuitLens: ${(e as Error).message}`);
        return undefined;
      }
    }));
  }
  const onSaved = () => state.refresh();
  // Panels come back after a reload from the state they saved (only UI state; compute restarts).
  context.subscriptions.push(
    vscode.window.registerWebviewPanelSerializer(GRAPH_VIEW, {
      async deserializeWebviewPanel(panel, saved: GraphState | undefined) {
        if (!saved?.nodes) { panel.dispose(); return; }
        panel.webview.options = GraphPanel.options(state, saved);
        new GraphPanel(panel, state, saved, onSaved);
      },
    }),
    restoreResults(state, SWEEP_VIEW), restoreResults(state, PRUNE_VIEW), restoreResults(state, SENSITIVITY_VIEW), restoreResults(state, RELATIONS_VIEW),
    ...[ATTENTION_VIEW, LENS_VIEW].map((type) => vscode.window.registerWebviewPanelSerializer(type, {
      async deserializeWebviewPanel(panel, saved: PromptState | undefined) {
        if (!saved?.ids) { panel.dispose(); return; }
        panel.webview.options = PromptPanel.options(state, saved);
        new PromptPanel(panel, state, saved);
      },
    })),
  );
  await vscode.commands.executeCommand('setContext', 'circuitlens.hasModel', !!state.activeModel);
  if (!vscode.workspace.isTrusted) {
    void vscode.window.showInformationMessage('CircuitLens: this workspace is not trusted, so no model runs. Trust it to trace, attribute and run canaries.', 'Manage Workspace Trust')
      .then((c) => { if (c) void vscode.commands.executeCommand('workbench.trust.manage'); });
  }
  void canaries.discover().then(() => {
    if (vscode.workspace.isTrusted && vscode.workspace.getConfiguration('circuitlens').get<boolean>('canaries.runOnOpen', true)) {
      return vscode.commands.executeCommand('circuitlens.runCanaries');
    }
    return undefined;
  });
  log.info('CircuitLens activated');
  return { services };
}

export function deactivate(): void {}
