// `--broker URL` for the CLI's analyses: the suite's contexts get a remote (core/analysis/distributed/run.ts
// onWorkers) that sends their batched engine calls to workers through the broker (core/nodejs/broker.ts), or, for
// prune and sensitivity, each pruned or quantized model goes to a worker whole (distributed/variants.ts); Ctrl-C
// removes the queued chunks and exits 130. The BullMQ adapter itself is shared with the extension.
import { onWorkers, type Broker } from '../core/analysis/distributed/run';
import { variantsOnWorkers } from '../core/analysis/distributed/variants';
import type { VariantWorkers } from '../core/analysis/variant-measures';
import { Cancelled } from '../core/errors';
import { brokerConnection, brokerJobs, checkBroker, chunkRows, runFiles, sha256Text } from '../core/nodejs/broker';
import { VERSION, type Loaded } from './common';

export const BROKER_OPTION: [string, string] = ['--broker URL', 'run the batched work on workers (circuitlens worker) through Redis at URL (redis://HOST:PORT); the result equals the local one exactly'];

/** A bad or unreachable broker, said before the model is loaded (exit 2). */
export async function checkBrokerFlag(url: string | undefined): Promise<void> {
  if (url === undefined) return;
  brokerConnection(url);
  await checkBroker(url);
}

/**
 * Runs `work` with the batched work of `L`'s contexts on the broker's workers (when `url` is given; else as is).
 * The run key hashes the model's sha256, the suite's text and everything else the rows depend on, so the same
 * command run again (after a crash, a Ctrl-C) plans the same chunk ids and finds the finished ones.
 */
export async function withBroker<T>(url: string | undefined, L: Loaded, suitePath: string, runtime: string | undefined, command: string, work: () => Promise<T>): Promise<T> {
  if (url === undefined) return work();
  return cancellable(command, async (signal) => {
    for (const c of [L.task, L.control]) if (c) c.signal = signal;
    const files = await runFiles(L.modelPath, suitePath, (p) => L.ws.sha256(p));
    onWorkers(L, { version: VERSION, ...files, runtime: runtime === 'wasm' ? 'wasm' : 'node' }, brokerFor(url, command));
    return work();
  });
}

/**
 * Runs `work` (prune, sensitivity) with its pruned or quantized models measured on the broker's workers, one job
 * each (when `url` is given; else here: `workers` undefined). Job ids hash the model's sha256, the suite's text,
 * the variant and the circuit, so a rerun finds the points already measured.
 */
export async function withVariantWorkers<T>(url: string | undefined, files: { modelPath: string; suitePath: string; sha256: (p: string) => Promise<string> }, runtime: string | undefined, command: string, work: (o: { workers?: VariantWorkers; signal?: AbortSignal }) => Promise<T>): Promise<T> {
  if (url === undefined) return work({});
  return cancellable(command, async (signal) => {
    const f = await runFiles(files.modelPath, files.suitePath, files.sha256);
    return work({ workers: variantsOnWorkers({ version: VERSION, ...f, runtime: runtime === 'wasm' ? 'wasm' : 'node' }, brokerFor(url, command)), signal });
  });
}

function brokerFor(url: string, command: string): Broker {
  const warn = (s: string) => process.stderr.write(`circuitlens ${command}: ${s}\n`);
  return { jobs: brokerJobs(url, { warn }), hash: sha256Text, targetRows: chunkRows() };
}

/** Ctrl-C aborts `signal`; the run, cancelled, exits 130 (the broker adapter has taken its queued jobs back). */
async function cancellable<T>(command: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onInt = () => ac.abort();
  process.once('SIGINT', onInt);
  try {
    return await work(ac.signal);
  } catch (e) {
    if (e instanceof Cancelled) {
      process.stderr.write(`circuitlens ${command}: cancelled\n`);
      process.exit(130);
    }
    throw e;
  } finally {
    process.off('SIGINT', onInt);
  }
}
