// --model-url, end to end: workers that do not have the model at the coordinator's path fetch it from a URL (a
// node http server here, serving the demo model's folder) into their cache, once; later workers on that cache reuse
// it; a worker that has the file at the path uses it and fetches nothing. The result equals the local --json byte
// for byte. Other bytes at the URL are refused with both hashes, a 404 is a clear error (exit 2 on the coordinator),
// and the same command run again with a right URL finishes the same chunks. The coordinator's model is a copy in a
// temp folder, removed once its chunks are queued: the worker cannot use the path, only the URL (for prune and
// sensitivity too: each pruned or quantized model is built from the fetched copy).
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { EXAMPLES, FIXTURES, flipMiddle, listing, serveModelFolder, type ModelServer } from '../helpers';
import { cluster, until, type Cluster, type Proc } from './broker-harness';
import { cli } from './run-cli';

const SUITE = path.join(EXAMPLES, 'induction.suite.yaml');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-broker-url-'));
const ENV = { CIRCUITLENS_CHUNK_ROWS: '1', CIRCUITLENS_PROGRESS: 'always', CIRCUITLENS_BROKER_WAIT_S: '60' };
const EDGE = ['attribute', SUITE, '--level', 'edge', '--json'];
const NODE = ['attribute', SUITE, '--json'];
let broker: Cluster;

const MODEL = fs.readFileSync(path.join(EXAMPLES, 'induction-gpt2.onnx'));
const SHA = crypto.createHash('sha256').update(MODEL).digest('hex');
const flipped = flipMiddle(MODEL);
let server: ModelServer;
let base = '';
let requests: string[] = [];

/** The coordinator's copy of the demo model (as model.onnx, with its tokenizer), in a folder of its own. */
function coordinatorCopy(): string {
  const dir = fs.mkdtempSync(path.join(tmp, 'coordinator-'));
  fs.copyFileSync(path.join(EXAMPLES, 'induction-gpt2.onnx'), path.join(dir, 'model.onnx'));
  fs.copyFileSync(path.join(EXAMPLES, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  return path.join(dir, 'model.onnx');
}

/**
 * A coordinator on `model` (default: a copy of the demo model), and once the chunks are queued `queued(model)`
 * (default: its folder removed).
 */
async function coordinator(args: string[], queue: string, modelUrl: string, o: { model?: string; queued?: (model: string) => void } = {}): Promise<Proc> {
  const model = o.model ?? coordinatorCopy();
  const p = broker.start([...args, '--model', model, '--broker', broker.url, '--model-url', modelUrl], { CIRCUITLENS_QUEUE: queue });
  await until('the chunks queued', () => /on (the )?workers/.test(p.err) || p.child.exitCode !== null);
  (o.queued ?? ((m) => fs.rmSync(path.dirname(m), { recursive: true, force: true })))(model);
  return p;
}

const count = (s: string, re: RegExp) => [...s.matchAll(new RegExp(re, 'g'))].length;

let localEdge = '';
let localNode = '';

describe('--broker with --model-url: workers fetch the model, check it, and keep it', { concurrency: false }, () => {
  before(async () => {
    broker = await cluster(path.join(tmp, 'redis'), ENV);
    server = await serveModelFolder(EXAMPLES);
    ({ base, requests } = server);
    for (const [args, set] of [[EDGE, (s: string) => { localEdge = s; }], [NODE, (s: string) => { localNode = s; }]] as const) {
      const r = cli([...args]);
      assert.equal(r.code, 0, r.stderr);
      set(r.stdout);
    }
  });

  after(async () => {
    await broker.close();
    await server.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('fetched once into the cache (the path is not there), reused by the next run\'s workers; equal to the local --json', async () => {
    const cache = path.join(tmp, 'cache');
    const first = await coordinator(EDGE, 'u1', `${base}/induction-gpt2.onnx`);
    const ws = await broker.workers('u1', 1, {}, ['--cache', cache]);
    assert.equal(await first.exit, 0, first.err);
    assert.equal(first.out, localEdge);
    await broker.stop(ws);
    assert.equal(count(ws[0]!.err, /fetched model [0-9a-f]{12}… from http:\/\/127\.0\.0\.1:\d+\/induction-gpt2\.onnx: 2 files/), 1, ws[0]!.err);
    assert.deepEqual(requests, ['/induction-gpt2.onnx', '/tokenizer.json'], 'the model and its tokenizer, each once');
    assert.deepEqual(listing(cache), [SHA]);
    assert.deepEqual(listing(path.join(cache, SHA)), ['.verified.json', 'model.onnx', 'tokenizer.json']);

    // New workers on the same cache (named by CIRCUITLENS_CACHE this time): found there, nothing fetched.
    const second = await coordinator(EDGE, 'u1', `${base}/induction-gpt2.onnx`);
    const again = await broker.workers('u1', 2, { CIRCUITLENS_CACHE: cache });
    assert.equal(await second.exit, 0, second.err);
    assert.equal(second.out, localEdge);
    await broker.stop(again);
    assert.equal(requests.length, 2, `fetched again: ${requests.join(', ')}`);
    const logs = again.map((w) => w.err).join('');
    assert.match(logs, /model [0-9a-f]{12}… found in the cache, not fetched again/);
    assert.doesNotMatch(logs, /fetched model/);
  });

  test('a worker with the right file at the coordinator\'s path uses it: nothing fetched', async () => {
    const cache = path.join(tmp, 'cache-unused');
    const ws = await broker.workers('u2', 1, {}, ['--cache', cache]);
    const before = requests.length;
    const p = broker.start([...NODE, '--broker', broker.url, '--model-url', `${base}/induction-gpt2.onnx`], { CIRCUITLENS_QUEUE: 'u2' });
    assert.equal(await p.exit, 0, p.err);
    assert.equal(p.out, localNode);
    await broker.stop(ws);
    assert.equal(requests.length, before);
    assert.deepEqual(listing(cache), []);
    assert.match(ws[0]!.err, / done: /);
  });

  test('the .onnx at the path is the coordinator\'s but its tokenizer beside it is not: fetched from the URL instead', async () => {
    const cache = path.join(tmp, 'cache-companion');
    const model = coordinatorCopy();
    // The same tokenizer in other bytes (its JSON without the spaces): the worker must not load it as the coordinator's.
    const tok = path.join(path.dirname(model), 'tokenizer.json');
    const p = await coordinator(NODE, 'u7', `${base}/induction-gpt2.onnx`, { model, queued: () => fs.writeFileSync(tok, JSON.stringify(JSON.parse(fs.readFileSync(tok, 'utf8')))) });
    const before = requests.length;
    const ws = await broker.workers('u7', 1, {}, ['--cache', cache]);
    assert.equal(await p.exit, 0, p.err);
    assert.equal(p.out, localNode);
    await broker.stop(ws);
    assert.match(ws[0]!.err, /model\.onnx here is the coordinator's model, but .*tokenizer\.json has \d+ bytes, the coordinator's tokenizer\.json sha256 [0-9a-f]{64} and \d+ bytes: using the model from http:/);
    assert.deepEqual(requests.slice(before), ['/induction-gpt2.onnx', '/tokenizer.json']);
    assert.deepEqual(listing(cache), [SHA]);
    fs.rmSync(path.dirname(model), { recursive: true, force: true });
  });

  test('other bytes at the URL: refused, naming the URL and both hashes; the coordinator exits 2; nothing cached', async () => {
    const cache = path.join(tmp, 'cache-bad');
    const p = await coordinator(NODE, 'u3', `${base}/bad/induction-gpt2.onnx`);
    const ws = await broker.workers('u3', 1, {}, ['--cache', cache]);
    assert.equal(await p.exit, 2, p.err);
    const m = /refused the model: http:\/\/127\.0\.0\.1:\d+\/bad\/induction-gpt2\.onnx served sha256 ([0-9a-f]{64}) \(\d+ bytes\), the coordinator's model\.onnx has sha256 ([0-9a-f]{64})/.exec(p.err);
    assert.ok(m, p.err);
    assert.equal(m[2], SHA);
    assert.equal(m[1], crypto.createHash('sha256').update(flipped).digest('hex'));
    assert.equal(p.out, '');
    await broker.stop(ws);
    assert.doesNotMatch(ws[0]!.err, / done: /);
    assert.deepEqual(listing(cache), [], 'no model and no partial fetch left');
  });

  test('a URL that answers 404: a clear error (exit 2); the same command with the right URL then finishes the same chunks', async () => {
    const cache = path.join(tmp, 'cache-404');
    const ws = await broker.workers('u4', 1, {}, ['--cache', cache]);
    const missing = await coordinator(NODE, 'u4', `${base}/missing.onnx`);
    assert.equal(await missing.exit, 2, missing.err);
    assert.match(missing.err, /could not get the chunk's model: cannot fetch http:\/\/127\.0\.0\.1:\d+\/missing\.onnx: HTTP 404 Not Found/);
    // The failed chunks are still on the broker, under the same ids: run again, they are tried with the new URL.
    const right = await coordinator(NODE, 'u4', `${base}/induction-gpt2.onnx`);
    assert.equal(await right.exit, 0, right.err);
    assert.equal(right.out, localNode);
    await broker.stop(ws);
    assert.deepEqual(listing(cache), [SHA]);
  });

  test('file:// and external data (the zoo\'s GPT-NeoX with its weights in a .data file): fetched beside it, equal to the local --json', async () => {
    const zoo = path.join(FIXTURES, 'zoo');
    const suite = path.join(zoo, 'gpt_neox', 'induction.suite.yaml');
    const want = cli(['attribute', suite, '--model', path.join(zoo, 'gpt_neox-extdata.onnx'), '--json']);
    assert.equal(want.code, 0, want.stderr);
    const dir = fs.mkdtempSync(path.join(tmp, 'neox-'));
    fs.copyFileSync(path.join(zoo, 'gpt_neox-extdata.onnx'), path.join(dir, 'neox.onnx'));
    fs.copyFileSync(path.join(zoo, 'gpt_neox-extdata.onnx.data'), path.join(dir, 'gpt_neox-extdata.onnx.data'));
    const cache = path.join(tmp, 'cache-neox');
    const p = await coordinator(['attribute', suite, '--json'], 'u5', pathToFileURL(path.join(zoo, 'gpt_neox-extdata.onnx')).href, { model: path.join(dir, 'neox.onnx') });
    const ws = await broker.workers('u5', 1, {}, ['--cache', cache]);
    assert.equal(await p.exit, 0, p.err);
    assert.equal(p.out, want.stdout);
    await broker.stop(ws);
    assert.match(ws[0]!.err, /fetched model [0-9a-f]{12}… from file:\/\/.*gpt_neox-extdata\.onnx: 2 files/);
    const [sha] = listing(cache);
    assert.deepEqual(listing(path.join(cache, sha!)), ['.verified.json', 'gpt_neox-extdata.onnx.data', 'neox.onnx']);
  });

  test('prune and sensitivity: a worker without the model builds each variant from its fetched copy; equal to the local --json', async () => {
    // The model's path and sensitivity's timing differ from the local run's; every measured number must not.
    const same = (s: string) => { const { model: _m, seconds: _s, ...rest } = JSON.parse(s) as Record<string, unknown>; return rest; };
    const cache = path.join(tmp, 'cache-variants');
    const logs: string[] = [];
    for (const args of [
      ['prune', SUITE, '--strategy', 'magnitude', '--sparsity', '0.3,0.7', '--json'],
      ['sensitivity', SUITE, '--quantize', 'int8', '--scope', 'mlp', '--json'],
    ]) {
      const want = cli(args);
      assert.equal(want.code, 0, want.stderr);
      const p = await coordinator(args, 'u6', `${base}/induction-gpt2.onnx`);
      const ws = await broker.workers('u6', 1, {}, ['--cache', cache]);
      assert.equal(await p.exit, 0, p.err);
      assert.deepEqual(same(p.out), same(want.stdout));
      await broker.stop(ws);
      logs.push(ws[0]!.err);
    }
    assert.deepEqual(listing(cache), [SHA]);
    assert.equal(count(logs[0]!, /fetched model [0-9a-f]{12}…/), 1, logs[0]);
    assert.match(logs[1]!, /model [0-9a-f]{12}… found in the cache, not fetched again/);
    assert.deepEqual(logs.map((l) => count(l, /chunk \S+ done: /)), [2, 1]);
  });

  test('--model-url without --broker, or not http/https/file: exit 2 before anything is loaded', async () => {
    for (const [args, want] of [
      [[...NODE, '--model-url', `${base}/induction-gpt2.onnx`], /--model-url .*give it with --broker URL/],
      [[...NODE, '--broker', broker.url, '--model-url', 'ftp://127.0.0.1/m.onnx'], /--model-url ftp:\/\/127\.0\.0\.1\/m\.onnx: expected an http:\/\/, https:\/\/ or file:\/\/ URL/],
      [['verify', path.join(EXAMPLES, 'induction-gpt2.circuit.json'), '--broker', broker.url, '--model-url', 'models/m.onnx'], /not a URL/],
    ] as [string[], RegExp][]) {
      const r = broker.start(args);
      assert.equal(await r.exit, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, want);
    }
  });
});
