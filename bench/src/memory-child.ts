// Bench 6, CircuitLens side, in its own process:
//   node --expose-gc bench/.build/memory-child.js MODEL TOKENS [--no-prepack]
// loads the model on onnxruntime-node, then traces every hook of one prompt; prints RSS figures as JSON.
// The flag is a bench-only prototype: --no-prepack (onnxruntime's session.disable_prepacking: no second,
// pre-packed copy of the MatMul weights).
import * as ort from 'onnxruntime-node';
import { OrtSession } from '../../core/engine/ort';
import type { ExternalFile, Runtime, Session } from '../../core/engine/runtime';
import { createRuntime, loadEngine } from '../../core/nodejs/load';
import { externalDataInMemory } from '../../core/nodejs/ort-node';
import { randomIds } from './harness';

function rssKb(): number {
  return Math.round(process.memoryUsage.rss() / 1024);
}

class NoPrepackRuntime implements Runtime {
  readonly backend = 'node' as const;
  async createSession(model: Uint8Array, external: ExternalFile[]): Promise<Session> {
    // Weights in memory (a large model's own file, as core/nodejs/load.ts references it), prepacking off.
    const externalData = externalDataInMemory(external);
    return new OrtSession(ort, await ort.InferenceSession.create(model, { graphOptimizationLevel: 'all', externalData, extra: { session: { disable_prepacking: '1' } } }));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const [file, tokensArg, ...flags] = process.argv.slice(2);
  const tokens = Number(tokensArg ?? 128);
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
  const rssStartKb = rssKb();
  const engine = await loadEngine(file!, flags.includes('--no-prepack') ? new NoPrepackRuntime() : createRuntime('node'));
  // Let the garbage of loading go (decoded protobuf, encoded copies) before taking the baseline.
  for (let i = 0; i < 3; i++) { gc(); await sleep(300); }
  const rssAfterLoadKb = rssKb();
  const peakDuringLoadKb = process.resourceUsage().maxRSS;
  let peak = rssAfterLoadKb;
  const timer = setInterval(() => { peak = Math.max(peak, rssKb()); }, 2);
  const ids = randomIds(1, tokens, engine.info.vocab, 5);
  const t0 = performance.now();
  const res = await engine.run({ ids, hooks: engine.hookNames });
  const ms = performance.now() - t0;
  clearInterval(timer);
  const rssHoldingResultsKb = rssKb();
  peak = Math.max(peak, rssHoldingResultsKb);
  const resultBytes = Object.values(res.activations).reduce((s, t) => s + t.data.byteLength, 0);
  process.stdout.write(`${JSON.stringify({
    rssStartKb, rssAfterLoadKb, peakDuringLoadKb, peakDuringTraceKb: peak, rssHoldingResultsKb, maxRssKb: process.resourceUsage().maxRSS,
    hooks: Object.keys(res.activations).length, resultBytes, ms, variant: flags.join(' ') || 'shipped',
  })}\n`);
  process.exit(0);
}

main().catch((e) => { console.error(e); process.exit(1); });
