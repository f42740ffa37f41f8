// `--broker URL` for the CLI's analyses: the suite's contexts get a remote (core/analysis/distributed/run.ts
// onWorkers) that sends their batched engine calls to workers through the broker (core/nodejs/broker.ts); Ctrl-C
// removes the queued chunks and exits 130. The BullMQ adapter itself is shared with the extension.
import { onWorkers, workersFor } from '../core/analysis/distributed/run';
import { Cancelled } from '../core/errors';
import { brokerConnection, brokerJobs, checkBroker, chunkRows, runFiles, sha256Text } from '../core/nodejs/broker';
import type { NodeWorkspace } from '../core/nodejs/workspace';
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
  const ac = new AbortController();
  const onInt = () => ac.abort();
  process.once('SIGINT', onInt);
  try {
    for (const c of [L.task, L.control]) if (c) c.signal = ac.signal;
    const files = await runFiles(L.modelPath, suitePath, (p) => L.ws.sha256(p));
    const warn = (s: string) => process.stderr.write(`circuitlens ${command}: ${s}\n`);
    onWorkers(L, { version: VERSION, ...files, runtime: runtime === 'wasm' ? 'wasm' : 'node' }, { jobs: brokerJobs(url, { warn }), hash: sha256Text, targetRows: chunkRows() });
    return await work();
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

/**
 * `--broker` for an analysis that prepares its own context (sweep: the prompts of one variable): `work` gets the
 * binding of such contexts to the workers, undefined without a broker, and the signal Ctrl-C aborts (which removes
 * the queued chunks, exit 130).
 */
export async function withWorkersFor<T>(
  url: string | undefined, ws: NodeWorkspace, modelPath: string, suitePath: string, runtime: string | undefined, command: string,
  work: (remote: ReturnType<typeof workersFor> | undefined, signal: AbortSignal | undefined) => Promise<T>,
): Promise<T> {
  if (url === undefined) return work(undefined, undefined);
  const ac = new AbortController();
  const onInt = () => ac.abort();
  process.once('SIGINT', onInt);
  try {
    const files = await runFiles(modelPath, suitePath, (p) => ws.sha256(p));
    const warn = (s: string) => process.stderr.write(`circuitlens ${command}: ${s}\n`);
    const remote = workersFor({ version: VERSION, ...files, runtime: runtime === 'wasm' ? 'wasm' : 'node' }, { jobs: brokerJobs(url, { warn }), hash: sha256Text, targetRows: chunkRows() });
    return await work(remote, ac.signal);
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
