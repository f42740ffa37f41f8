// The floors of ARCHITECTURE.md, checked on every import of the product code: a room imports only from its own
// floor and the floors below it, core/ stays free of `vscode` and of Node outside its Node adapters, the host and
// the browser bundle meet only on protocol/ (types only), and no front end imports another.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from '../helpers';

/** Rooms and the rooms each may import from (besides itself). */
const GROUND = ['core/errors', 'core/vocabulary', 'core/ids', 'core/hooks'];
const ALLOWED: Record<string, string[]> = {
  'core/errors': [], 'core/vocabulary': [], 'core/ids': ['core/errors'], 'core/hooks': ['core/errors'],
  'core/tokenizer': GROUND,
  'core/onnx': GROUND,
  'core/formats': [...GROUND, 'schemas'],
  'core/engine': [...GROUND, 'core/onnx', 'core/tokenizer'],
  'core/workspace': [...GROUND, 'core/engine'],
  'core/analysis': [...GROUND, 'core/onnx', 'core/engine', 'core/formats', 'core/workspace'],
  'core/report': [...GROUND, 'core/analysis', 'core/formats'],
  'core/nodejs': [...GROUND, 'core/onnx', 'core/engine', 'core/tokenizer', 'core/workspace', 'core/formats'],
  protocol: ['core/*'],
  cli: ['core/*', 'schemas'],
  extension: ['core/*', 'protocol', 'schemas'],
  webview: ['core/*', 'protocol'],
};

function roomOf(file: string): string {
  const parts = file.split('/');
  if (parts[0] === 'core') return parts.length > 2 ? `core/${parts[1]}` : `core/${parts[1]!.replace(/\.ts$/, '')}`;
  return parts[0]!;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) { if (e.name !== 'generated') out.push(...sources(rel)); } else if (e.name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

const FILES = ['core', 'cli', 'extension', 'webview', 'protocol'].flatMap(sources);
const IMPORT = /^\s*(import|export)\s+(type\s+)?[^'"]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]|import\(['"]([^'"]+)['"]\)/gm;

function importsOf(file: string): { spec: string; typeOnly: boolean }[] {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  return [...text.matchAll(IMPORT)].map((m) => ({ spec: (m[3] ?? m[4] ?? m[5])!, typeOnly: !!m[2] }));
}

test('every room imports only from the floors below it', () => {
  assert.ok(FILES.length > 80, `found ${FILES.length} source files`);
  const bad: string[] = [];
  for (const f of FILES) {
    const room = roomOf(f);
    const allowed = ALLOWED[room];
    assert.ok(allowed, `${f}: room ${room} has no floor in this test (add it here and to ARCHITECTURE.md)`);
    for (const { spec } of importsOf(f)) {
      if (!spec.startsWith('.')) continue;
      const target = roomOf(path.posix.normalize(path.posix.join(path.posix.dirname(f), spec)) + (spec.endsWith('.json') ? '' : '.ts'));
      if (target === room) continue;
      const ok = allowed.some((a) => a === target || (a === 'core/*' && target.startsWith('core/') && target !== 'core/nodejs') || (a === 'core/*' && target === 'core/nodejs' && (room === 'cli' || room === 'extension')));
      if (!ok) bad.push(`${f} (${room}) imports ${spec} (${target})`);
    }
  }
  assert.deepEqual(bad, []);
});

test('core/ has no vscode, and Node only in its Node adapters (core/nodejs)', () => {
  const bad: string[] = [];
  for (const f of FILES.filter((x) => x.startsWith('core/'))) {
    for (const { spec } of importsOf(f)) {
      if (spec === 'vscode') bad.push(`${f}: vscode`);
      if (!f.startsWith('core/nodejs/') && (spec.startsWith('node:') || ['fs', 'path', 'os', 'crypto', 'child_process', 'onnxruntime-node'].includes(spec))) bad.push(`${f}: ${spec}`);
    }
  }
  for (const f of FILES.filter((x) => !x.startsWith('extension/'))) {
    for (const { spec } of importsOf(f)) if (spec === 'vscode') bad.push(`${f}: vscode outside extension/`);
  }
  assert.deepEqual(bad, []);
});

test('protocol/ holds types only: every import is `import type`, and it exports no values', () => {
  for (const f of FILES.filter((x) => x.startsWith('protocol/'))) {
    for (const i of importsOf(f)) assert.ok(i.typeOnly, `${f}: import of ${i.spec} is not type-only`);
    const text = fs.readFileSync(path.join(ROOT, f), 'utf8');
    assert.doesNotMatch(text, /^export\s+(const|let|var|function|class|enum)\b/m, `${f} exports a value`);
  }
});

test('no file in core/ is over 400 lines', () => {
  const long = FILES.filter((f) => f.startsWith('core/')).map((f) => ({ f, n: fs.readFileSync(path.join(ROOT, f), 'utf8').split('\n').length })).filter((x) => x.n > 401);
  assert.deepEqual(long, []);
});
