import * as path from 'node:path';
import { prepareEdges, type EdgeContext } from '../core/analysis/edges';
import { prepare, type EvalContext } from '../core/analysis/evaluate';
import { resolvePrompts, type ResolvedPrompt } from '../core/analysis/prompts';
import type { AblationKind, Engine } from '../core/engine/engine';
import { UserError } from '../core/errors';
import { formatDiagnostic, hasErrors, type Diagnostic } from '../core/formats/diagnostics';
import { parseSuite, type Suite } from '../core/formats/suite';
import { NodeWorkspace } from '../core/node/workspace';
import { cliRuntime, oneOf } from './args';

declare const CIRCUITLENS_VERSION: string | undefined;
/** The package version, set by the build (esbuild.js); 0.0.0 when run unbundled. */
export const VERSION = typeof CIRCUITLENS_VERSION === 'string' ? CIRCUITLENS_VERSION : '0.0.0';

/** A file's diagnostics as one UserError (CLI exit 2), each line `file:line:col: error: message`. */
export function diagnosticsError(ds: Diagnostic[], ws: NodeWorkspace): UserError {
  const errs = ds.filter((d) => d.severity === 'error');
  const first = errs[0]!;
  const rest = errs.slice(1).map((d) => '\n' + formatDiagnostic({ ...d, file: ws.display(d.file) })).join('');
  return new UserError(`${first.severity}: ${first.message}${rest}`, ws.display(first.file), first.line, first.col);
}

export async function loadSuite(ws: NodeWorkspace, suitePath: string): Promise<Suite> {
  const { suite, diagnostics } = parseSuite(suitePath, await ws.readText(suitePath));
  for (const d of diagnostics.filter((x) => x.severity === 'warning')) process.stderr.write(formatDiagnostic({ ...d, file: ws.display(d.file) }) + '\n');
  if (!suite) throw diagnosticsError(diagnostics, ws);
  return suite;
}

export function suiteModelPath(suite: Suite, ws: NodeWorkspace, flag: string | undefined): string {
  if (flag) return path.resolve(flag);
  if (suite.model) return ws.resolve(suite.file, suite.model);
  throw new UserError(`${ws.display(suite.file)} names no model: pass --model MODEL.onnx or add model: to the suite`);
}

/**
 * A suite, the ablation to run it under (--ablation, else the suite's), its model and its prompts resolved against
 * the model's tokenizer (errors at their lines). A bad --ablation is reported before the model is loaded.
 */
export async function loadSuiteAndModel(ws: NodeWorkspace, suitePath: string, modelFlag: string | undefined, ablation?: string): Promise<{ suite: Suite; kind: AblationKind; engine: Engine; modelPath: string; prompts: ResolvedPrompt[] }> {
  const suite = await loadSuite(ws, path.resolve(suitePath));
  const kind = oneOf(ablation, ['zero', 'mean', 'resample'] as const, '--ablation', suite.ablation) as AblationKind;
  const modelPath = suiteModelPath(suite, ws, modelFlag);
  const engine = await ws.loadEngine(modelPath);
  const { prompts, diagnostics } = resolvePrompts(suite, engine);
  if (hasErrors(diagnostics)) throw diagnosticsError(diagnostics, ws);
  return { suite, kind, engine, modelPath, prompts };
}

/** Task prompts are those not tagged `control`; control prompts check specificity. */
export function splitPrompts(prompts: ResolvedPrompt[]): { task: ResolvedPrompt[]; control: ResolvedPrompt[] } {
  const task = prompts.filter((p) => !p.tags.includes('control'));
  if (task.length === 0) throw new UserError('the suite has no task prompts (prompts not tagged control)');
  return { task, control: prompts.filter((p) => p.tags.includes('control')) };
}

/** What attribute, discover and verify work on: a suite's task (and control) prompts prepared under its ablation. */
export interface Loaded { ws: NodeWorkspace; suite: Suite; engine: Engine; modelPath: string; task: EvalContext; control?: EvalContext; kind: AblationKind; prompts: ResolvedPrompt[] }

export async function loadForAnalysis(suitePath: string, modelFlag: string | undefined, ablation: string | undefined, runtime: string | undefined, withControl: boolean): Promise<Loaded> {
  const ws = new NodeWorkspace(process.cwd(), cliRuntime(runtime));
  const { suite, kind, engine, modelPath, prompts } = await loadSuiteAndModel(ws, suitePath, modelFlag, ablation);
  const { task, control } = splitPrompts(prompts);
  const taskCtx = await prepare(engine, task, kind, { meanOver: prompts });
  const controlCtx = withControl && control.length ? await prepare(engine, control, kind, { meanOver: prompts }) : undefined;
  return { ws, suite, engine, modelPath, task: taskCtx, control: controlCtx, kind, prompts };
}

/** The edge-level contexts of a Loaded suite (task, and control when loaded with it). */
export async function edgeContexts(L: Loaded): Promise<{ task: EdgeContext; control?: EdgeContext }> {
  const task = await prepareEdges(L.task, L.prompts);
  const control = L.control ? await prepareEdges(L.control, L.prompts) : undefined;
  return { task, control };
}
