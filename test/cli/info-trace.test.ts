import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { allHookNames } from '../../core/hooks';
import { decodeRef, EXAMPLES, FIXTURES, loadReference, maxAbsDiff, TOL } from '../helpers';
import { cli } from './run-cli';

const GPT2 = path.join(EXAMPLES, 'induction-gpt2.onnx');
const LLAMA = path.join(EXAMPLES, 'induction-llama.onnx');

describe('circuitlens info', () => {
  for (const [file, arch, pos] of [[GPT2, 'gpt2', true], [LLAMA, 'llama', false]] as const) {
    test(`${path.basename(file)} --json lists every hook`, () => {
      const r = cli(['info', file, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout);
      assert.equal(j.architecture, arch);
      assert.equal(j.layers, 2);
      assert.equal(j.heads, 4);
      assert.equal(j.dModel, 64);
      assert.equal(j.vocab, 217);
      assert.deepEqual(Object.keys(j.hooks), allHookNames(2, pos));
      for (const t of Object.values(j.hooks)) assert.equal(typeof t, 'string');
    });
  }
});

describe('circuitlens trace', () => {
  const ref = loadReference('induction-llama');
  const p = ref.prompts[1]!;

  test('--prompt --json prints DESIGN §6 JSON matching PyTorch, batch dimension dropped', () => {
    const r = cli(['trace', LLAMA, '--prompt', p.text, '--hooks', 'blocks.1.attn.hook_*,logits', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.deepEqual(Object.keys(j).sort(), ['activations', 'ids', 'logits']);
    assert.deepEqual(j.ids, p.ids);
    assert.deepEqual(Object.keys(j.activations).sort(), ['blocks.1.attn.hook_pattern', 'blocks.1.attn.hook_z', 'logits']);
    const z = j.activations['blocks.1.attn.hook_z'];
    assert.deepEqual(z.shape, [20, 4, 16]);
    const want = decodeRef(ref.clean['blocks.1.attn.hook_z']!);
    const w = want.data.length / 4;
    assert.ok(maxAbsDiff({ dims: z.shape, data: Float32Array.from(z.data) }, { dims: [20, 4, 16], data: want.data.subarray(w, 2 * w) }) <= TOL);
    assert.deepEqual(j.logits.shape, [20, 217]);
  });

  test('--ids and --ablate with --ablation zero equal the reference ablation', () => {
    const a = ref.ablations.find((x) => x.kind === 'zero' && x.nodes.join() === 'a1.h0')!;
    const r = cli(['trace', LLAMA, '--ids', p.ids.join(','), '--ablate', 'a1.h0', '--ablation', 'zero', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    const want = decodeRef(a.logits);
    const w = want.data.length / 4;
    assert.ok(maxAbsDiff({ dims: j.logits.shape, data: Float32Array.from(j.logits.data) }, { dims: [20, 217], data: want.data.subarray(w, 2 * w) }) <= TOL);
  });

  test('a model without tokenizer.json takes token ids, and says so when given text', () => {
    const m = path.join(FIXTURES, 'models', 'induction-gpt2-opset14.onnx');
    const ok = cli(['trace', m, '--ids', '5,6,7', '--json']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(JSON.parse(ok.stdout).logits.shape, [3, 217]);
    const bad = cli(['trace', m, '--prompt', 'Mary went']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /no tokenizer\.json.*--ids/);
  });

  test('human output shows tokens and top predictions', () => {
    const r = cli(['trace', GPT2, '--prompt', 'Mary went to the park Mary went to']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /tokens \(8\): "Mary" "went"/);
    assert.match(r.stdout, /next token \(top 5\):\n {2}"the"/);
  });
});

describe('bad input: exit 2 and one clear message', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-bad-'));
  const truncated = path.join(tmp, 'truncated.onnx');
  fs.writeFileSync(truncated, fs.readFileSync(GPT2).subarray(0, 300_000));
  const notOnnx = path.join(tmp, 'notes.onnx');
  fs.writeFileSync(notOnnx, 'this is a text file, not a model\n');
  const long = Array.from({ length: 70 }, () => 'Mary').join(' ');

  const cases: [string, string[], RegExp][] = [
    ['truncated file', ['info', truncated], /not a readable ONNX model.*truncated/],
    ['not ONNX', ['info', notOnnx], /not a readable ONNX model|not an ONNX model/],
    ['missing file', ['info', path.join(tmp, 'nope.onnx')], /model file not found/],
    ['prompt longer than the context', ['trace', GPT2, '--prompt', long], /70 tokens, longer than the model's context of 64 tokens/],
    ['unknown node id', ['trace', GPT2, '--ids', '1,2', '--ablate', 'a1.h9'], /node "a1\.h9" is not in this model: it has layers 0\.\.1 and heads 0\.\.3/],
    ['malformed node id', ['trace', GPT2, '--ids', '1,2', '--ablate', 'head3'], /unknown node id "head3" \(expected input, logits, a<L>\.h<H> or m<L>/],
    ['hook glob matching nothing', ['trace', GPT2, '--ids', '1,2', '--hooks', 'blocks.9.*'], /matches no hook/],
    ['token id outside the vocabulary', ['trace', GPT2, '--ids', '1,999'], /token id 999, outside the vocabulary 0\.\.216/],
    ['unknown flag', ['trace', GPT2, '--ids', '1', '--frobnicate'], /frobnicate[\s\S]*usage: circuitlens trace/],
    ['bad --ablation', ['trace', GPT2, '--ids', '1', '--ablate', 'm0', '--ablation', 'noise'], /--ablation must be one of zero, mean/],
  ];
  for (const [name, args, re] of cases) {
    test(name, () => {
      const r = cli(args);
      assert.equal(r.code, 2, `exit ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, re);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      assert.equal(r.stdout, '');
    });
  }
});
