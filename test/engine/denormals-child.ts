// Child process of sessions.test.ts ("flushDenormals"): onnxruntime sets flush-to-zero on the thread that creates
// a process' first session, so each setting is tried in a process of its own. Prints JSON on stdout.
import { hookName } from '../../core/hooks';
import { createRuntime, loadEngine } from '../../core/nodejs/load';

async function main(): Promise<void> {
  const [model, flag, idsArg] = process.argv.slice(2);
  const engine = await loadEngine(model!, createRuntime('node', { flushDenormals: flag === 'flush' }));
  const ids = [idsArg!.split(',').map(Number)];
  const hooks = Array.from({ length: engine.info.layers }, (_, l) => hookName('pattern', l));
  const res = await engine.run({ ids, hooks });
  // Attention probabilities below float32's smallest normal number (1.17549435e-38), but not zero.
  const denormal = hooks.reduce((n, h) => n + res.activations[h]!.data.filter((v) => v !== 0 && Math.abs(v) < 1.17549435e-38).length, 0);
  await engine.release();
  // Whether JavaScript's own arithmetic on this thread now flushes denormal doubles (5e-324 is the smallest).
  const jsFlushes = Number.MIN_VALUE * 1.5 === 0;
  process.stdout.write(JSON.stringify({ logits: Array.from(res.logits.data), dims: res.logits.dims, pattern: hooks.flatMap((h) => Array.from(res.activations[h]!.data)), denormal, jsFlushes }));
}

main().catch((e) => { console.error(e); process.exit(1); });
