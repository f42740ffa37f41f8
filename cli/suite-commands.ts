import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCanary, type CanaryResult } from '../core/analysis/canary-run';
import { evaluateSets, prepare } from '../core/analysis/evaluate';
import { metricOf } from '../core/analysis/metrics';
import { resolvePrompts } from '../core/analysis/prompts';
import type { AblationKind } from '../core/vocabulary';
import { UserError } from '../core/errors';
import { formatDiagnostic, hasErrors, type Diagnostic } from '../core/formats/diagnostics';
import { parseSuite, type Suite } from '../core/formats/suite';
import { parseNodeList } from '../core/ids';
import { NodeWorkspace, writeFileAtomic } from '../core/node/workspace';
import { failed, jsonReport, junitReport, REPORTERS, sarifReport, textReport, type Reporter } from '../core/report/canary-reports';
import { cliRuntime, oneOf, parse } from './args';

declare const CIRCUITLENS_VERSION: string | undefined;
const VERSION = typeof CIRCUITLENS_VERSION === 'string' ? CIRCUITLENS_VERSION : '0.0.0';

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

export async function runCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const usage = 'circuitlens run SUITE [--model MODEL] [--ablate IDS] [--ablation zero|mean|resample] [--json]';
  const { values, positionals } = parse(argv, {
    model: { type: 'string' }, ablate: { type: 'string' }, ablation: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' },
  }, usage);
  if (positionals.length !== 1) throw new UserError(`expected one suite file\nusage: ${usage}`);
  const ws = new NodeWorkspace(process.cwd(), cliRuntime(values.runtime));
  try {
    const suite = await loadSuite(ws, path.resolve(positionals[0]!));
    const kind = oneOf(values.ablation, ['zero', 'mean', 'resample'] as const, '--ablation', suite.ablation) as AblationKind;
    const engine = await ws.loadEngine(suiteModelPath(suite, ws, values.model));
    const { prompts, diagnostics } = resolvePrompts(suite, engine);
    if (hasErrors(diagnostics)) throw diagnosticsError(diagnostics, ws);
    const nodes = values.ablate ? parseNodeList(values.ablate, engine.info) : [];
    if (kind === 'resample' && nodes.length && prompts.some((p) => !p.corruptedIds)) {
      throw new UserError(`${ws.display(suite.file)}: resample ablation needs a corrupted counterpart for every prompt`);
    }
    const ctx = await prepare(engine, prompts, kind);
    const [res] = await evaluateSets(ctx, [nodes]);
    const tok = engine.tokenizer;
    const report = {
      metric: suite.metric,
      value: res!.metrics[suite.metric],
      accuracy: res!.metrics.accuracy,
      logitDiff: prompts.every((p) => p.foil !== undefined) ? res!.metrics.logit_diff : null,
      prob: res!.metrics.prob,
      kl: res!.metrics.kl,
      ablated: nodes,
      ablation: kind,
      prompts: prompts.map((p, i) => {
        const s = res!.scores[i]!;
        return {
          text: p.text, value: metricOf(s, suite.metric), top1: tok ? tok.tokenText(s.top1) : String(s.top1),
          answer: tok ? tok.tokenText(p.answer) : String(p.answer), correct: s.correct, prob: s.prob,
          logitDiff: Number.isNaN(s.logitDiff) ? null : s.logitDiff, kl: s.kl, tags: p.tags,
        };
      }),
    };
    if (values.json) out(JSON.stringify(report, null, 2));
    else {
      out(`${suite.name}: ${prompts.length} prompts${nodes.length ? `, ${kind}-ablating ${nodes.join(', ')}` : ''}`);
      out(`  ${suite.metric} ${report.value.toFixed(4)}   accuracy ${report.accuracy.toFixed(3)}   prob ${report.prob.toFixed(3)}${report.logitDiff !== null && suite.metric !== 'logit_diff' ? `   logit_diff ${report.logitDiff.toFixed(3)}` : ''}${nodes.length ? `   KL ${report.kl.toFixed(4)}` : ''}`);
      for (const p of report.prompts) out(`  ${p.correct ? '✓' : '✗'} ${JSON.stringify(p.text)} → ${JSON.stringify(p.top1)} (answer ${JSON.stringify(p.answer)}, ${suite.metric} ${p.value.toFixed(3)})${p.tags.length ? `  [${p.tags.join(', ')}]` : ''}`);
    }
    return 0;
  } finally {
    await ws.dispose();
  }
}

/** `**\/*.canary.yaml` under each folder (node_modules, dot-folders skipped); files are taken as given. */
export function discoverCanaries(paths: string[]): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.name.startsWith('.') || e.name === 'node_modules') continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.canary.yaml') || e.name.endsWith('.canary.yml')) found.push(p);
    }
  };
  for (const p of paths) {
    const abs = path.resolve(p);
    if (!fs.existsSync(abs)) throw new UserError(`no such file or folder: ${p}`);
    if (fs.statSync(abs).isDirectory()) walk(abs);
    else found.push(abs);
  }
  return [...new Set(found)].sort();
}

export async function canaryCommand(argv: string[], out: (s: string) => void): Promise<number> {
  const usage = 'circuitlens canary [PATHS...] [--reporter text|json|junit|sarif] [--output FILE]';
  const { values, positionals } = parse(argv, { reporter: { type: 'string' }, output: { type: 'string' }, json: { type: 'boolean' }, runtime: { type: 'string' } }, usage);
  const reporter: Reporter = values.json ? 'json' : oneOf(values.reporter, REPORTERS, '--reporter', 'text');
  const files = discoverCanaries(positionals.length ? positionals : ['.']);
  if (files.length === 0) throw new UserError(`no *.canary.yaml found under ${positionals.join(', ') || '.'}`);
  const ws = new NodeWorkspace(process.cwd(), cliRuntime(values.runtime));
  const results: CanaryResult[] = [];
  try {
    for (const f of files) results.push(await runCanary(ws, f));
  } finally {
    await ws.dispose();
  }
  const display = (p: string) => ws.display(p);
  const text = reporter === 'junit' ? junitReport(results, display)
    : reporter === 'sarif' ? sarifReport(results, display, VERSION)
    : reporter === 'json' ? jsonReport(results, display)
    : textReport(results, display);
  if (values.output) {
    await writeFileAtomic(path.resolve(values.output), text + '\n');
    if (reporter !== 'text') out(textReport(results, display));
  } else out(text);
  // File problems (YAML mistakes, missing files) are bad input; failed checks are failures.
  const fileError = results.some((r) => r.checks.length === 0 || r.checks.every((c) => c.status === 'errored'));
  if (fileError) {
    process.stderr.write(`circuitlens canary: ${results.filter((r) => r.checks.length === 0 || r.checks.every((c) => c.status === 'errored')).map((r) => display(r.file)).join(', ')} could not run (see the report)\n`);
    return 2;
  }
  return failed(results) ? 1 : 0;
}
