import * as path from 'node:path';
import { patchingAttribution } from '../core/analysis/attribution';
import { describeWork, estimateWork } from '../core/analysis/cost';
import { differentialActivation } from '../core/analysis/differential';
import { circuitFile, discoverCircuit, round6, verificationRecord } from '../core/analysis/discover-circuit';
import { edgeGradientScores, edgePatchingScores, prepareEdges, verifyEdgeCircuit, type EdgeContext } from '../core/analysis/edges';
import { prepare, type EvalContext } from '../core/analysis/evaluate';
import { gradientAttribution } from '../core/analysis/gradient';
import { resolvePrompts, type ResolvedPrompt } from '../core/analysis/prompts';
import { verifyCircuit, type Verification } from '../core/analysis/verify';
import type { AblationKind, Engine } from '../core/engine/engine';
import { UserError } from '../core/errors';
import { circuitComponents, parseCircuit, serializeCircuit, type Circuit } from '../core/formats/circuit';
import { allComponentNodes } from '../core/ids';
import { hasErrors } from '../core/formats/diagnostics';
import { fromEapIg, toEapIg } from '../core/formats/eap-ig';
import { fromNeuronpedia, toNeuronpedia } from '../core/formats/neuronpedia';
import type { Suite } from '../core/formats/suite';
import { NodeWorkspace, sha256File, writeFileAtomic } from '../core/node/workspace';
import { cliRuntime, oneOf, parse } from './args';
import { diagnosticsError, loadSuite, suiteModelPath } from './suite-commands';

declare const CIRCUITLENS_VERSION: string | undefined;
const VERSION = typeof CIRCUITLENS_VERSION === 'string' ? CIRCUITLENS_VERSION : '0.0.0';

/** Task prompts are those not tagged `control`; control prompts check specificity. */
export function splitPrompts(prompts: ResolvedPrompt[]): { task: ResolvedPrompt[]; control: ResolvedPrompt[] } {
  const task = prompts.filter((p) => !p.tags.includes('control'));
  if (task.length === 0) throw new UserError('the suite has no task prompts (prompts not tagged control)');
  return { task, control: prompts.filter((p) => p.tags.includes('control')) };
}

interface Loaded { ws: NodeWorkspace; suite: Suite; engine: Engine; modelPath: string; task: EvalContext; control?: EvalContext; kind: AblationKind; prompts: ResolvedPrompt[] }

async function loadForAnalysis(suitePath: string, modelFlag: string | undefined, ablation: string | undefined, runtime: string | undefined, withControl: boolean): Promise<Loaded> {
  const ws = new NodeWorkspace(process.cwd(), cliRuntime(runtime));
  const suite = await loadSuite(ws, path.resolve(suitePath));
  const kind = oneOf(ablation, ['zero', 'mean', 'resample'] as const, '--ablation', suite.ablation) as AblationKind;
  const modelPath = suiteModelPath(suite, ws, modelFlag);
  const engine = await ws.loadEngine(modelPath);
  const { prompts, diagnostics } = resolvePrompts(suite, engine);
  if (hasErrors(diagnostics)) throw diagnosticsError(diagnostics, ws);
  const { task, control } = splitPrompts(prompts);
  const taskCtx = await prepare(engine, task, kind, { meanOver: prompts });
  const controlCtx = withControl && control.length ? await prepare(engine, control, kind, { meanOver: prompts }) : undefined;
  return { ws, suite, engine, modelPath, task: taskCtx, control: controlCtx, kind, prompts };
}

const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : String(x));

export async function attributeCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const usage = 'circuitlens attribute SUITE [--model MODEL] [--level node|edge] [--method patching|gradient] [--steps K] [--ablation KIND] [--out FILE] [--json]';
  const { values, positionals } = parse(argv, {
    model: { type: 'string' }, level: { type: 'string' }, method: { type: 'string' }, ablation: { type: 'string' }, out: { type: 'string' },
    json: { type: 'boolean' }, runtime: { type: 'string' }, steps: { type: 'string' },
  }, usage);
  if (positionals.length !== 1) throw new UserError(`expected one suite file\nusage: ${usage}`);
  const level = oneOf(values.level, ['node', 'edge'] as const, '--level', 'node');
  const method = oneOf(values.method, ['patching', 'gradient'] as const, '--method', 'patching');
  const steps = stepsFlag(values.steps, method);
  const L = await loadForAnalysis(positionals[0]!, values.model, values.ablation, values.runtime, false);
  try {
    // Say what the work will cost before starting it, when it is more than a moment (stderr: never with the JSON).
    const P = L.task.prompts.length;
    const units = level === 'edge' ? L.engine.edges.edges.length : allComponentNodes(L.engine.info).length;
    const work = estimateWork(L.task, `${level} attribution by ${method === 'gradient' ? (steps > 1 ? `EAP-IG (${steps} steps)` : 'EAP') : 'exact patching'}`,
      method === 'gradient' ? { gradient: P * steps, forward: steps > 1 ? P : 0 } : { forward: (units + 1) * P });
    if ((work.seconds ?? 0) >= 2) process.stderr.write(`circuitlens attribute: ${describeWork(work, L.engine.msPerToken)}\n`);
    if (level === 'edge') return await attributeEdges(L, method, steps, values, out);
    const attr = method === 'gradient' ? await gradientAttribution(L.task, L.suite.metric, { steps }) : await patchingAttribution(L.task, L.suite.metric);
    const result = {
      nodes: attr.nodes, edges: attr.edges, metric: attr.metric, method: attr.method, level, ablation: L.kind, prompts: L.task.prompts.length,
      clean: attr.clean, ...(method === 'gradient' ? { steps } : {}),
    };
    if (values.out) await writeFileAtomic(path.resolve(values.out), JSON.stringify(result, null, 2) + '\n');
    if (values.json) out(JSON.stringify(result, null, 2));
    else {
      const estimate = attr.metric === 'accuracy' || attr.metric === 'kl'
        ? `ranking by the logit difference's gradient (${attr.metric} has none to follow)`
        : `estimating the ${attr.metric} drop`;
      const how = method === 'gradient' ? `gradients (${steps > 1 ? `EAP-IG, ${steps} steps` : 'EAP'}), ${estimate} under ${L.kind} ablation` : `${L.kind} ablation (${attr.metric} drop)`;
      out(`${L.suite.name}: node attribution by ${how}, ${L.task.prompts.length} task prompts`);
      for (const n of [...attr.nodes].sort((a, b) => b.score - a.score)) out(`  ${n.id.padEnd(8)} ${n.score >= 0 ? ' ' : ''}${n.score.toFixed(4)}`);
    }
    return 0;
  } finally {
    await L.ws.dispose();
  }
}

export async function discoverCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const usage = 'circuitlens discover SUITE --out FILE.circuit.json [--model MODEL] [--method greedy|acdc] [--scores patching|gradient] [--steps K] [--faithfulness F] [--threshold T] [--level node|edge] [--ablation KIND] [--json]';
  const { values, positionals } = parse(argv, {
    model: { type: 'string' }, out: { type: 'string' }, method: { type: 'string' }, faithfulness: { type: 'string' }, threshold: { type: 'string' },
    level: { type: 'string' }, ablation: { type: 'string' }, name: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' },
    scores: { type: 'string' }, steps: { type: 'string' },
  }, usage);
  if (positionals.length !== 1) throw new UserError(`expected one suite file\nusage: ${usage}`);
  if (!values.out) throw new UserError(`--out FILE.circuit.json is required\nusage: ${usage}`);
  if (!values.out.endsWith('.circuit.json')) throw new UserError(`--out must end in .circuit.json (got ${values.out})`);
  const level = oneOf(values.level, ['node', 'edge'] as const, '--level', 'node');
  const method = oneOf(values.method, ['greedy', 'acdc'] as const, '--method', 'greedy');
  const scoring = oneOf(values.scores, ['patching', 'gradient'] as const, '--scores', 'patching');
  const steps = stepsFlag(values.steps, scoring);
  const target = numberFlag(values.faithfulness, '--faithfulness', 0.8);
  const threshold = numberFlag(values.threshold, '--threshold', 0.02);
  const L = await loadForAnalysis(positionals[0]!, values.model, values.ablation, values.runtime, true);
  try {
    const d = await discoverCircuit(L.task, L.control, L.prompts, L.suite.metric, { level, method, scoring, steps, target, threshold });
    const outPath = path.resolve(values.out);
    const rel = (p: string) => path.relative(path.dirname(outPath), p).split(path.sep).join('/');
    const circuit = circuitFile(d, {
      name: values.name ?? `${L.suite.name} (${method}${level === 'edge' ? ', edges' : ''})`, level, ablation: L.kind,
      model: { path: rel(L.modelPath), sha256: await sha256File(L.modelPath) }, suite: rel(L.suite.file),
    });
    await writeFileAtomic(outPath, serializeCircuit(circuit));
    if (values.json) out(JSON.stringify({ circuit: path.relative(process.cwd(), outPath), nodes: d.nodes, ...(level === 'edge' ? { edges: d.edges.map((e) => `${e.source}->${e.target}`) } : {}), ...circuit.metrics }, null, 2));
    else {
      out(`${L.suite.name}: ${method} ${level === 'edge' ? 'edge ' : ''}discovery on ${path.relative(process.cwd(), L.modelPath)} (${L.task.prompts.length} task prompts, ${L.kind} ablation)`);
      if (level === 'edge') {
        const ids = d.edges.map((e) => `${e.source}->${e.target}`);
        out(`  circuit: ${ids.length} of ${d.edgesInModel} edges, between ${d.nodes.join(', ')}`);
        out(`  edges: ${ids.length > 40 ? `${ids.slice(0, 40).join(', ')}, … ${ids.length - 40} more (in the circuit file)` : ids.join(', ')}`);
      } else {
        out(`  circuit (${d.nodes.length} of ${L.engine.info.layers * (L.engine.info.heads + 1)} heads and MLPs): ${d.nodes.join(', ')}`);
      }
      printVerification(d.verification, out);
      out(`  wrote ${path.relative(process.cwd(), outPath)}`);
    }
    return 0;
  } finally {
    await L.ws.dispose();
  }
}

export async function verifyCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const usage = 'circuitlens verify CIRCUIT [--suite SUITE] [--model MODEL] [--ablation KIND] [--json]';
  const { values, positionals } = parse(argv, {
    suite: { type: 'string' }, model: { type: 'string' }, ablation: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' },
  }, usage);
  if (positionals.length !== 1) throw new UserError(`expected one circuit file\nusage: ${usage}`);
  const circuitPath = path.resolve(positionals[0]!);
  const ws0 = new NodeWorkspace();
  const parsed = parseCircuit(circuitPath, await ws0.readText(circuitPath));
  if (!parsed.circuit) throw diagnosticsError(parsed.diagnostics, ws0);
  const c = parsed.circuit;
  const suitePath = values.suite ?? (c.suite ? path.resolve(path.dirname(circuitPath), c.suite) : undefined);
  if (!suitePath) throw new UserError(`${ws0.display(circuitPath)} names no suite: pass --suite SUITE`);
  const modelFlag = values.model ?? (c.model?.path ? path.resolve(path.dirname(circuitPath), c.model.path) : undefined);
  const L = await loadForAnalysis(suitePath, modelFlag, values.ablation ?? c.ablation, values.runtime, true);
  try {
    c.nodes.forEach((n, i) => {
      try { L.engine.checkNodes([n]); } catch (e) { parsed.source.report(['nodes', i], (e as Error).message); }
    });
    if (hasErrors(parsed.source.diagnostics)) throw diagnosticsError(parsed.source.diagnostics, L.ws);
    const nodes = L.engine.checkNodes(circuitComponents(c));
    const edgeLevel = c.granularity === 'edge' && (c.edges ?? []).length > 0;
    const v = edgeLevel ? await verifyEdges(L, c) : await verifyCircuit(L.task, nodes, L.suite.metric, L.control);
    const warnings: string[] = [];
    if (c.model?.sha256 && c.model.sha256 !== (await sha256File(L.modelPath))) warnings.push('the circuit was found on a different model file (sha256 differs)');
    for (const w of warnings) process.stderr.write(`circuitlens verify: warning: ${w}\n`);
    if (values.json) out(JSON.stringify({ ...verificationRecord(v, {}), warnings }, null, 2));
    else {
      const what = edgeLevel ? `${c.edges!.length} edges between ${nodes.length} nodes (${nodes.join(', ')})` : `${nodes.length} nodes (${nodes.join(', ')})`;
      out(`${c.name}: ${what} on ${path.relative(process.cwd(), L.modelPath)}, ${L.task.prompts.length} task prompts, ${L.kind} ablation`);
      printVerification(v, out);
    }
    return 0;
  } finally {
    await L.ws.dispose();
  }
}

async function edgeContexts(L: Loaded): Promise<{ task: EdgeContext; control?: EdgeContext }> {
  const task = await prepareEdges(L.task, L.prompts);
  const control = L.control ? await prepareEdges(L.control, L.prompts) : undefined;
  return { task, control };
}

async function edgeScores(ec: EdgeContext, metric: Loaded['suite']['metric'], method: 'patching' | 'gradient', steps: number) {
  return method === 'gradient' ? edgeGradientScores(ec, metric, steps) : (await edgePatchingScores(ec, metric)).edges;
}

async function attributeEdges(L: Loaded, method: 'patching' | 'gradient', steps: number, values: { out?: string; json?: boolean }, out: (s: string) => void): Promise<number> {
  const { task } = await edgeContexts(L);
  const metric = L.suite.metric;
  const edges = await edgeScores(task, metric, method, steps);
  const result = {
    nodes: [], edges: edges.map((e) => ({ ...e, score: round6(e.score) })), metric, method, level: 'edge', ablation: L.kind, prompts: L.task.prompts.length,
    ...(method === 'gradient' ? { steps } : {}),
  };
  if (values.out) await writeFileAtomic(path.resolve(values.out), JSON.stringify(result, null, 2) + '\n');
  if (values.json) out(JSON.stringify(result, null, 2));
  else {
    const how = method === 'gradient' ? `gradients on edge weights (${steps > 1 ? `EAP-IG, ${steps} steps` : 'EAP'})` : 'exact path patching (one edge at a time)';
    out(`${L.suite.name}: edge attribution by ${how}, ${L.kind} ablation, ${L.task.prompts.length} task prompts; ${edges.length} edges, top 30 by |score|:`);
    for (const e of [...edges].sort((a, b) => Math.abs(b.score) - Math.abs(a.score)).slice(0, 30)) out(`  ${`${e.source}->${e.target}`.padEnd(22)} ${e.score >= 0 ? ' ' : ''}${e.score.toFixed(4)}`);
  }
  return 0;
}

async function verifyEdges(L: Loaded, c: Circuit): Promise<Verification> {
  const { task, control } = await edgeContexts(L);
  const scores = await edgeGradientScores(task, L.suite.metric);
  return verifyEdgeCircuit(task, (c.edges ?? []).map((e) => `${e.source}->${e.target}`), L.suite.metric, scores, control);
}

export async function diffCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const usage = 'circuitlens diff SUITE [--model MODEL] [--json]';
  const { values, positionals } = parse(argv, { model: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' } }, usage);
  if (positionals.length !== 1) throw new UserError(`expected one suite file\nusage: ${usage}`);
  const ws = new NodeWorkspace(process.cwd(), cliRuntime(values.runtime));
  try {
    const suite = await loadSuite(ws, path.resolve(positionals[0]!));
    const engine = await ws.loadEngine(suiteModelPath(suite, ws, values.model));
    const { prompts, diagnostics } = resolvePrompts(suite, engine);
    if (hasErrors(diagnostics)) throw diagnosticsError(diagnostics, ws);
    const { task, control } = splitPrompts(prompts);
    if (control.length === 0) throw new UserError(`${ws.display(suite.file)} has no prompts tagged control to compare with`);
    const rows = await differentialActivation(engine, task, control);
    if (values.json) out(JSON.stringify({ task: task.length, control: control.length, nodes: rows }, null, 2));
    else {
      out(`${suite.name}: task (${task.length}) vs control (${control.length}) prompts, last position; a first ranking, not a causal test`);
      out('  node      task norm  control norm  effect size (d)  entropy task/control');
      for (const r of rows) out(`  ${r.id.padEnd(8)} ${f3(r.taskNorm).padStart(10)} ${f3(r.controlNorm).padStart(13)} ${f3(r.effectSize).padStart(16)}  ${r.taskEntropy !== undefined ? `${f3(r.taskEntropy)} / ${f3(r.controlEntropy!)}` : ''}`);
    }
    return 0;
  } finally {
    await ws.dispose();
  }
}

/** --steps: how many points EAP-IG averages gradients over (1 = plain EAP); only with gradient scores. */
function stepsFlag(v: string | undefined, method: string): number {
  if (v === undefined) return 1;
  if (method !== 'gradient') throw new UserError('--steps applies to gradient attribution only (--method gradient, or --scores gradient for discover)');
  const k = Number(v);
  if (!Number.isInteger(k) || k < 1 || k > 1024) throw new UserError(`--steps must be a whole number from 1 to 1024 (got "${v}")`);
  return k;
}

function numberFlag(v: string | undefined, flag: string, fallback: number): number {
  if (v === undefined) return fallback;
  const x = Number(v);
  if (!Number.isFinite(x)) throw new UserError(`${flag} must be a number (got "${v}")`);
  return x;
}

function printVerification(v: Verification, out: (s: string) => void): void {
  const m = v.faithfulnessByMetric;
  out(`  faithfulness ${f3(v.faithfulness)} (${v.metric})  —  by metric: logit_diff ${f3(m.logit_diff)}, accuracy ${f3(m.accuracy)}, kl ${f3(m.kl)}`);
  out(`  necessity ${f3(v.necessity)}   CPR ${f3(v.cpr)}   CMD ${f3(v.cmd)}   (MIB: area under the faithfulness curve over sizes / area between it and 1)`);
  const entries = Object.entries(v.minimality);
  // Edge circuits have many members: the largest drops, and how many more (all of them are in --json).
  const shown = entries.length > 20 ? [...entries].sort((a, b) => b[1] - a[1]).slice(0, 12) : entries;
  const more = entries.length - shown.length;
  out(`  minimality (faithfulness drop when one member alone is removed): ${shown.map(([k, d]) => `${k} ${f3(d)}`).join(', ')}${more ? `, … ${more} more (--json lists all)` : ''}`);
  const removable = entries.filter(([, d]) => d <= 0).map(([k]) => k);
  if (removable.length) out(`  not minimal: removing ${removable.length > 12 ? `${removable.slice(0, 12).join(', ')} and ${removable.length - 12} more` : removable.join(', ')} alone does not lower faithfulness`);
  if (v.specificity) {
    const s = v.specificity;
    out(`  specificity on ${s.prompts} control prompts: KL ${f3(s.klWhenAblated)} when the circuit is ablated (task: ${f3(s.taskKlWhenAblated)}), accuracy ${f3(s.accuracyClean)} → ${f3(s.accuracyWhenAblated)}`);
  }
}

export async function exportCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const usage = 'circuitlens export CIRCUIT --format eap-ig|neuronpedia [--model MODEL] [--out FILE] [--scan MODEL_ID] [--slug SLUG] [--prompt TEXT]';
  const { values, positionals } = parse(argv, {
    format: { type: 'string' }, model: { type: 'string' }, out: { type: 'string' }, json: { type: 'boolean' },
    scan: { type: 'string' }, slug: { type: 'string' }, prompt: { type: 'string' },
  }, usage);
  if (positionals.length !== 1) throw new UserError(`expected one circuit file\nusage: ${usage}`);
  const format = oneOf(values.format, ['eap-ig', 'neuronpedia'] as const, '--format', 'eap-ig');
  if (format !== 'neuronpedia') {
    const only = (['scan', 'slug', 'prompt'] as const).filter((k) => values[k] !== undefined);
    if (only.length) throw new UserError(`--${only[0]} applies to --format neuronpedia only\nusage: ${usage}`);
  }
  if (values.slug !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(values.slug)) throw new UserError(`--slug must be letters, digits, - and _ (got "${values.slug}")`);
  const ws = new NodeWorkspace();
  try {
    const circuitPath = path.resolve(positionals[0]!);
    const parsed = parseCircuit(circuitPath, await ws.readText(circuitPath));
    if (!parsed.circuit) throw diagnosticsError(parsed.diagnostics, ws);
    const c = parsed.circuit;
    const modelPath = values.model ? path.resolve(values.model) : c.model?.path ? path.resolve(path.dirname(circuitPath), c.model.path) : undefined;
    if (!modelPath) {
      throw new UserError(`the circuit names no model: pass --model MODEL.onnx (${format === 'eap-ig' ? 'the export lists every edge of the model' : 'the graph places nodes by the model\'s layers'})`);
    }
    const engine = await ws.loadEngine(modelPath);
    let graph: unknown;
    if (format === 'eap-ig') graph = toEapIg(c, { ...engine.info, parallel: engine.info.features.block === 'parallel' });
    else {
      let promptTokens: string[] | undefined;
      if (values.prompt !== undefined) {
        const tok = engine.tokenizer;
        if (!tok) throw new UserError(`--prompt needs the model's tokenizer.json, and ${ws.display(modelPath)} has none beside it`);
        promptTokens = tok.encode(values.prompt).map((id) => tok.tokenText(id));
        if (promptTokens.length === 0) throw new UserError('--prompt is empty once tokenized');
      }
      graph = toNeuronpedia(c, engine.info, {
        scan: values.scan ?? path.basename(modelPath).replace(/\.onnx$/i, ''), slug: values.slug, promptTokens, prompt: values.prompt, generatorVersion: VERSION,
      });
    }
    const json = JSON.stringify(graph, null, 2);
    if (values.out) await writeFileAtomic(path.resolve(values.out), json + '\n');
    else out(json);
    return 0;
  } finally {
    await ws.dispose();
  }
}

export async function importCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const usage = 'circuitlens import FILE --format eap-ig|neuronpedia --out NAME.circuit.json [--model MODEL] [--suite SUITE]';
  const { values, positionals } = parse(argv, { format: { type: 'string' }, out: { type: 'string' }, model: { type: 'string' }, suite: { type: 'string' }, json: { type: 'boolean' } }, usage);
  if (positionals.length !== 1 || !values.out) throw new UserError(`expected one input file and --out\nusage: ${usage}`);
  const format = oneOf(values.format, ['eap-ig', 'neuronpedia'] as const, '--format', 'eap-ig');
  const ws = new NodeWorkspace();
  const file = path.resolve(positionals[0]!);
  let json: unknown;
  try { json = JSON.parse(await ws.readText(file)); } catch (e) { throw e instanceof UserError ? e : new UserError(`${ws.display(file)} is not valid JSON: ${(e as Error).message}`); }
  const c = format === 'neuronpedia' ? fromNeuronpedia(json, ws.display(file)) : fromEapIg(json, path.basename(file));
  const outPath = path.resolve(values.out);
  const rel = (p: string) => path.relative(path.dirname(outPath), path.resolve(p)).split(path.sep).join('/');
  if (values.model) c.model = { path: rel(values.model), sha256: await sha256File(path.resolve(values.model)) };
  if (values.suite) c.suite = rel(values.suite);
  c.created = new Date().toISOString();
  await writeFileAtomic(outPath, serializeCircuit(c));
  out(values.json ? JSON.stringify({ circuit: ws.display(outPath), nodes: c.nodes.length, edges: c.edges?.length ?? 0 }) : `wrote ${ws.display(outPath)}: ${c.nodes.length} nodes, ${c.edges?.length ?? 0} edges`);
  return 0;
}
