import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCanary, type CanaryResult } from '../../core/analysis/verify/canary';
import { UserError } from '../../core/errors';
import { NodeWorkspace } from '../../core/nodejs/workspace';
import { failed, jsonReport, junitReport, REPORTERS, sarifReport, textReport, type Reporter } from '../../core/report/canary-reports';
import { cliRuntime, FORCE_OPTION, oneOf, parse, RUNTIME_OPTION, type Usage } from '../args';
import { VERSION } from '../common';
import { outFile, writeOutFile } from '../out-file';

export const CANARY_USAGE: Usage = {
  synopsis: 'circuitlens canary [PATHS...] [--reporter text|json|junit|sarif] [--output FILE [--force]] [--runtime node|wasm] [--json]',
  about: 'Runs the checks of canary files (*.canary.yaml; folders are searched, node_modules and dot-folders skipped;\n'
    + 'default: the current folder). Exit 1 when a check fails, 2 when a file cannot run.',
  options: [
    ['--reporter text|json|junit|sarif', 'the report format (default text)'],
    ['--output FILE', 'write the report to FILE (atomically) and print the text summary'],
    FORCE_OPTION, RUNTIME_OPTION,
    ['--json', 'the same as --reporter json'],
  ],
  json: '{"summary": {"passed", "failed", "errored", "skipped"}, "canaries": [{"file", "model", "suite", "durationMs", "checks": [{"name", "status", "message", "actual", …}], "diagnostics"}]}',
};

/** `**\/*.canary.yaml` under each folder (node_modules, dot-folders skipped); files are taken as given. */
function discoverCanaries(paths: string[]): string[] {
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
  const { values, positionals } = parse(argv, {
    reporter: { type: 'string' }, output: { type: 'string' }, force: { type: 'boolean' }, json: { type: 'boolean' }, runtime: { type: 'string' },
  }, CANARY_USAGE);
  const reporter: Reporter = values.json ? 'json' : oneOf(values.reporter, REPORTERS, '--reporter', 'text');
  const output = values.output !== undefined ? outFile(values.output, values.force) : undefined;
  const files = discoverCanaries(positionals.length ? positionals : ['.']);
  if (files.length === 0) throw new UserError(`no *.canary.yaml found under ${positionals.join(', ') || '.'}`);
  const runtime = cliRuntime(values.runtime);
  const ws = new NodeWorkspace(process.cwd(), runtime);
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
  if (output) {
    await writeOutFile(output, text + '\n', values.force);
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
