import { ABLATION_KINDS } from '../core/vocabulary';
import * as path from 'node:path';
import { openSuite, prepareSuite, type Contexts, type OpenedSuite } from '../core/analysis/open-suite';
import { UserError } from '../core/errors';
import { formatDiagnostic, type Diagnostic } from '../core/formats/diagnostics';
import { parseCircuit, type Circuit } from '../core/formats/circuit';
import type { SourceFile } from '../core/formats/source';
import { parseSuite, type Suite } from '../core/formats/suite';
import { NodeWorkspace } from '../core/nodejs/workspace';
import { cliRuntime, oneOf } from './args';
import { stderrProgress } from './progress';

export { VERSION } from '../core/nodejs/version';

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
 * A suite opened on its model (core/analysis/open-suite.ts: prompts resolved, task and control split), under the
 * ablation to run it with (--ablation, else the suite's). A bad --ablation is reported before the model is loaded.
 */
export async function loadSuiteAndModel(ws: NodeWorkspace, suitePath: string, modelFlag: string | undefined, ablation?: string): Promise<OpenedSuite & { modelPath: string }> {
  const suite = await loadSuite(ws, path.resolve(suitePath));
  const kind = oneOf(ablation, ABLATION_KINDS, '--ablation', suite.ablation);
  const modelPath = suiteModelPath(suite, ws, modelFlag);
  const engine = await ws.loadEngine(modelPath);
  const { opened, diagnostics } = openSuite(suite, engine, kind);
  if (!opened) throw diagnosticsError(diagnostics, ws);
  return { ...opened, modelPath };
}

/** What attribute, discover and verify work on: a suite opened on its model, with its prompts' contexts prepared. */
export interface Loaded extends Contexts, Pick<OpenedSuite, 'suite' | 'engine' | 'ablation' | 'all'> { ws: NodeWorkspace; modelPath: string }

/** `command`: shows the analysis' progress on stderr under that name (cli/progress.ts). */
export async function loadForAnalysis(suitePath: string, modelFlag: string | undefined, ablation: string | undefined, runtime: string | undefined, withControl: boolean, command?: string): Promise<Loaded> {
  const ws = new NodeWorkspace(process.cwd(), cliRuntime(runtime));
  const opened = await loadSuiteAndModel(ws, suitePath, modelFlag, ablation);
  const { suite, engine, all, modelPath } = opened;
  return { suite, engine, ablation: opened.ablation, all, modelPath, ...(await prepareSuite(opened, { control: withControl, progress: command ? stderrProgress(command) : undefined })), ws };
}

/**
 * A circuit file and the model it runs on: `--model` when given, else the model its file names (relative to it).
 * `why`: what the command needs the model for, said when neither names one.
 */
export async function readCircuitFile(ws: NodeWorkspace, file: string, modelFlag: string | undefined, why: string): Promise<{ circuit: Circuit; source: SourceFile; circuitPath: string; modelPath: string }> {
  const circuitPath = path.resolve(file);
  const parsed = parseCircuit(circuitPath, await ws.readText(circuitPath));
  if (!parsed.circuit) throw diagnosticsError(parsed.diagnostics, ws);
  const c = parsed.circuit;
  const modelPath = modelFlag ? path.resolve(modelFlag) : c.model?.path ? path.resolve(path.dirname(circuitPath), c.model.path) : undefined;
  if (!modelPath) throw new UserError(`${ws.display(circuitPath)} names no model: pass --model MODEL.onnx (${why})`);
  return { circuit: c, source: parsed.source, circuitPath, modelPath };
}
