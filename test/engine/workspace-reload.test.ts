// The extension host's engine cache (NodeWorkspace) when a model file changes on disk, without VS Code: the engine
// is reloaded (the old one released, a run in flight on it still finishes), a file that no longer loads or is gone
// is a clear UserError and is not cached, a circuit's hash is compared only with the model that ran, and a canary
// run in flight when its model changes is cancelled (as the canary controller does) and its re-run sees the new file;
// the weights modelVariants holds (prune and quantize checks) follow the file the same way.
import { describe, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCanary } from '../../core/analysis/verify/canary';
import { isUserError } from '../../core/errors';
import { NodeWorkspace, sha256File } from '../../core/nodejs/workspace';
import type { Workspace } from '../../core/workspace';
import { EXAMPLES } from '../helpers';

const GPT2 = path.join(EXAMPLES, 'induction-gpt2.onnx');
const LLAMA = path.join(EXAMPLES, 'induction-llama.onnx');
const PROMPT = 'Mary walked garden red apple dog Mary walked garden red';

/** A folder with a copy of the gpt2 demo model (model.onnx), its tokenizer, the suite and the circuit. */
function folder(): { dir: string; model: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cl-reload-'));
  for (const f of ['tokenizer.json', 'induction.suite.yaml']) fs.copyFileSync(path.join(EXAMPLES, f), path.join(dir, f));
  fs.copyFileSync(GPT2, path.join(dir, 'model.onnx'));
  return { dir, model: path.join(dir, 'model.onnx') };
}

/** Replaces a file's bytes the way an exporter or a copy does, with a new mtime even on a coarse clock. */
function replace(file: string, bytes: Uint8Array): void {
  const before = fs.statSync(file).mtimeMs;
  fs.writeFileSync(file, bytes);
  if (fs.statSync(file).mtimeMs === before) fs.utimesSync(file, new Date(), new Date(before + 2000));
}

const truncated = () => fs.readFileSync(GPT2).subarray(0, 4096);

describe('NodeWorkspace when a model file changes on disk', () => {
  test('an unchanged file is loaded once; a changed one is reloaded, and a run in flight on the old engine finishes', async () => {
    const { dir, model } = folder();
    const ws = new NodeWorkspace(dir);
    try {
      const a = await ws.loadEngine(model);
      assert.equal(await ws.loadEngine(model), a, 'the same file gives the cached engine');
      assert.equal(a.info.architecture, 'gpt2');
      const ids = a.tokenizer!.encode(PROMPT);
      const inflight = a.run({ ids: Array.from({ length: 32 }, () => ids), hooks: ['blocks.1.attn.hook_pattern'] });
      replace(model, fs.readFileSync(LLAMA));
      const b = await ws.loadEngine(model); // releases the old engine while its run is in flight
      assert.notEqual(b, a);
      assert.equal(b.info.architecture, 'llama', 'the engine is the new file\'s');
      const r = await inflight;
      assert.deepEqual(r.logits.dims, [32, ids.length, a.info.vocab]);
      // The old engine's next call (a command still holding it) says what happened.
      await new Promise((res) => setTimeout(res, 50));
      await assert.rejects(a.run({ ids: [ids], lastOnly: true }), (e: Error) => isUserError(e) && /unloaded while this command was running/.test(e.message));
    } finally {
      await ws.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a file that no longer loads, or is gone: a UserError naming it, and nothing cached', async () => {
    const { dir, model } = folder();
    const ws = new NodeWorkspace(dir);
    try {
      await ws.loadEngine(model);
      replace(model, truncated());
      await assert.rejects(ws.loadEngine(model), (e: Error) => isUserError(e) && /model\.onnx is not a readable ONNX model .*truncated/.test(e.message));
      replace(model, fs.readFileSync(GPT2));
      assert.equal((await ws.loadEngine(model)).info.architecture, 'gpt2', 'the failed load was not cached');
      fs.rmSync(model);
      await assert.rejects(ws.loadEngine(model), (e: Error) => isUserError(e) && e.message === 'model file not found: model.onnx');
      const other = new NodeWorkspace(dir);
      await assert.rejects(other.sha256(model), (e: Error) => isUserError(e) && e.message === 'file not found: model.onnx');
    } finally {
      await ws.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('sha256 is the hash of the file the engine was loaded from; changed before it was hashed, it says so', async () => {
    const { dir, model } = folder();
    const ws = new NodeWorkspace(dir);
    try {
      await ws.loadEngine(model);
      const gpt2 = await sha256File(GPT2);
      assert.equal(await ws.sha256(model), gpt2);
      replace(model, fs.readFileSync(LLAMA));
      assert.equal(await ws.sha256(model), gpt2, 'until a reload, the hash of the model that runs');
      await ws.loadEngine(model);
      assert.equal(await ws.sha256(model), await sha256File(LLAMA), 'after a reload, the new file\'s');
      // Changed between the load and the first hash (a canary mid-run): the hash of the model that runs is gone
      // from disk, and the new file's would be a false "the circuit was found on a different model".
      const fresh = new NodeWorkspace(dir);
      try {
        await fresh.loadEngine(model);
        replace(model, truncated());
        await assert.rejects(fresh.sha256(model), (e: Error) => isUserError(e) && e.message === 'model.onnx changed on disk after it was loaded; run again to use the file as it is now');
        const gone = new NodeWorkspace(dir);
        replace(model, fs.readFileSync(GPT2));
        await gone.loadEngine(model);
        fs.rmSync(model);
        await assert.rejects(gone.sha256(model), (e: Error) => isUserError(e) && /model\.onnx changed on disk after it was loaded/.test(e.message));
        await gone.dispose();
      } finally {
        await fresh.dispose();
      }
    } finally {
      await ws.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('modelVariants reads an unchanged file once, a changed one again, and holds one model until dispose', async () => {
    const { dir, model } = folder();
    const other = path.join(dir, 'other.onnx');
    fs.copyFileSync(LLAMA, other);
    const ws = new NodeWorkspace(dir);
    try {
      const a = await ws.modelVariants(model);
      assert.equal(await ws.modelVariants(model), a, 'the same file gives the weights already read');
      replace(model, fs.readFileSync(LLAMA));
      const b = await ws.modelVariants(model);
      assert.notEqual(b, a, 'a changed file is read again');
      assert.equal(b.model.graph!.initializer.length, (await ws.modelVariants(other)).model.graph!.initializer.length);
      assert.notEqual(await ws.modelVariants(model), b, 'asking for another model dropped this one');
      const c = await ws.modelVariants(model);
      await ws.dispose();
      assert.notEqual(await ws.modelVariants(model), c, 'dispose drops the weights');
      fs.rmSync(model);
      await assert.rejects(ws.modelVariants(model), (e: Error) => isUserError(e) && e.message === 'model file not found: model.onnx');
    } finally {
      await ws.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a canary run in flight when its model changes is cancelled (a check needing the old file says why); the re-run reports the new file', async () => {
    const { dir, model } = folder();
    const circuit = path.join(dir, 'c.circuit.json');
    const recorded = JSON.parse(fs.readFileSync(path.join(EXAMPLES, 'induction-gpt2.circuit.json'), 'utf8'));
    fs.writeFileSync(circuit, JSON.stringify({ ...recorded, model: { path: 'model.onnx', sha256: await sha256File(GPT2) }, suite: 'induction.suite.yaml' }, null, 2));
    const canary = path.join(dir, 'c.canary.yaml');
    fs.writeFileSync(canary, [
      'model: model.onnx', 'suite: induction.suite.yaml', 'checks:',
      '  - name: continues repeated text', '    tags: [task]', '    accuracy: ">= 0.95"',
      '  - name: circuit is faithful', '    tags: [task]', '    circuit: c.circuit.json', '    faithfulness: ">= 0.8"',
      `  - name: next token`, `    prompt: "${PROMPT}"`, '    top1: " apple"', ''].join('\n'));
    const ws = new NodeWorkspace(dir);
    // The file watcher, at the moment the run reads the circuit: the model is overwritten, the run cancelled.
    const abort = new AbortController();
    const watched: Workspace = {
      readText: async (p) => {
        if (p === circuit && !abort.signal.aborted) { replace(model, truncated()); abort.abort(); }
        return ws.readText(p);
      },
      exists: (p) => ws.exists(p), resolve: (from, rel) => ws.resolve(from, rel), display: (p) => ws.display(p),
      loadEngine: (p) => ws.loadEngine(p), sha256: (p) => ws.sha256(p),
    };
    try {
      const first = await runCanary(watched, canary, { signal: abort.signal });
      // Before the change: a result. The circuit check, which compares the model's hash, cannot (the hash of the
      // model that ran is gone) and says why, at its line; after it, cancelled.
      assert.deepEqual(first.checks.map((c) => [c.name, c.status]), [['continues repeated text', 'passed'], ['circuit is faithful', 'errored'], ['next token', 'skipped']]);
      assert.equal(first.checks[1]!.message, 'model.onnx changed on disk after it was loaded; run again to use the file as it is now');
      assert.equal(first.checks[2]!.message, 'cancelled');
      assert.deepEqual(first.diagnostics.filter((d) => d.severity === 'error').map((d) => `${d.line}: ${d.message}`),
        [`7: check "circuit is faithful" could not run: ${first.checks[1]!.message} [on model.onnx]`]);

      const again = await runCanary(ws, canary);
      assert.deepEqual(again.checks.map((c) => c.status), ['errored', 'errored', 'errored']);
      for (const c of again.checks) assert.match(c.message, /model\.onnx is not a readable ONNX model/);
      assert.ok(again.diagnostics.some((d) => d.file === canary && d.line === 1 && /not a readable ONNX model/.test(d.message)), 'the problem is at the canary\'s model line');
    } finally {
      await ws.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
