import * as path from 'node:path';
import * as fs from 'node:fs';
import * as vscode from 'vscode';
import { patchingAttribution } from '../core/analysis/attribution';
import { discoverCircuit } from '../core/analysis/discover-circuit';
import { circuitFile } from '../core/analysis/records';
import { attributeEdges, prepareEdges, verifyEdgeCircuit } from '../core/analysis/edges';
import { Cancelled, evaluateSets, prepare } from '../core/analysis/evaluate';
import { resolvePrompts, type ResolvedPrompt } from '../core/analysis/prompts';
import { verifyCircuit } from '../core/analysis/verify';
import type { Engine } from '../core/engine/engine';
import { isUserError } from '../core/errors';
import { circuitComponents, parseCircuit, serializeCircuit } from '../core/formats/circuit';
import { hasErrors, type Diagnostic } from '../core/formats/diagnostics';
import { toEapIg } from '../core/formats/eap-ig';
import { parseSuite, type Suite } from '../core/formats/suite';
import { allComponentNodes, parseNodeList } from '../core/ids';
import { sha256File, writeFileAtomic } from '../core/node/workspace';
import type { CanaryController } from './canary/controller';
import type { State } from './state';
import { TrustError } from './state';
import type { CircuitExplorer, ExplorerItem } from './views/explorer';
import { PromptPanel } from './webviews/attention/panel';
import type { PromptState } from './webviews/attention/protocol';
import { GraphPanel } from './webviews/graph/panel';
import type { GraphState } from './webviews/graph/protocol';

export interface Services { state: State; explorer: CircuitExplorer; canaries: CanaryController }

type Arg = ExplorerItem | vscode.Uri | string | undefined;

const fileOf = (arg: Arg): string | undefined => (typeof arg === 'string' ? arg : arg instanceof vscode.Uri ? arg.fsPath : arg?.file);

async function pick(state: State, glob: string, what: string, arg: Arg): Promise<string | undefined> {
  const given = fileOf(arg);
  if (given) return given;
  const editor = vscode.window.activeTextEditor?.document.uri.fsPath;
  const files = await state.findFiles(glob);
  if (editor && files.includes(editor)) return editor;
  if (files.length === 1) return files[0];
  if (files.length === 0) { void vscode.window.showWarningMessage(`No ${what} in this workspace.`); return undefined; }
  const choice = await vscode.window.showQuickPick(files.map((f) => ({ label: path.basename(f), description: state.ws.display(f), file: f })), { title: `CircuitLens: pick a ${what}` });
  return choice?.file;
}

async function modelFor(state: State, suite?: Suite): Promise<string | undefined> {
  if (state.activeModel && fs.existsSync(state.activeModel)) return state.activeModel;
  if (suite?.model) return state.ws.resolve(suite.file, suite.model);
  const m = await pick(state, '**/*.onnx', 'model', undefined);
  if (m) await state.setActiveModel(m);
  return m;
}

/** Shows file problems: the first opens at its line, all are logged. */
function showProblems(state: State, ds: Diagnostic[]): void {
  for (const d of ds) state.log.error(`${state.ws.display(d.file)}:${d.line}:${d.col}: ${d.message}`);
  const first = ds.find((d) => d.severity === 'error');
  if (!first) return;
  void vscode.window.showErrorMessage(`${state.ws.display(first.file)}:${first.line}: ${first.message}`, 'Open').then((c) => {
    if (c) void vscode.window.showTextDocument(vscode.Uri.file(first.file), { selection: new vscode.Range(first.line - 1, first.col - 1, first.line - 1, first.col - 1) });
  });
}

interface Loaded { suite: Suite; engine: Engine; modelPath: string; all: ResolvedPrompt[]; task: ResolvedPrompt[]; control: ResolvedPrompt[] }

async function loadSuite(state: State, suitePath: string): Promise<Loaded | undefined> {
  const { suite, diagnostics } = parseSuite(suitePath, fs.readFileSync(suitePath, 'utf8'));
  if (!suite) { showProblems(state, diagnostics); return undefined; }
  const modelPath = await modelFor(state, suite);
  if (!modelPath) return undefined;
  const engine = await state.engine(modelPath);
  const r = resolvePrompts(suite, engine);
  if (hasErrors(r.diagnostics)) { showProblems(state, r.diagnostics); return undefined; }
  const task = r.prompts.filter((p) => !p.tags.includes('control'));
  return { suite, engine, modelPath, all: r.prompts, task: task.length ? task : r.prompts, control: r.prompts.filter((p) => p.tags.includes('control')) };
}

/** Long work: a cancellable notification with progress; errors a user can fix are shown, others logged. */
async function withProgress<T>(state: State, title: string, work: (signal: AbortSignal, report: (m: string) => void) => Promise<T>): Promise<T | undefined> {
  return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `CircuitLens: ${title}`, cancellable: true }, async (progress, token) => {
    const abort = new AbortController();
    const sub = token.onCancellationRequested(() => abort.abort());
    const t0 = Date.now();
    try {
      const r = await work(abort.signal, (message) => progress.report({ message }));
      state.log.info(`${title}: done in ${Date.now() - t0} ms`);
      return r;
    } catch (e) {
      if (e instanceof Cancelled) { state.log.info(`${title}: cancelled`); return undefined; }
      if (e instanceof TrustError || isUserError(e)) { void vscode.window.showErrorMessage(`CircuitLens: ${(e as Error).message}`); state.log.warn(`${title}: ${(e as Error).message}`); return undefined; }
      state.log.error(`${title}: ${(e as Error).stack ?? e}`);
      void vscode.window.showErrorMessage(`CircuitLens: ${title} failed: ${(e as Error).message}`);
      return undefined;
    } finally {
      sub.dispose();
    }
  });
}

const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : String(x));

export function commandTable(s: Services): Record<string, (...args: Arg[]) => Promise<unknown>> {
  const { state } = s;
  const openGraph = (g: GraphState) => GraphPanel.show(state, g, (file) => { state.refresh(); void vscode.window.showInformationMessage(`Saved circuit ${state.ws.display(file)}`); });
  const openPrompt = async (view: 'attention' | 'lens', arg: Arg) => {
    const modelPath = fileOf(arg)?.endsWith('.onnx') ? fileOf(arg)! : await modelFor(state);
    if (!modelPath) return;
    const engine = await state.engine(modelPath);
    if (!engine.tokenizer) { void vscode.window.showErrorMessage('This model has no tokenizer.json beside it; the views need text prompts.'); return; }
    const text = await vscode.window.showInputBox({ title: view === 'attention' ? 'Attention: prompt to trace' : 'Logit lens: prompt to trace', value: 'Mary walked garden red apple dog Mary walked garden red' });
    if (!text) return;
    const ids = engine.tokenizer.encode(text);
    engine.checkIds(ids);
    const vocab = Array.from({ length: engine.info.vocab }, (_, i) => engine.tokenizer!.tokenText(i));
    const ps: PromptState = {
      version: 1, view, modelPath, text, ids, tokens: ids.map((i) => engine.tokenizer!.tokenText(i)), layers: engine.info.layers, heads: engine.info.heads,
      compute: { workerUri: '', wasmUri: '', modelUri: '', prefer: 'auto', what: '' }, vocab,
    };
    PromptPanel.show(state, ps);
  };
  return {
    'circuitlens.selectModel': async (arg) => {
      const m = fileOf(arg) ?? (await pick(state, '**/*.onnx', 'model', undefined));
      if (!m) return;
      await state.setActiveModel(m);
      const e = await withProgress(state, `loading ${path.basename(m)}`, () => state.engine(m));
      if (e) void vscode.window.setStatusBarMessage(`CircuitLens: ${path.basename(m)} — ${e.info.architecture}, ${e.info.layers} layers × ${e.info.heads} heads`, 5000);
    },
    'circuitlens.tracePrompt': (arg) => openPrompt('attention', arg),
    'circuitlens.openAttention': (arg) => openPrompt('attention', arg),
    'circuitlens.openLogitLens': (arg) => openPrompt('lens', arg),
    'circuitlens.runSuite': async (arg) => {
      const f = await pick(state, '**/*.suite.{yaml,yml}', 'suite', arg);
      if (!f) return;
      await withProgress(state, `running ${path.basename(f)}`, async (signal) => {
        const L = await loadSuite(state, f);
        if (!L) return;
        const ctx = await prepare(L.engine, L.all, L.suite.ablation, { signal });
        const [r] = await evaluateSets(ctx, [[]]);
        const m = r!.metrics;
        state.log.info(`${L.suite.name} on ${path.basename(L.modelPath)}: ${L.all.length} prompts, ${L.suite.metric} ${f3(m[L.suite.metric])}, accuracy ${f3(m.accuracy)}`);
        void vscode.window.showInformationMessage(`${L.suite.name}: ${L.suite.metric} ${f3(m[L.suite.metric])}, accuracy ${f3(m.accuracy)} (${L.all.length} prompts)`);
      });
    },
    'circuitlens.ablateNodes': async (arg) => {
      const f = await pick(state, '**/*.suite.{yaml,yml}', 'suite', arg);
      if (!f) return;
      const input = await vscode.window.showInputBox({ title: 'Ablate nodes', prompt: 'Node ids, comma-separated (a1.h2, m0)', value: GraphPanel.current?.marked.join(',') || 'a1.h0' });
      if (!input) return;
      await withProgress(state, `ablating ${input}`, async (signal) => {
        const L = await loadSuite(state, f);
        if (!L) return;
        const nodes = parseNodeList(input, L.engine.info);
        const ctx = await prepare(L.engine, L.task, L.suite.ablation, { signal, meanOver: L.all });
        const [clean, abl] = await evaluateSets(ctx, [[], nodes]);
        const msg = `${L.suite.ablation}-ablating ${nodes.join(', ')}: ${L.suite.metric} ${f3(clean!.metrics[L.suite.metric])} → ${f3(abl!.metrics[L.suite.metric])}, accuracy ${f3(clean!.metrics.accuracy)} → ${f3(abl!.metrics.accuracy)}, KL ${f3(abl!.metrics.kl)}`;
        state.log.info(msg);
        void vscode.window.showInformationMessage(msg);
      });
    },
    'circuitlens.attributeSuite': async (arg) => {
      const f = await pick(state, '**/*.suite.{yaml,yml}', 'suite', arg);
      if (!f) return;
      const g = await withProgress(state, `attributing ${path.basename(f)}`, async (signal, report) => {
        const L = await loadSuite(state, f);
        if (!L) return undefined;
        report(`${allComponentNodes(L.engine.info).length + 1} ablation sets × ${L.task.length} prompts`);
        const ctx = await prepare(L.engine, L.task, L.suite.ablation, { signal, meanOver: L.all });
        const attr = await patchingAttribution(ctx, L.suite.metric);
        // Edges: exact path patching while that is a few hundred runs, else their gradient estimate (EAP), falling
        // back to patching where the export has no gradient (core/analysis/edges.ts attributeEdges).
        let edgeMethod = '';
        try {
          const ec = await prepareEdges(ctx, L.all);
          report(`${ec.ids.length} edges`);
          const ea = await attributeEdges(ec, L.suite.metric);
          attr.edges = ea.edges;
          edgeMethod = `; edges by ${ea.method}`;
          if (ea.fallback) {
            state.log.warn(`${path.basename(L.modelPath)}: ${ea.fallback}`);
            void vscode.window.showWarningMessage(`CircuitLens: ${ea.fallback}`);
            edgeMethod += ' (gradients unavailable)';
          }
        } catch (e) {
          if (!isUserError(e)) throw e;
          state.log.warn(`no edge attribution for ${path.basename(L.modelPath)}: ${(e as Error).message}`);
        }
        const graph: GraphState = {
          version: 1, title: `Attribution: ${L.suite.name} · ${path.basename(L.modelPath)}`, modelPath: L.modelPath, suitePath: f, metric: L.suite.metric,
          ablation: L.suite.ablation, method: `exact patching (${L.suite.ablation} ablation)${edgeMethod}`, layers: L.engine.info.layers, heads: L.engine.info.heads,
          nodes: [{ id: 'input', score: 0 }, ...attr.nodes, { id: 'logits', score: 0 }], edges: attr.edges, prompts: L.task, meanOver: L.all, marked: [],
          compute: { workerUri: '', wasmUri: '', modelUri: '', prefer: 'auto', what: '' },
        };
        return graph;
      });
      if (g) openGraph(g);
    },
    'circuitlens.discoverCircuit': async (arg) => {
      const f = await pick(state, '**/*.suite.{yaml,yml}', 'suite', arg);
      if (!f) return;
      const target = Number(vscode.workspace.getConfiguration('circuitlens').get<number>('discover.faithfulness', 0.8));
      const file = await withProgress(state, `discovering a circuit for ${path.basename(f)}`, async (signal) => {
        const L = await loadSuite(state, f);
        if (!L) return undefined;
        const ctx = await prepare(L.engine, L.task, L.suite.ablation, { signal, meanOver: L.all });
        const control = L.control.length ? await prepare(L.engine, L.control, L.suite.ablation, { signal, meanOver: L.all }) : undefined;
        const cfg = vscode.workspace.getConfiguration('circuitlens');
        const level = cfg.get<string>('discover.level', 'node') === 'edge' ? 'edge' : 'node';
        const threshold = Number(cfg.get<number>('discover.threshold', 0.02));
        const d = await discoverCircuit(ctx, control, L.all, L.suite.metric, { level, method: level === 'edge' ? 'acdc' : 'greedy', scoring: 'patching', steps: 1, target, threshold });
        const v = d.verification;
        const found = { nodes: d.nodes };
        const out = path.join(path.dirname(f), `${path.basename(f).replace(/\.suite\.ya?ml$/, '')}-${path.basename(L.modelPath, '.onnx')}.circuit.json`);
        const rel = (p: string) => path.relative(path.dirname(out), p).split(path.sep).join('/');
        const circuit = circuitFile(d, { name: `${L.suite.name} (${level === 'edge' ? 'ACDC, edges' : 'greedy'})`, level, ablation: L.suite.ablation, model: { path: rel(L.modelPath), sha256: await sha256File(L.modelPath) }, suite: rel(f) });
        await writeFileAtomic(out, serializeCircuit(circuit));
        state.log.info(`discovered ${level === 'edge' ? `${d.edges.length} edges between ` : ''}${found.nodes.join(', ')}: faithfulness ${f3(v.faithfulness)} (accuracy ${f3(v.faithfulnessByMetric.accuracy)}, kl ${f3(v.faithfulnessByMetric.kl)}), necessity ${f3(v.necessity)} → ${out}`);
        return out;
      });
      if (file) { state.refresh(); await vscode.window.showTextDocument(vscode.Uri.file(file)); }
    },
    'circuitlens.verifyCircuit': async (arg) => {
      const f = await pick(state, '**/*.circuit.json', 'circuit', arg);
      if (!f) return;
      await withProgress(state, `verifying ${path.basename(f)}`, async (signal) => {
        const { circuit, diagnostics } = parseCircuit(f, fs.readFileSync(f, 'utf8'));
        if (!circuit) { showProblems(state, diagnostics); return; }
        if (!circuit.suite) { void vscode.window.showErrorMessage('The circuit names no suite to verify it on.'); return; }
        const L = await loadSuite(state, path.resolve(path.dirname(f), circuit.suite));
        if (!L) return;
        const ctx = await prepare(L.engine, L.task, circuit.ablation ?? L.suite.ablation, { signal, meanOver: L.all });
        const control = L.control.length ? await prepare(L.engine, L.control, ctx.ablation, { signal, meanOver: L.all }) : undefined;
        const nodes = L.engine.checkNodes(circuitComponents(circuit));
        const edgeLevel = circuit.granularity === 'edge' && (circuit.edges ?? []).length > 0;
        let v;
        if (edgeLevel) {
          const ec = await prepareEdges(ctx, L.all);
          const cc = control ? await prepareEdges(control, L.all) : undefined;
          v = await verifyEdgeCircuit(ec, circuit.edges!.map((e) => `${e.source}->${e.target}`), L.suite.metric, (await attributeEdges(ec, L.suite.metric, 0)).edges, cc);
        } else {
          v = await verifyCircuit(ctx, nodes, L.suite.metric, control);
        }
        const msg = `${circuit.name}${edgeLevel ? ` (${circuit.edges!.length} edges)` : ''}: faithfulness ${f3(v.faithfulness)} (${v.metric}; accuracy ${f3(v.faithfulnessByMetric.accuracy)}, kl ${f3(v.faithfulnessByMetric.kl)}), necessity ${f3(v.necessity)}, CPR ${f3(v.cpr)}, CMD ${f3(v.cmd)}`;
        state.log.info(`${msg}; minimality ${JSON.stringify(v.minimality)}`);
        void vscode.window.showInformationMessage(msg);
      });
    },
    'circuitlens.saveCircuit': async () => {
      const p = GraphPanel.current;
      if (!p) { void vscode.window.showWarningMessage('Open an attribution graph and mark nodes first.'); return; }
      await p.save(p.marked);
    },
    'circuitlens.runCanaries': async (arg) => {
      const f = fileOf(arg);
      const files = f ? [f] : await state.findFiles('**/*.canary.{yaml,yml}');
      if (!state.trusted) { void vscode.window.showWarningMessage(new TrustError().message); return; }
      const results = await s.canaries.runFiles(files);
      const failed = results.flatMap((r) => r.checks).filter((c) => c.status !== 'passed').length;
      const total = results.reduce((n, r) => n + r.checks.length, 0);
      void vscode.window.setStatusBarMessage(`CircuitLens canaries: ${total - failed} passed, ${failed} failed`, 8000);
    },
    'circuitlens.exportCircuit': async (arg) => {
      const f = await pick(state, '**/*.circuit.json', 'circuit', arg);
      if (!f) return;
      const { circuit, diagnostics } = parseCircuit(f, fs.readFileSync(f, 'utf8'));
      if (!circuit) { showProblems(state, diagnostics); return; }
      const modelPath = circuit.model?.path ? path.resolve(path.dirname(f), circuit.model.path) : await modelFor(state);
      if (!modelPath) return;
      const engine = await state.engine(modelPath);
      const out = f.replace(/\.circuit\.json$/, '.eap-ig.json');
      await writeFileAtomic(out, JSON.stringify(toEapIg(circuit, { ...engine.info, parallel: engine.info.features.block === 'parallel' }), null, 2) + '\n');
      void vscode.window.showInformationMessage(`Exported ${state.ws.display(out)} (EAP-IG / MIB circuit JSON)`);
    },
    'circuitlens.refresh': async () => { state.refresh(); await s.canaries.discover(); },
  };
}
