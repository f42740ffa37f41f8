import type { Log, Result } from 'sarif';
import type { CanaryResult } from '../analysis/verify/canary';
import { formatDiagnostic } from '../formats/diagnostics';

export type Reporter = 'text' | 'json' | 'junit' | 'sarif';
export const REPORTERS: Reporter[] = ['text', 'json', 'junit', 'sarif'];

/** Paths in reports are shown through this (relative to the workspace root). */
export type Display = (path: string) => string;

export function summary(results: CanaryResult[]) {
  const checks = results.flatMap((r) => r.checks);
  const fileErrors = results.reduce((n, r) => n + r.diagnostics.filter((d) => d.severity === 'error' && !r.checks.some((c) => c.line === d.line && d.file === r.file)).length, 0);
  return {
    passed: checks.filter((c) => c.status === 'passed').length,
    failed: checks.filter((c) => c.status === 'failed').length,
    errored: checks.filter((c) => c.status === 'errored').length,
    skipped: checks.filter((c) => c.status === 'skipped').length,
    fileErrors,
  };
}

export function failed(results: CanaryResult[]): boolean {
  const s = summary(results);
  return s.failed + s.errored + s.fileErrors > 0 || results.some((r) => r.diagnostics.some((d) => d.severity === 'error'));
}

export function textReport(results: CanaryResult[], display: Display): string {
  const lines: string[] = [];
  const mark = { passed: '✓', failed: '✗', errored: '!', skipped: '-' } as const;
  for (const r of results) {
    lines.push(`${display(r.file)}${r.model ? `  (model ${display(r.model)})` : ''}`);
    for (const c of r.checks) lines.push(`  ${mark[c.status]} ${c.name}  —  ${c.message}`);
    for (const d of r.diagnostics) lines.push(`  ${formatDiagnostic({ ...d, file: display(d.file) })}`);
  }
  const s = summary(results);
  lines.push('', `${s.passed} passed, ${s.failed} failed${s.errored ? `, ${s.errored} errored` : ''}${s.skipped ? `, ${s.skipped} skipped` : ''}`);
  return lines.join('\n');
}

export function jsonReport(results: CanaryResult[], display: Display): string {
  return JSON.stringify({
    summary: summary(results),
    canaries: results.map((r) => ({
      file: display(r.file), model: r.model && display(r.model), suite: r.suite && display(r.suite), durationMs: r.durationMs,
      checks: r.checks, diagnostics: r.diagnostics.map((d) => ({ ...d, file: display(d.file) })),
    })),
  }, null, 2);
}

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
    // eslint-disable-next-line no-control-regex
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '');
}

/** JUnit XML (the Jenkins/Surefire dialect most CI systems read), one testsuite per canary file. */
export function junitReport(results: CanaryResult[], display: Display): string {
  const s = summary(results);
  const total = results.reduce((n, r) => n + Math.max(1, r.checks.length), 0);
  const time = results.reduce((t, r) => t + r.durationMs, 0) / 1000;
  const out = ['<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="circuitlens canary" tests="${total}" failures="${s.failed}" errors="${s.errored + (results.some((r) => r.checks.length === 0) ? 1 : 0)}" skipped="${s.skipped}" time="${time.toFixed(3)}">`];
  for (const r of results) {
    const f = display(r.file);
    const fails = r.checks.filter((c) => c.status === 'failed').length;
    const errs = r.checks.filter((c) => c.status === 'errored').length + (r.checks.length === 0 ? 1 : 0);
    out.push(`  <testsuite name="${xml(f)}" tests="${Math.max(1, r.checks.length)}" failures="${fails}" errors="${errs}" skipped="${r.checks.filter((c) => c.status === 'skipped').length}" time="${(r.durationMs / 1000).toFixed(3)}" file="${xml(f)}">`);
    if (r.checks.length === 0) {
      const msg = r.diagnostics.filter((d) => d.severity === 'error').map((d) => formatDiagnostic({ ...d, file: display(d.file) })).join('\n') || 'no checks ran';
      out.push(`    <testcase name="(file)" classname="${xml(f)}" file="${xml(f)}" time="0"><error message="${xml(msg.split('\n')[0]!)}" type="FileError">${xml(msg)}</error></testcase>`);
    }
    for (const c of r.checks) {
      const open = `    <testcase name="${xml(c.name)}" classname="${xml(f)}" file="${xml(f)}" line="${c.line}" time="${(c.durationMs / 1000).toFixed(3)}"`;
      const where = `${f}:${c.line}:${c.col}`;
      if (c.status === 'passed') out.push(`${open}/>`);
      else if (c.status === 'skipped') out.push(`${open}><skipped message="${xml(c.message)}"/></testcase>`);
      else {
        const tag = c.status === 'failed' ? 'failure' : 'error';
        out.push(`${open}><${tag} message="${xml(c.message)}" type="${c.status === 'failed' ? 'CanaryCheckFailed' : 'CanaryCheckError'}">${xml(`${where}: expected ${c.expected}\n${c.message}`)}</${tag}></testcase>`);
      }
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return out.join('\n');
}

/** SARIF 2.1.0: failed checks and file errors as results at their file and line, for code-scanning tools. */
export function sarifReport(results: CanaryResult[], display: Display, version: string): string {
  const sarifResults: Result[] = [];
  for (const r of results) {
    for (const d of r.diagnostics) {
      const isCheck = r.checks.some((c) => (c.status === 'failed' || c.status === 'errored') && c.line === d.line && d.file === r.file);
      const failedCheck = isCheck && r.checks.find((c) => c.line === d.line)?.status === 'failed';
      sarifResults.push({
        ruleId: failedCheck ? 'circuitlens/canary-check-failed' : isCheck ? 'circuitlens/canary-check-error' : 'circuitlens/file-problem',
        level: d.severity === 'warning' ? 'warning' : 'error',
        message: { text: d.message },
        locations: [{
          physicalLocation: {
            artifactLocation: { uri: display(d.file).split('\\').join('/'), uriBaseId: '%SRCROOT%' },
            region: { startLine: d.line, startColumn: d.col, ...(d.endLine ? { endLine: d.endLine, endColumn: d.endCol } : {}) },
          },
        }],
      });
    }
  }
  const log: Log = {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [{
      tool: {
        driver: {
          name: 'CircuitLens', version, informationUri: 'https://github.com/circuitlens/circuitlens',
          rules: [
            { id: 'circuitlens/canary-check-failed', name: 'CanaryCheckFailed', shortDescription: { text: 'A canary check of a model failed.' }, defaultConfiguration: { level: 'error' } },
            { id: 'circuitlens/canary-check-error', name: 'CanaryCheckError', shortDescription: { text: 'A canary check could not run.' }, defaultConfiguration: { level: 'error' } },
            { id: 'circuitlens/file-problem', name: 'FileProblem', shortDescription: { text: 'A suite, canary or circuit file has a problem.' }, defaultConfiguration: { level: 'error' } },
          ],
        },
      },
      results: sarifResults,
    }],
  };
  return JSON.stringify(log, null, 2);
}
