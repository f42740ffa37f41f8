// Mutation fuzzing of the suite, canary and circuit parsers: whatever the bytes, a parser returns diagnostics
// (with sane positions) and never throws.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseCanary } from '../../core/formats/canary';
import { parseCircuit } from '../../core/formats/circuit';
import { parseSuite } from '../../core/formats/suite';
import type { Diagnostic } from '../../core/formats/diagnostics';
import { EXAMPLES } from '../helpers';

/** A small deterministic PRNG (mulberry32), so a failure reproduces from its seed. */
function rng(seed: number) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TOKENS = [':', '-', ' ', '\n', '  ', '"', "'", '{', '}', '[', ']', ',', '#', '&a', '*a', '!!str', '>=', '0.9', '-1', '1e400', 'null', 'true', '\t', '\u0000', 'é', '🙂', 'name:', 'prompts:', 'checks:', 'nodes', '<<: *a', '---', '...', '%YAML 1.2', '"\\u', '{{', 'a1.h99', 'schemaVersion'];

function mutate(text: string, r: () => number): string {
  let s = text;
  const n = 1 + Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const at = Math.floor(r() * (s.length + 1));
    const op = Math.floor(r() * 7);
    if (op === 0) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(r() * 8));
    else if (op === 1) s = s.slice(0, at) + TOKENS[Math.floor(r() * TOKENS.length)] + s.slice(at);
    else if (op === 2) s = s.slice(0, at) + String.fromCharCode(Math.floor(r() * 0x3000)) + s.slice(at);
    else if (op === 3) { const lines = s.split('\n'); const k = Math.floor(r() * lines.length); lines.splice(k, 0, lines[Math.floor(r() * lines.length)]!); s = lines.join('\n'); }
    else if (op === 4) { const lines = s.split('\n'); const k = Math.floor(r() * lines.length); lines[k] = ' '.repeat(Math.floor(r() * 6)) + lines[k]!.trimStart(); s = lines.join('\n'); }
    else if (op === 5) s = s.slice(0, at);
    else s = s.slice(0, at) + s.slice(Math.floor(r() * s.length));
  }
  return s;
}

function checkDiagnostics(ds: Diagnostic[], text: string, where: string) {
  const lines = text.split('\n').length;
  for (const d of ds) {
    assert.ok(Number.isInteger(d.line) && d.line >= 1 && d.line <= lines + 1, `${where}: line ${d.line} of ${lines}`);
    assert.ok(Number.isInteger(d.col) && d.col >= 1, `${where}: col ${d.col}`);
    assert.ok(typeof d.message === 'string' && d.message.length > 0, `${where}: empty message`);
  }
}

test('10,000+ mutations of suites, canaries and circuits: no parser throws', () => {
  const seeds = {
    suite: fs.readFileSync(path.join(EXAMPLES, 'induction.suite.yaml'), 'utf8'),
    canary: fs.readFileSync(path.join(EXAMPLES, 'induction-gpt2.canary.yaml'), 'utf8'),
    circuit: fs.readFileSync(path.join(EXAMPLES, 'induction-gpt2.circuit.json'), 'utf8'),
  };
  const parsers = {
    suite: (t: string) => parseSuite('f.suite.yaml', t).diagnostics,
    canary: (t: string) => parseCanary('f.canary.yaml', t).diagnostics,
    circuit: (t: string) => parseCircuit('f.circuit.json', t).diagnostics,
  };
  const r = rng(20261123);
  let runs = 0;
  let withErrors = 0;
  for (let i = 0; i < 3400; i++) {
    for (const kind of ['suite', 'canary', 'circuit'] as const) {
      const text = mutate(seeds[kind], r);
      let ds: Diagnostic[];
      try {
        ds = parsers[kind](text);
      } catch (e) {
        assert.fail(`${kind} parser threw on mutation ${i}: ${(e as Error).stack}\n--- input ---\n${text}`);
      }
      checkDiagnostics(ds, text, `${kind} #${i}`);
      if (ds.length) withErrors++;
      runs++;
    }
  }
  assert.ok(runs >= 10_000);
  // The mutations must actually break files, or the test proves nothing.
  assert.ok(withErrors > runs * 0.3, `only ${withErrors} of ${runs} mutations produced diagnostics`);
});
