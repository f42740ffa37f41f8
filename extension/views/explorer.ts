import * as path from 'node:path';
import * as fs from 'node:fs';
import * as vscode from 'vscode';
import type { CanaryResult } from '../../core/analysis/verify/canary';
import { membershipHubs } from '../../core/analysis/relate/relate';
import { circuitComponents, parseCircuit } from '../../core/formats/circuit';
import { parseSuite } from '../../core/formats/suite';
import { sha256File } from '../../core/nodejs/workspace';
import type { State } from '../state';
import { readOr } from '../files';

type Section = 'models' | 'suites' | 'circuits' | 'canaries';

export class ExplorerItem extends vscode.TreeItem {
  constructor(label: string, collapsible: vscode.TreeItemCollapsibleState, readonly kind: Section | 'section' | 'detail', readonly file?: string, readonly section?: Section) {
    super(label, collapsible);
  }
}

/** The Circuit Explorer: Models, Suites, Circuits and Canaries of the workspace. */
export class CircuitExplorer implements vscode.TreeDataProvider<ExplorerItem> {
  private readonly emitter = new vscode.EventEmitter<ExplorerItem | undefined>();
  readonly onDidChangeTreeData = this.emitter.event;
  private canaryResults = new Map<string, CanaryResult>();
  private infoCache = new Map<string, { stamp: string; text: string; tooltip: string }>();

  constructor(private readonly state: State) {
    state.onDidChange(() => this.emitter.fire(undefined));
  }

  setCanaryResult(r: CanaryResult): void {
    this.canaryResults.set(r.file, r);
    this.emitter.fire(undefined);
  }

  getTreeItem(e: ExplorerItem): vscode.TreeItem {
    return e;
  }

  async getChildren(e?: ExplorerItem): Promise<ExplorerItem[]> {
    if (!e) {
      const sections: [Section, string, string][] = [['models', 'Models', 'symbol-class'], ['suites', 'Suites', 'checklist'], ['circuits', 'Circuits', 'circuit-board'], ['canaries', 'Canaries', 'beaker']];
      return sections.map(([s, label, icon]) => {
        const item = new ExplorerItem(label, vscode.TreeItemCollapsibleState.Expanded, 'section', undefined, s);
        item.iconPath = new vscode.ThemeIcon(icon);
        item.contextValue = `section-${s}`;
        item.id = `section:${s}`;
        return item;
      });
    }
    if (e.kind === 'section') return this.section(e.section!);
    if (e.kind === 'circuits' && e.file) return this.circuitNodes(e.file, await this.hubs());
    if (e.kind === 'canaries' && e.file) return this.canaryChecks(e.file);
    return [];
  }

  private async section(s: Section): Promise<ExplorerItem[]> {
    const rel = (p: string) => this.state.ws.display(p);
    if (s === 'models') {
      const active = this.state.activeModel;
      return Promise.all((await this.state.models()).map(async (m) => {
        const item = new ExplorerItem(path.basename(m), vscode.TreeItemCollapsibleState.None, 'models', m);
        const info = await this.modelInfo(m);
        item.description = `${m === active ? '● active · ' : ''}${info.text}`;
        item.tooltip = new vscode.MarkdownString(`**${rel(m)}**\n\n${info.tooltip}`);
        item.iconPath = new vscode.ThemeIcon(m === active ? 'pass-filled' : 'symbol-class');
        item.contextValue = m === active ? 'model-active' : 'model';
        item.resourceUri = vscode.Uri.file(m);
        item.command = { command: 'circuitlens.selectModel', title: 'Select Model', arguments: [item] };
        return item;
      }));
    }
    if (s === 'suites') {
      return (await this.state.findFiles('**/*.suite.{yaml,yml}')).map((f) => {
        const item = new ExplorerItem(path.basename(f), vscode.TreeItemCollapsibleState.None, 'suites', f);
        const { suite, diagnostics } = parseSuite(f, readOr(f));
        const tags = suite ? [...new Set(suite.prompts.flatMap((p) => p.tags))] : [];
        item.description = suite ? `${suite.prompts.length} prompts · ${suite.metric}${tags.length ? ` · ${tags.join(', ')}` : ''}` : `${diagnostics.length} problem(s)`;
        item.iconPath = new vscode.ThemeIcon(suite ? 'checklist' : 'warning');
        item.contextValue = 'suite';
        item.resourceUri = vscode.Uri.file(f);
        item.command = { command: 'vscode.open', title: 'Open', arguments: [vscode.Uri.file(f)] };
        return item;
      });
    }
    if (s === 'circuits') {
      return Promise.all((await this.state.findFiles('**/*.circuit.json')).map(async (f) => {
        const { circuit, diagnostics } = parseCircuit(f, readOr(f));
        const item = new ExplorerItem(path.basename(f), circuit ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None, 'circuits', f);
        item.contextValue = 'circuit';
        item.resourceUri = vscode.Uri.file(f);
        if (!circuit) {
          item.description = diagnostics[0]?.message ?? 'invalid';
          item.iconPath = new vscode.ThemeIcon('error');
          return item;
        }
        const fth = circuit.metrics?.['faithfulness'];
        const byMetric = circuit.metrics?.['faithfulnessByMetric'] as Record<string, number> | undefined;
        let mismatch = false;
        if (circuit.model?.sha256 && circuit.model.path) {
          const mp = path.resolve(path.dirname(f), circuit.model.path);
          mismatch = fs.existsSync(mp) && (await sha256File(mp)) !== circuit.model.sha256;
        }
        item.description = `${circuit.granularity === 'edge' && circuit.edges?.length ? `${circuit.edges.length} edges · ` : ''}${circuit.nodes.length} nodes${typeof fth === 'number' ? ` · f ${fth.toFixed(2)}` : ''}${byMetric ? ` (acc ${byMetric['accuracy']?.toFixed(2)})` : ''}${mismatch ? ' · ⚠ model changed' : ''}`;
        item.tooltip = new vscode.MarkdownString(`**${circuit.name}**\n\n${mismatch ? '⚠ The model file differs from the one this circuit was found on (sha256): re-verify it.\n\n' : ''}${circuit.notes ?? ''}`);
        item.iconPath = new vscode.ThemeIcon(mismatch ? 'warning' : 'circuit-board');
        return item;
      }));
    }
    return (await this.state.findFiles('**/*.canary.{yaml,yml}')).map((f) => {
      const r = this.canaryResults.get(f);
      const item = new ExplorerItem(path.basename(f), vscode.TreeItemCollapsibleState.Collapsed, 'canaries', f);
      item.contextValue = 'canary';
      item.resourceUri = vscode.Uri.file(f);
      if (r) {
        const failed = r.checks.filter((c) => c.status !== 'passed').length;
        item.description = failed ? `${failed} failing` : `${r.checks.length} passing`;
        item.iconPath = new vscode.ThemeIcon(failed ? 'error' : 'pass', new vscode.ThemeColor(failed ? 'testing.iconFailed' : 'testing.iconPassed'));
      } else {
        item.description = 'not run';
        item.iconPath = new vscode.ThemeIcon('beaker');
      }
      return item;
    });
  }

  /** Hub nodes by membership (core/analysis/relate): in most of the workspace's circuits, when there are two or more. */
  private async hubs(): Promise<{ count: Map<string, number>; of: number }> {
    const circuits = (await this.state.findFiles('**/*.circuit.json')).map((f) => parseCircuit(f, readOr(f)).circuit).filter((c) => c !== undefined);
    return { count: membershipHubs(circuits.map((c) => ({ nodes: circuitComponents(c) }))), of: circuits.length };
  }

  private circuitNodes(f: string, hubs: { count: Map<string, number>; of: number }): ExplorerItem[] {
    const { circuit } = parseCircuit(f, readOr(f));
    return (circuit?.nodes ?? []).map((n) => {
      const item = new ExplorerItem(n, vscode.TreeItemCollapsibleState.None, 'detail', f);
      const score = circuit?.scores?.[n];
      const drop = (circuit?.metrics?.['minimality'] as Record<string, number> | undefined)?.[n];
      const hub = hubs.count.get(n);
      item.description = [hub !== undefined ? `hub · in ${hub}/${hubs.of} circuits` : '', score !== undefined ? `score ${score.toFixed(3)}` : '', drop !== undefined ? `needed ${drop.toFixed(3)}` : ''].filter(Boolean).join(' · ');
      item.iconPath = new vscode.ThemeIcon(hub !== undefined ? 'star-full' : n.startsWith('m') ? 'symbol-method' : 'eye');
      if (hub !== undefined) item.tooltip = `${n} is a hub: it is in ${hub} of the workspace's ${hubs.of} circuits (more than half). CircuitLens: Relate Circuits measures how much each suite needs it.`;
      return item;
    });
  }

  private canaryChecks(f: string): ExplorerItem[] {
    const r = this.canaryResults.get(f);
    return (r?.checks ?? []).map((c) => {
      const item = new ExplorerItem(c.name, vscode.TreeItemCollapsibleState.None, 'detail', f);
      item.description = c.message;
      item.iconPath = new vscode.ThemeIcon(c.status === 'passed' ? 'pass' : c.status === 'skipped' ? 'circle-slash' : 'error');
      item.command = { command: 'vscode.open', title: 'Open', arguments: [vscode.Uri.file(f), { selection: new vscode.Range(c.line - 1, c.col - 1, c.line - 1, c.col - 1) }] };
      return item;
    });
  }

  private async modelInfo(m: string): Promise<{ text: string; tooltip: string }> {
    let stamp = '';
    try { const st = fs.statSync(m); stamp = `${st.size}:${st.mtimeMs}`; } catch { return { text: 'missing', tooltip: 'file not found' }; }
    const c = this.infoCache.get(m);
    if (c && c.stamp === stamp) return c;
    if (!this.state.trusted) return { text: 'untrusted workspace', tooltip: 'Trust the workspace to load models.' };
    try {
      const e = await this.state.engine(m);
      const i = e.info;
      const v = { stamp, text: `${i.architecture} · ${i.layers}L×${i.heads}H · d${i.dModel} · ${i.backend}`, tooltip: `${i.features.norm}, ${i.features.positions} positions, ${i.features.mlp}, ${i.features.qkv} QKV; vocab ${i.vocab}, context ${i.contextLength ?? '?'}, opset ${i.opset}` };
      this.infoCache.set(m, v);
      return v;
    } catch (e) {
      return { text: 'cannot load', tooltip: (e as Error).message };
    }
  }
}
