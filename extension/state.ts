import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Engine } from '../core/engine/engine';
import { NodeWorkspace } from '../core/nodejs/workspace';
import { createRuntime } from '../core/nodejs/load';

const ACTIVE_MODEL_KEY = 'circuitlens.activeModel';

/**
 * What the extension knows across commands and views: the workspace's models, suites, circuits and canaries,
 * the active model, and one engine cache (onnxruntime-node on the host; reloaded when a model file changes).
 */
export class State implements vscode.Disposable {
  readonly ws: NodeWorkspace;
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;
  private disposables: vscode.Disposable[] = [];

  constructor(readonly context: vscode.ExtensionContext, readonly log: vscode.LogOutputChannel) {
    const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? process.cwd();
    this.ws = new NodeWorkspace(root, createRuntime('node'));
    const watcher = vscode.workspace.createFileSystemWatcher('**/*.{onnx,suite.yaml,circuit.json,canary.yaml}');
    this.disposables.push(watcher, watcher.onDidCreate(() => this.changed.fire()), watcher.onDidDelete(() => this.changed.fire()), watcher.onDidChange(() => this.changed.fire()), this.changed);
  }

  get trusted(): boolean {
    return vscode.workspace.isTrusted;
  }

  /** Refuses to run a model in an untrusted workspace (a model file is code-like input to a native runtime). */
  requireTrust(): void {
    if (!vscode.workspace.isTrusted) throw new TrustError();
  }

  get activeModel(): string | undefined {
    return this.context.workspaceState.get<string>(ACTIVE_MODEL_KEY);
  }

  async setActiveModel(p: string | undefined): Promise<void> {
    await this.context.workspaceState.update(ACTIVE_MODEL_KEY, p);
    await vscode.commands.executeCommand('setContext', 'circuitlens.hasModel', !!p);
    this.changed.fire();
  }

  async engine(modelPath: string): Promise<Engine> {
    this.requireTrust();
    return this.ws.loadEngine(modelPath);
  }

  async findFiles(glob: string): Promise<string[]> {
    const uris = await vscode.workspace.findFiles(glob, '{**/node_modules/**,**/.git/**,**/out/**,**/dist/**}');
    return uris.map((u) => u.fsPath).sort();
  }

  async models(): Promise<string[]> {
    const found = await this.findFiles('**/*.onnx');
    const configured = vscode.workspace.getConfiguration('circuitlens').get<string[]>('modelPaths', []);
    const root = this.ws.root;
    const extra = configured.map((p) => (path.isAbsolute(p) ? p : path.join(root, p)));
    return [...new Set([...found, ...extra])].filter((p) => !path.basename(p).startsWith('.circuitlens-'));
  }

  refresh(): void {
    this.changed.fire();
  }

  dispose(): void {
    this.disposables.forEach((d) => d.dispose());
    void this.ws.dispose();
  }
}

export class TrustError extends Error {
  constructor() {
    super('CircuitLens runs models only in trusted workspaces. Trust this workspace (Manage Workspace Trust) to run models and canaries.');
  }
}
