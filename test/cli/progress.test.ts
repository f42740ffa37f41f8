// Long CLI analyses say their cost before they start and show rows, rate and time left on stderr — never on
// stdout, so --json stays parseable; quick commands print nothing there.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ROOT } from '../helpers';

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'circuitlens.js'), ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('edge attribution reports its phases with rows, rate and time left on stderr; stdout is only the JSON', () => {
  const r = cli(['attribute', 'examples/induction.suite.yaml', '--level', 'edge', '--json'], { CIRCUITLENS_PROGRESS: 'always' });
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.level, 'edge');
  const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('circuitlens attribute: edge sets:'));
  assert.ok(lines.length >= 3, r.stderr);
  const total = j.prompts * (j.edges.length + 1);
  assert.match(lines[0]!, new RegExp(`0/${total.toLocaleString('en')} rows$`));
  assert.match(lines[1]!, /rows, [\d,.]+ rows\/s, about [\d.]+ (s|min) left$/);
  assert.match(lines.at(-1)!, new RegExp(`${total.toLocaleString('en')}/${total.toLocaleString('en')} rows, .* done in`));
});

test('gradient attribution and discovery report their phases too', () => {
  const g = cli(['attribute', 'examples/induction.suite.yaml', '--method', 'gradient', '--steps', '4', '--json'], { CIRCUITLENS_PROGRESS: 'always' });
  assert.equal(g.code, 0, g.stderr);
  assert.match(g.stderr, /circuitlens attribute: gradients \(EAP-IG, 4 steps\): \d+\/\d+ rows/);
  const d = cli(['verify', 'examples/induction-gpt2.circuit.json', '--json'], { CIRCUITLENS_PROGRESS: 'always' });
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stderr, /circuitlens verify: ablation sets: \d+\/\d+ rows/);
  JSON.parse(d.stdout);
});

test('a quick command prints no progress (not a terminal, under the quiet period)', () => {
  const r = cli(['run', 'examples/induction.suite.yaml', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /rows/);
});
