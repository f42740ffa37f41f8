import * as path from 'node:path';
import * as vscode from 'vscode';
import { defaultCircuitName, markedCircuit } from '../../../core/analysis/records';
import { serializeCircuit } from '../../../core/formats/circuit';
import type { NodeId } from '../../../core/ids';
import { sha256File, writeFileAtomic } from '../../../core/nodejs/workspace';
import type { GraphState, GraphToHost, GraphToView } from '../../../protocol/graph';
import { saveTarget } from '../../save-target';
import type { State } from '../../state';
import { computeSetup, webviewHtml } from '../html';

export const GRAPH_VIEW = 'circuitlens.graph';

/** The attribution-graph panel (host side). One per suite×model; restored after reload by the serializer. */
export class GraphPanel {
  static current: GraphPanel | undefined;
  private disposables: vscode.Disposable[] = [];

  static show(state: State, graph: GraphState, onSaved: (file: string) => void): GraphPanel {
    // The same suite on the same model again: refresh the open panel instead of opening a twin.
    const open = GraphPanel.current;
    if (open && open.graph.suitePath === graph.suitePath && open.graph.modelPath === graph.modelPath && open.graph.diff?.baselinePath === graph.diff?.baselinePath) {
      open.graph = { ...graph, compute: open.graph.compute };
      open.panel.reveal();
      open.post({ t: 'state', state: open.graph });
      return open;
    }
    const panel = vscode.window.createWebviewPanel(GRAPH_VIEW, graph.title, vscode.ViewColumn.Active, GraphPanel.options(state, graph));
    return new GraphPanel(panel, state, graph, onSaved);
  }

  static options(state: State, graph: GraphState): vscode.WebviewPanelOptions & vscode.WebviewOptions {
    return {
      enableScripts: true,
      retainContextWhenHidden: true,
      localResourceRoots: [vscode.Uri.joinPath(state.context.extensionUri, 'dist'), vscode.Uri.joinPath(state.context.extensionUri, 'media'), vscode.Uri.file(path.dirname(graph.modelPath))],
    };
  }

  constructor(readonly panel: vscode.WebviewPanel, private readonly state: State, private graph: GraphState, private readonly onSaved: (file: string) => void) {
    GraphPanel.current = this;
    this.graph = { ...graph, compute: computeSetup(panel.webview, state.context.extensionUri, graph.modelPath) };
    panel.iconPath = vscode.Uri.joinPath(state.context.extensionUri, 'media', 'circuitlens.svg');
    panel.webview.html = webviewHtml(panel.webview, state.context.extensionUri, 'graph', graph.title);
    this.disposables.push(
      panel.webview.onDidReceiveMessage((m: GraphToHost) => this.onMessage(m)),
      panel.onDidChangeViewState(() => this.setContext()),
      panel.onDidDispose(() => this.dispose()),
    );
    this.setContext();
  }

  private post(m: GraphToView): void {
    void this.panel.webview.postMessage(m);
  }

  private setContext(): void {
    void vscode.commands.executeCommand('setContext', 'circuitlens.graphActive', this.panel.active);
  }

  get marked(): string[] {
    return this.graph.marked;
  }

  private async onMessage(m: GraphToHost): Promise<void> {
    switch (m.t) {
      case 'ready': this.post({ t: 'state', state: this.graph }); break;
      case 'marked': this.graph = { ...this.graph, marked: m.nodes }; break;
      case 'status': this.state.log.info(`graph view: ${m.message} (${m.backend})`); break;
      case 'error': this.state.log.error(`graph view: ${m.message}`); void vscode.window.showErrorMessage(`CircuitLens graph: ${m.message}`); break;
      case 'saveCircuit': await this.save(m.nodes, m.metrics); break;
    }
  }

  /** Writes the marked nodes as `<name>.circuit.json` beside the suite (atomically; never over an existing file
   *  without asking) and reports the path. */
  async save(nodes: string[], metrics: Record<string, unknown> = {}, name?: string): Promise<string | undefined> {
    if (nodes.length === 0) { void vscode.window.showWarningMessage('Mark some nodes first (click them, or box/lasso select).'); return undefined; }
    const chosen = name ?? (await vscode.window.showInputBox({ title: 'Save circuit', prompt: 'Circuit file name (saved beside the suite)', value: defaultCircuitName(this.graph.suitePath, this.graph.modelPath), validateInput: (v) => (/^[\w.-]+$/.test(v) ? undefined : 'letters, digits, . _ - only') }));
    if (!chosen) return undefined;
    const wanted = path.join(path.dirname(this.graph.suitePath), chosen.endsWith('.circuit.json') ? chosen : `${chosen}.circuit.json`);
    const file = await saveTarget(wanted, this.state.ws.display(wanted));
    if (!file) return undefined;
    const rel = (p: string) => path.relative(path.dirname(file), p).split(path.sep).join('/');
    const scores = Object.fromEntries(this.graph.nodes.filter((n) => n.id !== 'input' && n.id !== 'logits').map((n) => [n.id, n.score]));
    const circuit = markedCircuit(nodes as NodeId[], {
      name: file === wanted ? chosen : path.basename(file, '.circuit.json'), ablation: this.graph.ablation,
      model: { path: rel(this.graph.modelPath), sha256: await sha256File(this.graph.modelPath) }, suite: rel(this.graph.suitePath), scores, metrics, method: this.graph.method,
    });
    await writeFileAtomic(file, serializeCircuit(circuit));
    this.post({ t: 'saved', path: this.state.ws.display(file) });
    this.state.log.info(`saved circuit ${file}`);
    this.onSaved(file);
    return file;
  }

  dispose(): void {
    if (GraphPanel.current === this) GraphPanel.current = undefined;
    void vscode.commands.executeCommand('setContext', 'circuitlens.graphActive', false);
    this.disposables.forEach((d) => d.dispose());
    this.panel.dispose();
  }
}
