// `circuitlens redundancy`, `circuitlens relate` and the canary checks built on them (backup/interaction,
// relate/jaccard), run as a user would: on both demo models and on zoo families.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXAMPLES, FIXTURES } from '../helpers';
import { cli } from './run-cli';

const REL = path.join(FIXTURES, 'relations');
const GPT2_C = path.join(EXAMPLES, 'induction-gpt2.circuit.json');
const LLAMA_C = path.join(EXAMPLES, 'induction-llama.circuit.json');
const ACDC_C = path.join(REL, 'llama-acdc.circuit.json');
const ZOO_C = path.join(REL, 'zoo-gpt2.circuit.json');

interface Pair { a: string; b: string; effectA: number; effectB: number; effectAB: number; interaction: number; byMetric: Record<string, { interaction: number }> }

function json<T>(args: string[]): T {
  const r = cli(args);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as T;
}

describe('circuitlens redundancy', () => {
  test('--help, and bad flags exit 2 with one message', () => {
    const h = cli(['redundancy', '--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /interaction = effect\(A∪B\) − effect\(A\) − effect\(B\)/);
    for (const [args, msg] of [
      [['--metric', 'nope'], /--metric must be one of logit_diff, prob, accuracy, kl/],
      [['--top', '1'], /--top must be a whole number of at least 2/],
      [['--top', '3', '--nodes', 'a0.h0,a0.h1'], /--top K or --nodes IDS, not both/],
      [['--nodes', 'a0.h0,a9.h0'], /a9\.h0/],
    ] as [string[], RegExp][]) {
      const r = cli(['redundancy', path.join(EXAMPLES, 'induction.suite.yaml'), ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, msg);
    }
  });

  test('gpt2 demo: every pair of the 10 nodes, DESIGN §7 keys; logit_diff and accuracy name different backups', () => {
    const r = json<{ metric: string; pairs: Pair[]; backups: Record<string, string[][]>; nodes: { id: string }[] }>(['redundancy', path.join(EXAMPLES, 'induction.suite.yaml'), '--json']);
    assert.equal(r.metric, 'logit_diff');
    assert.equal(r.nodes.length, 10);
    assert.equal(r.pairs.length, 45);
    for (const p of r.pairs) {
      assert.deepEqual(Object.keys(p).slice(0, 6), ['a', 'b', 'effectA', 'effectB', 'effectAB', 'interaction']);
      assert.ok(Math.abs(p.interaction - (p.effectAB - p.effectA - p.effectB)) < 1e-5);
    }
    // a1.h1 and a1.h2 interact in the logit difference (largest interaction) but not in accuracy.
    const top = r.pairs[0]!;
    assert.deepEqual([top.a, top.b].sort(), ['a1.h1', 'a1.h2']);
    assert.equal(top.byMetric.accuracy!.interaction, 0);
    assert.ok(r.backups.accuracy!.some((b) => b.includes('a1.h1')));
  });

  test('llama demo under accuracy: the previous-token heads back each other up', () => {
    const r = json<{ metric: string; pairs: Pair[]; backups: Record<string, string[][]> }>(['redundancy', path.join(EXAMPLES, 'induction.suite.yaml'), '--model', path.join(EXAMPLES, 'induction-llama.onnx'), '--metric', 'accuracy', '--json']);
    assert.equal(r.metric, 'accuracy');
    const best = r.pairs[0]!;
    assert.ok(['a0.h2', 'a0.h0'].includes(best.a === 'a0.h3' ? best.b : best.a), `${best.a}+${best.b}`);
    assert.ok(best.interaction > 0.2);
    assert.ok(r.backups.accuracy!.length >= 2);
  });

  test('zoo gpt2 and llama: runs with --top 4 and --nodes; --out refuses an existing file without --force', () => {
    for (const fam of ['gpt2', 'llama']) {
      const r = json<{ pairs: Pair[]; nodes: { id: string }[] }>(['redundancy', path.join(FIXTURES, 'zoo', fam, 'induction.suite.yaml'), '--top', '4', '--json']);
      assert.equal(r.nodes.length, 4);
      assert.equal(r.pairs.length, 6);
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-redund-'));
    const out = path.join(dir, 'r.json');
    const suite = path.join(FIXTURES, 'zoo', 'llama', 'induction.suite.yaml');
    assert.equal(cli(['redundancy', suite, '--nodes', 'a0.h0,a0.h1,m0', '--out', out]).code, 0);
    assert.equal((JSON.parse(fs.readFileSync(out, 'utf8')) as { pairs: Pair[] }).pairs.length, 3);
    const again = cli(['redundancy', suite, '--nodes', 'a0.h0,a0.h1', '--out', out]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /exists; pass --force/);
    assert.equal(cli(['redundancy', suite, '--nodes', 'a0.h0,a0.h1', '--out', out, '--force']).code, 0);
  });
});

interface Faith { logit_diff: number; accuracy: number; kl: number }
interface RelateJson {
  circuits: { file: string; nodes: string[]; faithfulness: Faith }[];
  pairs: { a: string; b: string; jaccard: number; shared: string[]; union: { size: number; onA: Faith | null; onB: Faith | null }; intersection: { size: number; onA: Faith | null; onB: Faith | null } }[];
  hubs: { id: string; circuits: string[]; hurts: number }[];
}

describe('circuitlens relate', () => {
  test('the two demo circuits, a discovered one and a zoo circuit: Jaccard, union and intersection, hubs', () => {
    const r = json<RelateJson>(['relate', GPT2_C, LLAMA_C, ACDC_C, ZOO_C, '--json']);
    assert.equal(r.circuits.length, 4);
    assert.equal(r.pairs.length, 6);
    const pair = (a: string, b: string) => r.pairs.find((p) => p.a.endsWith(a) && p.b.endsWith(b))!;
    // gpt2 {a0.h0,a0.h1,a0.h2,a1.*,m0} vs llama {a0.h1,a0.h2,a0.h3,a1.*,m0}: 7 shared of 9.
    const gl = pair('induction-gpt2.circuit.json', 'induction-llama.circuit.json');
    assert.equal(gl.jaccard, 0.777778);
    assert.equal(gl.shared.length, 7);
    assert.equal(gl.union.size, 9);
    // The llama circuit needs a0.h3 (and its backups), which the intersection lacks: faithfulness falls on llama's suite.
    assert.ok(gl.intersection.onB!.accuracy < 0.8, `${gl.intersection.onB!.accuracy}`);
    assert.ok(gl.union.onA!.accuracy >= 0.95 && gl.union.onB!.accuracy >= 0.95);
    assert.equal(pair('induction-gpt2.circuit.json', 'llama-acdc.circuit.json').jaccard, 0.6);
    // Nodes in 3 or 4 of the 4 circuits are hubs.
    const hubs = new Set(r.hubs.map((h) => h.id));
    for (const id of ['a0.h1', 'a0.h2', 'a1.h0', 'a1.h1', 'a1.h2']) assert.ok(hubs.has(id), id);
    assert.ok(r.hubs.every((h) => h.circuits.length >= 3 || h.hurts >= 2));
  });

  test('union faithfulness on a circuit\'s suite equals verify of a circuit file with those nodes', () => {
    const r = json<RelateJson>(['relate', GPT2_C, LLAMA_C, '--json']);
    const p = r.pairs[0]!;
    const union = [...new Set([...r.circuits[0]!.nodes, ...r.circuits[1]!.nodes])];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-relate-'));
    const file = path.join(dir, 'union.circuit.json');
    const c = JSON.parse(fs.readFileSync(LLAMA_C, 'utf8'));
    fs.writeFileSync(file, JSON.stringify({ ...c, nodes: union, model: { path: path.join(EXAMPLES, 'induction-llama.onnx') }, suite: path.join(EXAMPLES, 'induction.suite.yaml') }));
    const v = json<{ faithfulnessByMetric: Faith }>(['verify', file, '--json']);
    for (const m of ['logit_diff', 'accuracy', 'kl'] as const) assert.ok(Math.abs(v.faithfulnessByMetric[m] - p.union.onB![m]) < 1e-5, m);
  });

  test('bad input: one circuit, a circuit without a suite', () => {
    const one = cli(['relate', GPT2_C]);
    assert.equal(one.code, 2);
    assert.match(one.stderr, /expected two or more circuit files/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-relate-'));
    const bare = path.join(dir, 'bare.circuit.json');
    const c = JSON.parse(fs.readFileSync(GPT2_C, 'utf8'));
    delete c.suite;
    fs.writeFileSync(bare, JSON.stringify(c));
    const r = cli(['relate', GPT2_C, bare]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /names no suite/);
  });
});

describe('canary checks: backup/interaction and relate/jaccard', () => {
  test('the passing example passes', () => {
    const r = cli(['canary', path.join(REL, 'passing.canary.yaml'), '--reporter', 'json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const checks = JSON.parse(r.stdout).canaries[0].checks as { status: string; actual: number }[];
    assert.deepEqual(checks.map((c) => c.status), ['passed', 'passed']);
    assert.ok(checks[0]!.actual > 0.2);
  });

  test('the failing example fails at each check\'s line', () => {
    const file = path.join(REL, 'failing.canary.yaml');
    const r = cli(['canary', file]);
    assert.equal(r.code, 1);
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    const at = (needle: string) => lines.findIndex((l) => l.includes(needle)) + 1;
    assert.match(r.stdout, new RegExp(`failing\\.canary\\.yaml:${at('name: a1.h2 backs up a1.h1')}:\\d+: error: check "a1.h2 backs up a1.h1" failed: interaction \\(accuracy\\) of a1.h1 and a1.h2 0 is not >= 0.2`));
    assert.match(r.stdout, new RegExp(`failing\\.canary\\.yaml:${at('name: the gpt2 circuit overlaps')}:\\d+: error: .*jaccard .* 0\\.6 is not >= 0\\.7`));
  });

  test('badly formed checks are errors at their line (exit 2)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-relcanary-'));
    const file = path.join(dir, 'bad.canary.yaml');
    fs.writeFileSync(file, [
      `model: ${path.join(EXAMPLES, 'induction-gpt2.onnx')}`, `suite: ${path.join(EXAMPLES, 'induction.suite.yaml')}`, 'checks:',
      '  - name: no pair', '    interaction: ">= 0.1"',
      // jaccard without relate: compares with the circuit re-discovered on the model (compare's check); with relate
      // it still needs the circuit to compare.
      '  - name: no circuit', `    relate: ${GPT2_C}`, '    jaccard: ">= 0.5"', '',
    ].join('\n'));
    const r = cli(['canary', file]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    const out = r.stdout + r.stderr;
    assert.match(out, /bad\.canary\.yaml:5:\d+: error: interaction is measured for a pair of nodes: add backup/);
    assert.match(out, /bad\.canary\.yaml:8:\d+: error: jaccard is measured for a circuit: add circuit/);
  });
});
