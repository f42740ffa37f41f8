// Where a worker finds a job's model (core/nodejs/worker-model.ts): the coordinator's path when the .onnx there has
// the job's sha256 and every file the manifest lists beside it (tokenizer, hooks sidecar, external data) its size
// and sha256, each file hashed once while unchanged; a companion that differs (or one the model would load here that
// the manifest lacks) sends the worker to the URL, or without a URL fails the job naming the file and both hashes.
import { after, describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { modelManifest, type ModelRef } from '../../core/nodejs/model-files';
import { WorkerModels } from '../../core/nodejs/worker-model';
import { sha256File } from '../../core/nodejs/workspace';
import { EXAMPLES, FIXTURES } from '../helpers';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-worker-model-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A folder holding `files` (copied from `from`), the first being the .onnx; its manifest as a job names it. */
async function folder(name: string, from: string, files: string[], url?: string): Promise<{ dir: string; m: ModelRef }> {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  for (const f of files) fs.copyFileSync(path.join(from, f), path.join(dir, f));
  const onnx = path.join(dir, files[0]!);
  const sha = await sha256File(onnx);
  return { dir, m: { path: onnx, sha256: sha, files: await modelManifest(onnx, sha), ...(url ? { url } : {}) } };
}

const flipByte = (p: string, at = 100) => { const b = fs.readFileSync(p); b[at] ^= 1; fs.writeFileSync(p, b); };

describe('the worker\'s model at the coordinator\'s path, companions included', () => {
  test('every file as listed: the path is used, each file hashed once while unchanged', async () => {
    const { m } = await folder('same', EXAMPLES, ['induction-gpt2.onnx', 'tokenizer.json']);
    const w = new WorkerModels(path.join(tmp, 'cache-same'), { me: 'w', log: () => undefined });
    assert.equal(await w.modelPath(m), m.path);
    assert.equal(w.hashed, 2, 'the .onnx and its tokenizer');
    assert.equal(await w.modelPath(m), m.path);
    assert.equal(w.hashed, 2, 'not hashed again');
  });

  test('a tokenizer of the same size, other bytes: without a URL the job fails naming the file and both hashes', async () => {
    const { dir, m } = await folder('tok-same-size', EXAMPLES, ['induction-gpt2.onnx', 'tokenizer.json']);
    const want = m.files![1]!.sha256;
    flipByte(path.join(dir, 'tokenizer.json'));
    const got = await sha256File(path.join(dir, 'tokenizer.json'));
    const w = new WorkerModels(path.join(tmp, 'cache-x'), { me: 'w', log: () => undefined });
    const noUrl = { ...m, url: undefined };
    await assert.rejects(w.modelPath(noUrl), (e: Error) => e.message.includes(`${path.join(dir, 'tokenizer.json')} has sha256 ${got}, the coordinator's tokenizer.json ${want}`) && /refused the chunk/.test(e.message));
  });

  test('a tokenizer of another size: not hashed when there is a URL, the model fetched from it instead', async () => {
    const served = await folder('served', EXAMPLES, ['induction-gpt2.onnx', 'tokenizer.json']);
    const { dir, m } = await folder('tok-size', EXAMPLES, ['induction-gpt2.onnx', 'tokenizer.json'], pathToFileURL(served.m.path).href);
    fs.appendFileSync(path.join(dir, 'tokenizer.json'), '\n');
    const logs: string[] = [];
    const cache = path.join(tmp, 'cache-size');
    const w = new WorkerModels(cache, { me: 'w', log: (s) => logs.push(s) });
    const got = await w.modelPath(m);
    assert.equal(got, path.join(cache, m.sha256, 'induction-gpt2.onnx'));
    assert.match(logs.join('\n'), /tokenizer\.json has \d+ bytes, the coordinator's tokenizer\.json sha256 [0-9a-f]{64} and \d+ bytes: using the model from file:/);
    assert.match(logs.join('\n'), /fetched model/);
    assert.ok(fs.readFileSync(path.join(cache, m.sha256, 'tokenizer.json')).equals(fs.readFileSync(path.join(EXAMPLES, 'tokenizer.json'))));
    // Hashed: the .onnx at the path, then the fetched files are checked by the cache (not the changed tokenizer).
    assert.equal(w.hashed, 1, 'only the .onnx at the path');
    // Without a URL: the message has both hashes and both sizes.
    await assert.rejects(new WorkerModels(cache, { me: 'w', log: () => undefined }).modelPath({ ...m, url: undefined }), /tokenizer\.json has sha256 [0-9a-f]{64} \d+ bytes, the coordinator's tokenizer\.json sha256 [0-9a-f]{64} and \d+ bytes/);
  });

  test('a hooks sidecar here that the coordinator\'s model did not have; a listed file missing', async () => {
    const { dir, m } = await folder('sidecar', EXAMPLES, ['induction-gpt2.onnx', 'tokenizer.json']);
    fs.writeFileSync(path.join(dir, 'induction-gpt2.hooks.json'), '{}');
    const w = new WorkerModels(path.join(tmp, 'cache-y'), { me: 'w', log: () => undefined });
    await assert.rejects(w.modelPath(m), /it loads with .*induction-gpt2\.hooks\.json, which the coordinator's model does not have/);
    fs.rmSync(path.join(dir, 'induction-gpt2.hooks.json'));
    assert.equal(await w.modelPath(m), m.path);
    fs.rmSync(path.join(dir, 'tokenizer.json'));
    await assert.rejects(w.modelPath(m), /tokenizer\.json is missing \(the coordinator's tokenizer\.json has sha256 [0-9a-f]{64}\)/);
  });

  test('external data of other bytes beside a matching .onnx (the zoo\'s GPT-NeoX): refused, naming the .data file', async () => {
    const { dir, m } = await folder('extdata', path.join(FIXTURES, 'zoo'), ['gpt_neox-extdata.onnx', 'gpt_neox-extdata.onnx.data']);
    const w = new WorkerModels(path.join(tmp, 'cache-z'), { me: 'w', log: () => undefined });
    assert.equal(await w.modelPath(m), m.path);
    flipByte(path.join(dir, 'gpt_neox-extdata.onnx.data'), 5000);
    await assert.rejects(w.modelPath(m), /gpt_neox-extdata\.onnx\.data has sha256 [0-9a-f]{64}, the coordinator's gpt_neox-extdata\.onnx\.data [0-9a-f]{64}/);
    assert.ok(await w.bytes(m.path) > fs.statSync(m.path).size, 'the external data counts in the model\'s bytes');
  });
});
