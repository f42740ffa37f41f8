// Where "Keep both" writes when a file is already there (extension/files.ts freshName): a number before
// CircuitLens' two-part extensions, the first one free.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { freshName } from '../../extension/files';

const taken = (...names: string[]) => (f: string) => names.includes(path.basename(f));

test('a free name is kept', () => {
  assert.equal(freshName('/w/x.circuit.json', taken()), '/w/x.circuit.json');
});

test('a taken name gets -2, -3, … before .circuit.json, .eap-ig.json, or the plain extension', () => {
  assert.equal(freshName('/w/induction-gpt2.circuit.json', taken('induction-gpt2.circuit.json')), '/w/induction-gpt2-2.circuit.json');
  assert.equal(freshName('/w/x.circuit.json', taken('x.circuit.json', 'x-2.circuit.json')), '/w/x-3.circuit.json');
  assert.equal(freshName('/w/x.eap-ig.json', taken('x.eap-ig.json')), '/w/x-2.eap-ig.json');
  assert.equal(freshName('/w/a.b.txt', taken('a.b.txt')), '/w/a.b-2.txt');
});
