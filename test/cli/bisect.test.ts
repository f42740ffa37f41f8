// circuitlens bisect GOOD BAD --canary F: the damaged GPT-2 demo (made here) bisected through the built CLI; JSON
// on stdout only, progress on stderr; exit 0 when a restoring set is found, 1 when none restores, 2 on bad input.
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AttrType } from '../../core/onnx/model';
import { damagedCopy, type Damage } from '../damage';
import { EXAMPLES } from '../helpers';
import { cli } from './run-cli';

const GPT2 = path.join(EXAMPLES, 'induction-gpt2.onnx');
const CANARY = path.join(EXAMPLES, 'induction-gpt2.canary.yaml');
const TOKENIZER = path.join(EXAMPLES, 'tokenizer.json');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-bisect-cli-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const DAMAGE: Damage[] = [{ tensor: 'onnx::MatMul_274', kind: 'noise', scale: 1 }, { tensor: 'onnx::MatMul_272', kind: 'zero' }];

describe('circuitlens bisect', () => {
  test('--json: the damaged tensors, most restoring first, with components, consumers and groups; exit 0', () => {
    const bad = damagedCopy(GPT2, DAMAGE, { jitter: 0.01, dir, name: 'damaged.onnx', withTokenizer: TOKENIZER });
    const r = cli(['bisect', GPT2, bad, '--canary', CANARY, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.check, 'continues repeated text');
    assert.deepEqual(j.culprits.map((c: { tensor: string }) => c.tensor), ['onnx::MatMul_274', 'onnx::MatMul_272']);
    assert.deepEqual(j.culprits.map((c: { component: string; layer: number }) => `${c.component}@${c.layer}`), ['attention@1', 'mlp@0']);
    assert.deepEqual(j.culprits[0].consumers, ['/blocks.1/attn/qkv/MatMul']);
    assert.equal(j.culprits[0].group, 'layer 1 attention');
    for (const c of j.culprits) assert.ok(typeof c.restored === 'number' && c.restored > 0 && c.restored < 1 && c.passes === false);
    assert.equal(j.restores, true);
    assert.equal(j.together.passes, true);
    assert.equal(j.good.value, 1);
    assert.ok(j.bad.value < 0.95);
    assert.equal(j.differing, 29);
    assert.ok(Number.isInteger(j.evaluations) && j.evaluations < j.differing + 2, `${j.evaluations} evaluations`);
    assert.deepEqual(j.groups.map((g: { group: string }) => g.group), [
      'embedding', 'layer 0 norm', 'layer 0 attention', 'layer 0 mlp', 'layer 1 norm', 'layer 1 attention', 'layer 1 mlp', 'final norm', 'unembedding',
    ]);
    assert.ok(j.notes.some((n: string) => /^heuristic/.test(n)));
    // Progress on stderr, one line per evaluation of round 1 at least, with the rate.
    assert.ok(r.stderr.split('\n').filter((l) => /^circuitlens bisect: .* evaluations in [\d.]+ s \([\d.]+\/s\)/.test(l)).length >= 9, r.stderr);
  });

  test('text output names the culprits, the groups and the cost', () => {
    const bad = path.join(dir, 'damaged.onnx');
    if (!fs.existsSync(bad)) damagedCopy(GPT2, DAMAGE, { jitter: 0.01, dir, name: 'damaged.onnx', withTokenizer: TOKENIZER });
    const r = cli(['bisect', GPT2, bad, '--canary', CANARY, '--check', 'continues repeated text']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^check "continues repeated text" \(accuracy >= 0\.95\): 1\.0000 on /);
    assert.match(r.stdout, /\n  onnx::MatMul_274 +layer 1 attention +\d+\.\d %/);
    assert.match(r.stdout, /\n\d+ evaluations in [\d.]+ s/);
    assert.match(r.stdout, /Note: heuristic/);
  });

  test('exit 1 when copying every tensor from GOOD does not restore the check (the graphs differ in an attribute)', () => {
    // Same operators and tensors, but every LayerNormalization's epsilon made huge: no weights can undo that.
    const bad = damagedCopy(GPT2, [], {
      jitter: 0.01, dir, name: 'graph-broken.onnx', withTokenizer: TOKENIZER,
      edit: (m) => { for (const n of m.graph!.node.filter((x) => x.opType === 'LayerNormalization')) n.attribute = [...n.attribute.filter((a) => a.name !== 'epsilon'), { name: 'epsilon', type: AttrType.FLOAT, f: 1e4 }]; },
    });
    const r = cli(['bisect', GPT2, bad, '--canary', CANARY, '--json']);
    assert.equal(r.code, 1, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.restores, false);
    assert.deepEqual(j.culprits, []);
    assert.equal(j.together.passes, false);
  });

  test('bad input: exit 2 with a message', () => {
    const cases: [string[], RegExp][] = [
      [['bisect', GPT2, '--canary', CANARY], /expected two models, GOOD\.onnx and BAD\.onnx/],
      [['bisect', GPT2, GPT2], /--canary FILE is required/],
      [['bisect', GPT2, path.join(EXAMPLES, 'induction-llama.onnx'), '--canary', CANARY], /not the same architecture with different weights/],
      [['bisect', GPT2, path.join(dir, 'missing.onnx'), '--canary', CANARY], /model file not found/],
      [['bisect', GPT2, GPT2, '--canary', path.join(dir, 'missing.canary.yaml')], /file not found/],
    ];
    for (const [args, re] of cases) {
      const r = cli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.equal(r.stdout, '');
    }
  });
});
