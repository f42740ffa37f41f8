// A model as files that travel to workers (--model-url): the external-data scan against the decoder, the manifest
// the coordinator sends, its checks on the worker's side, and the worker's cache (fetch to a temporary folder,
// check every file, rename whole; reuse; refuse other bytes; two caches on one folder; HTTP errors).
import { after, before, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { UserError } from '../../core/errors';
import { decodeModel, encodeModel, externalLocations } from '../../core/onnx/model';
import { scanExternalLocations } from '../../core/onnx/external-scan';
import { ModelCache } from '../../core/nodejs/model-cache';
import { checkManifest, checkModelUrl, companionNames, fileUrl, isLocalName, modelManifest, type ModelRef } from '../../core/nodejs/model-files';
import { sha256File } from '../../core/nodejs/workspace';
import { EXAMPLES, FIXTURES, flipMiddle, freePort, listing, serveModelFolder, type ModelServer } from '../helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-model-files-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const EXTDATA = path.join(FIXTURES, 'zoo', 'gpt_neox-extdata.onnx');
const GPT2 = path.join(EXAMPLES, 'induction-gpt2.onnx');
const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');

function scanFile(p: string): string[] {
  const bytes = fs.readFileSync(p);
  let reads = 0;
  const found = scanExternalLocations(bytes.length, (o, n) => { reads++; return bytes.subarray(o, o + n); }, p);
  assert.ok(reads < 200, `${reads} reads`);
  return found;
}

describe('external data, found without decoding the model', () => {
  test('the scan names what the decoder names, on models with and without external data', () => {
    for (const p of [EXTDATA, GPT2, path.join(FIXTURES, 'zoo', 'gpt2-fp16.onnx'), path.join(EXAMPLES, 'induction-llama.onnx')]) {
      assert.deepEqual(scanFile(p), externalLocations(decodeModel(fs.readFileSync(p), p)), p);
    }
    assert.deepEqual(scanFile(EXTDATA), ['gpt_neox-extdata.onnx.data']);
  });

  test('a file that is not a model: a clear error', () => {
    const junk = new Uint8Array([0x3a, 0xff, 0xff, 0xff, 0x0f, 1, 2]);
    assert.throws(() => scanExternalLocations(junk.length, (o, n) => junk.subarray(o, o + n), 'junk.onnx'), /junk\.onnx is not an ONNX model/);
  });
});

describe('the manifest', () => {
  test('the .onnx first, then its tokenizer and external data, each with size and sha256', async () => {
    const dir = path.join(tmp, 'ext');
    fs.mkdirSync(dir);
    for (const f of ['gpt_neox-extdata.onnx', 'gpt_neox-extdata.onnx.data']) fs.copyFileSync(path.join(FIXTURES, 'zoo', f), path.join(dir, f));
    fs.copyFileSync(path.join(EXAMPLES, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    fs.writeFileSync(path.join(dir, 'gpt_neox-extdata.hooks.json'), '{"hooks": {}}');
    const model = path.join(dir, 'gpt_neox-extdata.onnx');
    const files = await modelManifest(model, await sha256File(model));
    assert.deepEqual(files.map((f) => f.name), ['gpt_neox-extdata.onnx', 'tokenizer.json', 'gpt_neox-extdata.hooks.json', 'gpt_neox-extdata.onnx.data']);
    for (const f of files) {
      const b = fs.readFileSync(path.join(dir, f.name));
      assert.equal(f.size, b.length, f.name);
      assert.equal(f.sha256, sha(b), f.name);
    }
    // <model>.tokenizer.json is the one the model loads with when both are there.
    fs.copyFileSync(path.join(EXAMPLES, 'tokenizer.json'), path.join(dir, 'gpt_neox-extdata.tokenizer.json'));
    assert.equal(companionNames(model)[0], 'gpt_neox-extdata.tokenizer.json');
  });

  test('external data outside the model\'s folder: refused, naming the location', () => {
    const m = decodeModel(fs.readFileSync(EXTDATA), EXTDATA);
    for (const t of m.graph!.initializer) for (const e of t.externalData ?? []) if (e.key === 'location') e.value = '../weights.bin';
    const p = path.join(tmp, 'outside.onnx');
    fs.writeFileSync(p, encodeModel(m));
    assert.throws(() => companionNames(p), (e: Error) => e instanceof UserError && /keeps weights in "\.\.\/weights\.bin", outside its folder/.test(e.message));
  });

  test('names stay inside the model\'s folder; URLs of the files beside the .onnx', () => {
    for (const ok of ['model.onnx', 'weights/part 1.bin', 'a.b/c']) assert.ok(isLocalName(ok), ok);
    for (const bad of ['', '/etc/passwd', '../x', 'a/../../x', 'a//b', './a', 'a\\b', 'C:x', 'a/.', 'a\0b']) assert.ok(!isLocalName(bad), bad);
    const files = [{ name: 'm.onnx', size: 1, sha256: 'a'.repeat(64) }, { name: 'weights/part 1.bin', size: 1, sha256: 'b'.repeat(64) }];
    assert.equal(fileUrl('https://h/models/gpt2/model.onnx?x=1', files, 0), 'https://h/models/gpt2/model.onnx?x=1');
    assert.equal(fileUrl('https://h/models/gpt2/model.onnx', files, 1), 'https://h/models/gpt2/weights/part%201.bin');
    assert.equal(fileUrl('file:///srv/m/model.onnx', files, 1), 'file:///srv/m/weights/part%201.bin');
  });

  test('--model-url: http, https or file, naming a file', () => {
    assert.equal(checkModelUrl('http://h:8000/m.onnx'), 'http://h:8000/m.onnx');
    assert.equal(checkModelUrl('file:///srv/m.onnx'), 'file:///srv/m.onnx');
    assert.throws(() => checkModelUrl('ftp://h/m.onnx'), /--model-url ftp:\/\/h\/m\.onnx: expected an http:\/\/, https:\/\/ or file:\/\/ URL/);
    assert.throws(() => checkModelUrl('m.onnx'), /not a URL/);
    assert.throws(() => checkModelUrl('http://h/models/'), /names a folder/);
  });

  test('a job\'s manifest is checked before anything is fetched', () => {
    const good: ModelRef = { path: '/x/m.onnx', sha256: 'a'.repeat(64), url: 'http://h/m.onnx', files: [{ name: 'm.onnx', size: 3, sha256: 'a'.repeat(64) }, { name: 'tokenizer.json', size: 2, sha256: 'b'.repeat(64) }] };
    assert.equal(checkManifest(good).files.length, 2);
    const bad: [Partial<ModelRef>, RegExp][] = [
      [{ sha256: '../../etc' }, /not 64 hex digits/],
      [{ files: undefined }, /but not its files/],
      [{ files: [good.files![0]!, { name: '../x', size: 1, sha256: 'b'.repeat(64) }] }, /"\.\.\/x" is not a name inside the model's folder/],
      [{ files: [good.files![0]!, good.files![0]!] }, /twice/],
      [{ files: [good.files![1]!] }, /do not start with the model file/],
      [{ files: [{ ...good.files![0]!, size: -1 }] }, /no valid size/],
      [{ url: 'ftp://h/m.onnx' }, /expected an http/],
    ];
    for (const [change, want] of bad) assert.throws(() => checkManifest({ ...good, ...change }), (e: Error) => e instanceof UserError && want.test(e.message), JSON.stringify(change));
  });
});

describe('the worker\'s model cache', () => {
  const src = path.join(tmp, 'served');
  fs.mkdirSync(src);
  for (const f of ['induction-gpt2.onnx', 'tokenizer.json']) fs.copyFileSync(path.join(EXAMPLES, f), path.join(src, f));
  const modelPath = path.join(src, 'induction-gpt2.onnx');

  async function ref(url: string): Promise<ModelRef> {
    const s = await sha256File(modelPath);
    return { path: '/nowhere/model.onnx', sha256: s, url, files: await modelManifest(modelPath, s) };
  }
  function cache(dir: string, logs: string[]): ModelCache {
    return new ModelCache(dir, { log: (s) => logs.push(s), sha256: sha256File });
  }

  test('fetched once (file://), every file checked, into a folder named by the sha256; reused without fetching again', async () => {
    const dir = path.join(tmp, 'cache1');
    const m = await ref(pathToFileURL(modelPath).href);
    const logs: string[] = [];
    const got = await cache(dir, logs).modelPath(m);
    assert.equal(got, path.join(dir, m.sha256, 'induction-gpt2.onnx'));
    assert.deepEqual(listing(dir), [m.sha256]);
    assert.deepEqual(listing(path.join(dir, m.sha256)), ['.verified.json', 'induction-gpt2.onnx', 'tokenizer.json']);
    assert.ok(fs.readFileSync(got).equals(fs.readFileSync(modelPath)));
    assert.match(logs.join('\n'), /fetched model [0-9a-f]{12}… from file:.*: 2 files, 0\.6 MB/);
    // Another worker on the same folder: found, not fetched, not even hashed (the files are as fetched and checked).
    const again: string[] = [];
    let hashed = 0;
    assert.equal(await new ModelCache(dir, { log: (s) => again.push(s), sha256: (p) => { hashed++; return sha256File(p); } }).modelPath(m), got);
    assert.equal(hashed, 0);
    assert.match(again.join('\n'), /found in the cache, not fetched again/);
    assert.doesNotMatch(again.join('\n'), /fetched model/);
    // A cached file changed since (same size, a later mtime): hashed, found damaged, fetched again, whole once more.
    const tok = path.join(dir, m.sha256, 'tokenizer.json');
    const b = fs.readFileSync(tok);
    b[10] ^= 1;
    fs.writeFileSync(tok, b);
    fs.utimesSync(tok, new Date(), new Date(Date.now() + 5000));
    const third: string[] = [];
    assert.equal(await cache(dir, third).modelPath(m), got);
    assert.match(third.join('\n'), /has tokenizer\.json with sha256 [0-9a-f]{64}, not [0-9a-f]{64}: fetching it again[\s\S]*fetched model/);
    assert.ok(fs.readFileSync(path.join(dir, m.sha256, 'tokenizer.json')).equals(fs.readFileSync(path.join(src, 'tokenizer.json'))));
    assert.deepEqual(listing(dir), [m.sha256]);
  });

  test('two caches fetching the same model into one folder at once: one fetches, the other waits and uses its copy', async () => {
    const dir = path.join(tmp, 'cache2');
    const m = await ref(pathToFileURL(modelPath).href);
    const [la, lb]: string[][] = [[], []];
    const [a, b] = await Promise.all([cache(dir, la).modelPath(m), cache(dir, lb).modelPath(m)]);
    assert.equal(a, b);
    assert.deepEqual(listing(dir), [m.sha256], 'no lock and no partial fetch left');
    assert.equal(await sha256File(a), m.sha256);
    const logs = [...la, ...lb].join('\n');
    assert.equal([...logs.matchAll(/fetched model/g)].length, 1, logs);
    assert.match(logs, /is being fetched into .* by process \d+ on .*: waiting for it[\s\S]*found in the cache|found in the cache[\s\S]*is being fetched/);
  });

  test('a lock left by a process that is gone is taken over; fetch folders of gone workers are removed, live ones kept', async () => {
    const dir = path.join(tmp, 'cache-stale');
    fs.mkdirSync(dir);
    const m = await ref(pathToFileURL(modelPath).href);
    const host = os.hostname().replace(/[^\w.-]/g, '_') || 'localhost';
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    fs.writeFileSync(path.join(dir, `.${m.sha256}.lock`), JSON.stringify({ pid: dead, host, token: 'x' }));
    const old = (p: string, ms: number) => { const t = new Date(Date.now() - ms); for (const f of [p, ...fs.readdirSync(p).map((n) => path.join(p, n))]) fs.utimesSync(f, t, t); };
    let k = 0;
    const part = (pid: number, h = host) => { const n = `.part-${m.sha256.slice(0, 12)}-${pid}-0123abc${k++}@${h}`; fs.mkdirSync(path.join(dir, n)); fs.writeFileSync(path.join(dir, n, 'model.onnx'), 'half'); return n; };
    const goneOld = part(dead); old(path.join(dir, goneOld), 20 * 60_000);
    const goneFresh = part(dead);
    const liveOld = part(process.pid); old(path.join(dir, liveOld), 20 * 60_000);
    const otherHost = part(dead, 'elsewhere'); old(path.join(dir, otherHost), 3600_000);
    const otherHostDayOld = part(dead, 'faraway'); old(path.join(dir, otherHostDayOld), 25 * 3600_000);
    fs.mkdirSync(path.join(dir, '.part-0123456789ab-Xy12Zq')); old(path.join(dir, '.part-0123456789ab-Xy12Zq'), 25 * 3600_000);
    const logs: string[] = [];
    await cache(dir, logs).modelPath(m);
    assert.match(logs.join('\n'), /fetched model/);
    assert.match(logs.join('\n'), /removed 3 unfinished fetches left in .* by workers that stopped/);
    assert.deepEqual(listing(dir), [goneFresh, liveOld, otherHost, m.sha256].sort());
  });

  describe('over HTTP', () => {
    let server: ModelServer;
    let base = '';
    const flipped = flipMiddle(fs.readFileSync(modelPath));
    before(async () => { server = await serveModelFolder(src); base = server.base; });
    after(() => server.close());

    test('served bytes equal to the manifest: fetched; other bytes: refused, naming the URL and both hashes, nothing left', async () => {
      const dir = path.join(tmp, 'cache3');
      const good = await ref(`${base}/induction-gpt2.onnx`);
      await cache(dir, []).modelPath(good);
      assert.deepEqual(server.requests, ['/induction-gpt2.onnx', '/tokenizer.json']);
      const bad = await ref(`${base}/bad/induction-gpt2.onnx`);
      const other = path.join(tmp, 'cache4');
      await assert.rejects(cache(other, []).modelPath(bad), new RegExp(`refused the model: ${base}/bad/induction-gpt2\\.onnx served sha256 ${sha(flipped)} \\(${flipped.length} bytes\\), the coordinator's induction-gpt2\\.onnx has sha256 ${good.sha256}`));
      assert.deepEqual(listing(other), [], 'a refused fetch leaves nothing');
    });

    test('a 404 and a refused connection: clear errors, nothing left', async () => {
      const dir = path.join(tmp, 'cache5');
      const m = await ref(`${base}/missing.onnx`);
      await assert.rejects(cache(dir, []).modelPath(m), new RegExp(`cannot fetch ${base}/missing\\.onnx: HTTP 404 Not Found`));
      // The .onnx is there, its tokenizer is not.
      const noTok = await ref(`${base}/induction-gpt2.onnx`);
      noTok.files![1]!.name = 'absent.json';
      await assert.rejects(cache(dir, []).modelPath(noTok), new RegExp(`cannot fetch ${base}/absent\\.json: HTTP 404`));
      const closed = await freePort();
      await assert.rejects(cache(dir, []).modelPath(await ref(`http://127.0.0.1:${closed}/m.onnx`)), /cannot fetch http:\/\/127\.0\.0\.1:\d+\/m\.onnx: ECONNREFUSED/);
      await assert.rejects(cache(dir, []).modelPath(await ref(pathToFileURL(path.join(tmp, 'none.onnx')).href)), /cannot fetch file:.*none\.onnx: no file at/);
      assert.deepEqual(listing(dir), []);
    });
  });
});
