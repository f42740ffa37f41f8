// Cancelling long work stops it between engine calls and leaves no partial output.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { evaluateSets, prepare } from '../../core/analysis/evaluate';
import { Cancelled } from '../../core/errors';
import { resolvePrompts } from '../../core/analysis/prompts';
import { parseSuite } from '../../core/formats/suite';
import { allComponentNodes } from '../../core/ids';
import { loadEngine } from '../../core/nodejs/load';
import { EXAMPLES, ROOT } from '../helpers';

test('an aborted evaluation throws Cancelled before finishing', async () => {
  const engine = await loadEngine(path.join(EXAMPLES, 'induction-gpt2.onnx'));
  try {
    const file = path.join(EXAMPLES, 'induction.suite.yaml');
    const prompts = resolvePrompts(parseSuite(file, fs.readFileSync(file, 'utf8')).suite!, engine).prompts;
    const abort = new AbortController();
    const ctx = await prepare(engine, prompts, 'mean', { signal: abort.signal, maxRows: 8 });
    const sets = allComponentNodes(engine.info).map((n) => [n]);
    const run = evaluateSets(ctx, sets);
    setTimeout(() => abort.abort(), 5);
    await assert.rejects(run, Cancelled);
  } finally {
    await engine.release();
  }
});

test('a discover killed mid-run leaves no circuit file', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-cancel-'));
  const out = path.join(dir, 'c.circuit.json');
  const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'circuitlens.js'), 'discover', path.join(EXAMPLES, 'induction.suite.yaml'), '--method', 'acdc', '--out', out], { stdio: 'ignore' });
  // Listen before anything else: a fast machine may finish the discovery before the signal is sent.
  const exited = new Promise((r) => child.once('exit', r));
  await new Promise((r) => setTimeout(r, 700));
  child.kill('SIGINT');
  await exited;
  const files = fs.readdirSync(dir);
  if (files.includes('c.circuit.json')) {
    // It finished before the signal: then the file must be complete.
    assert.equal(JSON.parse(fs.readFileSync(out, 'utf8')).schemaVersion, 1);
  } else {
    assert.deepEqual(files.filter((f) => !f.endsWith('.tmp')), []);
  }
});
