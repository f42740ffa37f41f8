import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { runCanary, type CanaryResult, type CheckResult } from '../../core/analysis/verify/canary';
import { canaryFileRefs, parseCanary } from '../../core/formats/canary';
import { parseCircuit } from '../../core/formats/circuit';
import type { Diagnostic } from '../../core/formats/diagnostics';
import type { State } from '../state';
import { readOr } from '../files';

/**
 * Canaries as tests: one test item per canary file and per check, results in the Test Explorer and the
 * gutter, failures as diagnostics at the check's line, re-run (debounced, cancellable) when a canary, its
 * suite, a circuit or the model changes on disk.
 */
export class CanaryController implements vscode.Disposable {
  readonly controller = vscode.tests.createTestController('circuitlens.canaries', 'CircuitLens Canaries');
  readonly diagnostics = vscode.languages.createDiagnosticCollection('circuitlens');
  private readonly status = vscode.window.createStatusBarItem('circuitlens.canaries', vscode.StatusBarAlignment.Left, 50);
  private readonly results = new Map<string, CanaryResult>();
  private readonly resultEmitter = new vscode.EventEmitter<CanaryResult>();
  readonly onDidRunCanary = this.resultEmitter.event;
  private disposables: vscode.Disposable[] = [];
  private pending = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private inflight: vscode.CancellationTokenSource | undefined;

  constructor(private readonly state: State) {
    this.status.name = 'CircuitLens canaries';
    this.status.command = 'circuitlens.runCanaries';
    this.controller.resolveHandler = async () => { await this.discover(); };
    this.controller.refreshHandler = async () => { await this.discover(); };
    this.controller.createRunProfile('Run canaries', vscode.TestRunProfileKind.Run, (req, token) => this.runRequest(req, token), true);
    const watcher = vscode.workspace.createFileSystemWatcher('**/*.{canary.yaml,canary.yml,suite.yaml,suite.yml,circuit.json,onnx}');
    const onChange = (uri: vscode.Uri) => this.fileChanged(uri.fsPath);
    this.disposables.push(this.controller, this.diagnostics, this.status, watcher, this.resultEmitter,
      watcher.onDidChange(onChange), watcher.onDidCreate(onChange), watcher.onDidDelete(onChange),
      vscode.workspace.onDidGrantWorkspaceTrust(() => { this.updateStatus(); void this.runFiles([...this.items().keys()]); }));
    this.updateStatus();
  }

  /** Canary files of the workspace as test items (children: their checks at their lines). */
  async discover(): Promise<void> {
    const files = await this.state.findFiles('**/*.canary.{yaml,yml}');
    const keep = new Set(files);
    this.controller.items.forEach((item) => { if (!keep.has(item.uri!.fsPath)) this.controller.items.delete(item.id); });
    for (const f of files) this.itemFor(f);
  }

  private itemFor(file: string): vscode.TestItem {
    const uri = vscode.Uri.file(file);
    let item = this.controller.items.get(file);
    if (!item) {
      item = this.controller.createTestItem(file, path.basename(file), uri);
      this.controller.items.add(item);
    }
    const { canary, diagnostics } = parseCanary(file, readOr(file));
    item.error = canary ? undefined : diagnostics.map((d) => `${d.line}:${d.col} ${d.message}`).join('\n');
    const children: vscode.TestItem[] = [];
    for (const c of canary?.checks ?? []) {
      const child = this.controller.createTestItem(`${file}#${c.index}`, c.name, uri);
      child.range = new vscode.Range(c.line - 1, c.col - 1, c.line - 1, c.col - 1 + 6);
      children.push(child);
    }
    item.children.replace(children);
    if (!canary) this.showDiagnostics(file, diagnostics);
    return item;
  }

  private items(): Map<string, vscode.TestItem> {
    const m = new Map<string, vscode.TestItem>();
    this.controller.items.forEach((i) => m.set(i.id, i));
    return m;
  }

  private async runRequest(req: vscode.TestRunRequest, token: vscode.CancellationToken): Promise<void> {
    await this.discover();
    const files = new Set<string>();
    if (req.include) for (const i of req.include) files.add(i.id.split('#')[0]!);
    else this.controller.items.forEach((i) => files.add(i.id));
    await this.execute(req, [...files], token);
  }

  /** Runs canary files in one Test Explorer run. */
  async runFiles(files: string[]): Promise<CanaryResult[]> {
    await this.discover();
    this.inflight?.cancel();
    const cts = new vscode.CancellationTokenSource();
    this.inflight = cts;
    const items = files.map((f) => this.itemFor(f));
    try {
      return await this.execute(new vscode.TestRunRequest(items), files, cts.token);
    } finally {
      if (this.inflight === cts) this.inflight = undefined;
      cts.dispose();
    }
  }

  private async execute(req: vscode.TestRunRequest, files: string[], token: vscode.CancellationToken): Promise<CanaryResult[]> {
    const run = this.controller.createTestRun(req, 'CircuitLens canaries', true);
    const out: CanaryResult[] = [];
    const abort = new AbortController();
    const sub = token.onCancellationRequested(() => abort.abort());
    try {
      for (const file of files) {
        const item = this.itemFor(file);
        if (!this.state.trusted) {
          run.errored(item, new vscode.TestMessage('CircuitLens runs models only in trusted workspaces.'));
          continue;
        }
        item.children.forEach((c) => run.started(c));
        run.started(item);
        const t0 = Date.now();
        let result: CanaryResult;
        try {
          result = await runCanary(this.state.ws, file, { signal: abort.signal });
        } catch (e) {
          run.errored(item, new vscode.TestMessage((e as Error).message));
          this.state.log.error(`canary ${file}: ${(e as Error).stack ?? e}`);
          continue;
        }
        for (const c of result.checks) this.report(run, item, file, c);
        if (result.checks.length === 0) run.errored(item, new vscode.TestMessage(result.diagnostics.map((d) => `${this.state.ws.display(d.file)}:${d.line}:${d.col} ${d.message}`).join('\n') || 'no checks ran'));
        else if (result.checks.every((c) => c.status === 'passed')) run.passed(item, Date.now() - t0);
        else run.failed(item, new vscode.TestMessage(`${result.checks.filter((c) => c.status !== 'passed').length} of ${result.checks.length} checks did not pass`), Date.now() - t0);
        this.results.set(file, result);
        this.showDiagnostics(file, result.diagnostics);
        this.state.log.info(`canary ${this.state.ws.display(file)}: ${result.checks.map((c) => `${c.status} "${c.name}"`).join(', ')} (${result.durationMs} ms)`);
        this.resultEmitter.fire(result);
        out.push(result);
        if (token.isCancellationRequested) break;
      }
    } finally {
      sub.dispose();
      run.end();
      this.updateStatus();
    }
    return out;
  }

  private report(run: vscode.TestRun, parent: vscode.TestItem, file: string, c: CheckResult): void {
    const item = parent.children.get(`${file}#${c.index}`);
    if (!item) return;
    const msg = new vscode.TestMessage(c.message);
    msg.location = new vscode.Location(vscode.Uri.file(file), new vscode.Position(c.line - 1, c.col - 1));
    if (typeof c.actual === 'number') { msg.expectedOutput = c.expected; msg.actualOutput = String(c.actual); }
    if (c.status === 'passed') run.passed(item, c.durationMs);
    else if (c.status === 'failed') run.failed(item, msg, c.durationMs);
    else if (c.status === 'skipped') run.skipped(item);
    else run.errored(item, msg, c.durationMs);
  }

  /** Replaces the diagnostics of one canary run: the canary file's and those of the files it uses. */
  private showDiagnostics(canaryFile: string, ds: Diagnostic[]): void {
    const byFile = new Map<string, vscode.Diagnostic[]>([[canaryFile, []]]);
    const prev = this.results.get(canaryFile);
    for (const d of prev?.diagnostics ?? []) byFile.set(d.file, []);
    for (const d of ds) {
      const range = new vscode.Range(d.line - 1, d.col - 1, (d.endLine ?? d.line) - 1, d.endCol && d.endLine ? d.endCol - 1 : d.col - 1 + 200);
      const diag = new vscode.Diagnostic(range, d.message, d.severity === 'warning' ? vscode.DiagnosticSeverity.Warning : vscode.DiagnosticSeverity.Error);
      diag.source = 'circuitlens';
      const list = byFile.get(d.file) ?? [];
      list.push(diag);
      byFile.set(d.file, list);
    }
    for (const [f, list] of byFile) this.diagnostics.set(vscode.Uri.file(f), list);
  }

  private updateStatus(): void {
    if (!this.state.trusted) {
      this.status.text = '$(shield) Canaries: untrusted';
      this.status.tooltip = 'CircuitLens runs models only in trusted workspaces.';
      this.status.accessibilityInformation = { label: 'CircuitLens canaries: untrusted workspace, not run' };
    } else {
      const checks = [...this.results.values()].flatMap((r) => r.checks);
      const failing = checks.filter((c) => c.status === 'failed' || c.status === 'errored').length;
      const passing = checks.filter((c) => c.status === 'passed').length;
      this.status.text = checks.length ? `$(beaker) ${passing} $(pass) ${failing} $(error)` : '$(beaker) Canaries';
      this.status.tooltip = checks.length ? `CircuitLens canaries: ${passing} passing, ${failing} failing — click to re-run` : 'Run CircuitLens canaries';
      // Screen readers otherwise read the icon names ("beaker 20 pass 1 error").
      this.status.accessibilityInformation = { label: checks.length ? `CircuitLens canaries: ${passing} passing, ${failing} failing` : 'Run CircuitLens canaries' };
      this.status.backgroundColor = failing ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
    }
    this.status.show();
  }

  /** Which canaries depend on a changed file: itself, its suite, its model, a circuit it checks (and that circuit's
   * model), a baseline model it compares with. */
  private dependents(changed: string): string[] {
    const out: string[] = [];
    this.controller.items.forEach((item) => {
      const f = item.id;
      if (f === changed) { out.push(f); return; }
      const { canary } = parseCanary(f, readOr(f));
      if (!canary) return;
      const dir = path.dirname(f);
      const refs = canaryFileRefs(canary).map((r) => ({ ...r, file: path.resolve(dir, r.ref) }));
      const deps = new Set(refs.map((r) => r.file));
      for (const { file: cp } of refs.filter((r) => r.kind === 'circuit')) {
        // A circuit names the model it was found on: a change to it concerns the canaries checking that circuit.
        const parsed = parseCircuit(cp, readOr(cp)).circuit;
        if (parsed?.model?.path) deps.add(path.resolve(path.dirname(cp), parsed.model.path));
      }
      if (deps.has(changed)) out.push(f);
    });
    return out;
  }

  private fileChanged(file: string): void {
    if (/\.canary\.ya?ml$/.test(file)) { if (fs.existsSync(file)) this.itemFor(file); else { this.controller.items.delete(file); this.diagnostics.delete(vscode.Uri.file(file)); } }
    if (!vscode.workspace.getConfiguration('circuitlens').get<boolean>('canaries.runOnChange', true) || !this.state.trusted) return;
    for (const f of this.dependents(file)) if (fs.existsSync(f)) this.pending.add(f);
    if (this.pending.size === 0) return;
    clearTimeout(this.timer);
    // A newer change cancels the run in flight: results always describe the files as they are now.
    this.inflight?.cancel();
    this.timer = setTimeout(() => {
      const files = [...this.pending];
      this.pending.clear();
      void this.runFiles(files);
    }, vscode.workspace.getConfiguration('circuitlens').get<number>('canaries.debounceMs', 800));
  }

  result(file: string): CanaryResult | undefined {
    return this.results.get(file);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.inflight?.cancel();
    this.disposables.forEach((d) => d.dispose());
  }
}
