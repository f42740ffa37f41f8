// The CLI as a user installs it: the packed package (what `npm publish` ships, per .npmignore) unpacked into a
// project's node_modules, its bin run through the link npm makes (`node_modules/.bin/circuitlens`, as a global
// or `npm link` install does), through `npx circuitlens`, and as `node bin/circuitlens.js`. A bin that starts
// only under one file name prints nothing and exits 0, so every case checks real output.
import { before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { EXAMPLES, ROOT } from '../helpers';

// Under the repository, so the unpacked package resolves its dependencies from the repository's node_modules
// by Node's usual upward lookup (nothing is downloaded).
const PROJECT = path.join(ROOT, 'out', 'installed-cli');
const LINK = path.join(PROJECT, 'node_modules', '.bin', 'circuitlens');
const MODEL = path.join(EXAMPLES, 'induction-gpt2.onnx');

function run(cmd: string, args: string[], cwd = PROJECT) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, npm_config_offline: 'true' } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function assertInfo(r: { code: number; stdout: string; stderr: string }, how: string) {
  assert.equal(r.code, 0, `${how}: exit ${r.code}\n${r.stderr}`);
  const info = JSON.parse(r.stdout);
  assert.equal(info.layers, 2, how);
  assert.equal(info.heads, 4, how);
  assert.ok(Object.keys(info.hooks).length > 10, how);
}

describe('the CLI as installed', () => {
  before(() => {
    fs.rmSync(PROJECT, { recursive: true, force: true });
    fs.mkdirSync(path.join(PROJECT, 'node_modules', '.bin'), { recursive: true });
    fs.writeFileSync(path.join(PROJECT, 'package.json'), JSON.stringify({ name: 'uses-circuitlens', private: true, dependencies: { circuitlens: '*' } }));
    const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', PROJECT], { cwd: ROOT, encoding: 'utf8' }));
    const tgz = path.join(PROJECT, packed[0].filename);
    const pkgDir = path.join(PROJECT, 'node_modules', 'circuitlens');
    fs.mkdirSync(pkgDir);
    execFileSync('tar', ['-xzf', tgz, '-C', pkgDir, '--strip-components=1']);
    fs.symlinkSync(path.join('..', 'circuitlens', 'bin', 'circuitlens.js'), LINK);
  });

  test('the packed package carries the built CLI and not the sources or tests', () => {
    const files = new Set(execFileSync('tar', ['-tzf', fs.readdirSync(PROJECT).filter((f) => f.endsWith('.tgz')).map((f) => path.join(PROJECT, f))[0]!], { encoding: 'utf8' }).split('\n'));
    for (const f of ['package/bin/circuitlens.js', 'package/dist/cli.js', 'package/package.json', 'package/examples/induction.suite.yaml']) assert.ok(files.has(f), f);
    assert.ok(![...files].some((f) => f.startsWith('package/test/') || f.startsWith('package/core/')), 'sources or tests packed');
  });

  test('through the link npm makes for a global or linked install', () => {
    assertInfo(run(LINK, ['info', MODEL, '--json']), 'node_modules/.bin/circuitlens');
  });

  test('through npx, info and canary --reporter junit', () => {
    assertInfo(run('npx', ['--no-install', 'circuitlens', 'info', MODEL, '--json']), 'npx circuitlens');
    const r = run('npx', ['--no-install', 'circuitlens', 'canary', EXAMPLES, '--reporter', 'junit']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(XMLValidator.validate(r.stdout), true, r.stdout.slice(0, 500));
    const doc = new XMLParser({ ignoreAttributes: false }).parse(r.stdout);
    assert.ok(Number(doc.testsuites['@_tests']) >= 10, `only ${doc.testsuites['@_tests']} checks ran`);
  });

  test('as node bin/circuitlens.js, and a bad command still fails loudly', () => {
    assertInfo(run(process.execPath, [path.join(ROOT, 'bin', 'circuitlens.js'), 'info', MODEL, '--json'], ROOT), 'node bin/circuitlens.js');
    const r = run(LINK, ['no-such-command']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command "no-such-command"/);
  });
});
