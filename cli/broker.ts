// `--broker URL` (and `--model-url URL`) for the CLI's analyses: the suite's contexts get a remote
// (core/analysis/distributed/run.ts onWorkers) that sends their batched engine calls to workers through the broker
// (core/nodejs/broker.ts brokerRun, shared with the extension), or, for prune and sensitivity, each pruned or
// quantized model goes to a worker whole (distributed/variants.ts); Ctrl-C removes the queued chunks and exits 130.
// A command takes both flags by spreading BROKER_FLAGS into its parse options and listing BROKER_OPTIONS (or
// its own wording of BROKER_OPTION, then MODEL_URL_OPTION) in its usage, and hands its parsed values on.
import { onWorkers, workersFor } from '../core/analysis/distributed/run';
import { variantsOnWorkers } from '../core/analysis/distributed/variants';
import type { VariantWorkers } from '../core/analysis/variant-measures';
import { Cancelled, UserError } from '../core/errors';
import { brokerRun, checkBroker } from '../core/nodejs/broker';
import { checkModelUrl } from '../core/nodejs/model-files';
import type { NodeWorkspace } from '../core/nodejs/workspace';
import type { Loaded } from './common';

export const BROKER_OPTION: [string, string] = ['--broker URL', 'run the batched work on workers (circuitlens worker) through Redis at URL (redis://HOST:PORT); the result equals the local one exactly'];
export const MODEL_URL_OPTION: [string, string] = ['--model-url URL', 'with --broker: where workers without the model at its path here fetch its .onnx (http://, https://, file://); the files beside it (tokenizer, sidecar, external data) are fetched relative to it, each checked against the sha256 computed here'];
export const BROKER_OPTIONS: [string, string][] = [BROKER_OPTION, MODEL_URL_OPTION];

/** The parse options of --broker and --model-url. */
export const BROKER_FLAGS = { broker: { type: 'string' }, 'model-url': { type: 'string' } } as const;

/** A command's parsed values (with BROKER_FLAGS). */
export interface BrokerFlags { broker?: string; 'model-url'?: string }

function flags(f: BrokerFlags): { url?: string; modelUrl?: string } {
  return { url: f.broker, modelUrl: f['model-url'] };
}

/** A bad or unreachable broker, or a bad --model-url, said before the model is loaded (exit 2). */
export async function checkBrokerFlag(f: BrokerFlags): Promise<void> {
  const { url, modelUrl } = flags(f);
  if (modelUrl !== undefined) {
    if (url === undefined) throw new UserError('--model-url tells workers where to fetch the model: give it with --broker URL');
    checkModelUrl(modelUrl);
  }
  if (url !== undefined) await checkBroker(url);
}

/** The files of a run, and how their sha256 is taken (the workspace's, which keeps it per file state). */
interface RunFiles { modelPath: string; suitePath: string; sha256: (p: string) => Promise<string> }

/**
 * Runs `work` with the batched work of `L`'s contexts on the broker's workers (when --broker is given; else as is).
 * The run key hashes the model's sha256, the suite's text and everything else the rows depend on, so the same
 * command run again (after a crash, a Ctrl-C) plans the same chunk ids and finds the finished ones.
 */
export async function withBroker<T>(f: BrokerFlags, L: Loaded, suitePath: string, runtime: string | undefined, command: string, work: () => Promise<T>): Promise<T> {
  if (flags(f).url === undefined) return work();
  return brokered(f, { modelPath: L.modelPath, suitePath, sha256: (p) => L.ws.sha256(p) }, runtime, command, (run, signal) => {
    for (const c of [L.task, L.control]) if (c) c.signal = signal;
    onWorkers(L, run.source, run.broker);
    return work();
  });
}

/**
 * `--broker` for an analysis that prepares its own context (sweep: the prompts of one variable): `work` gets the
 * binding of such contexts to the workers, undefined without a broker, and the signal Ctrl-C aborts (which removes
 * the queued chunks, exit 130).
 */
export async function withWorkersFor<T>(
  f: BrokerFlags, ws: NodeWorkspace, modelPath: string, suitePath: string, runtime: string | undefined, command: string,
  work: (remote: ReturnType<typeof workersFor> | undefined, signal: AbortSignal | undefined) => Promise<T>,
): Promise<T> {
  if (flags(f).url === undefined) return work(undefined, undefined);
  return brokered(f, { modelPath, suitePath, sha256: (p) => ws.sha256(p) }, runtime, command, (run, signal) => work(workersFor(run.source, run.broker), signal));
}

/**
 * Runs `work` (prune, sensitivity) with its pruned or quantized models measured on the broker's workers, one job
 * each (when --broker is given; else here: `workers` undefined). Job ids hash the model's sha256, the suite's text,
 * the variant and the circuit, so a rerun finds the points already measured.
 */
export async function withVariantWorkers<T>(f: BrokerFlags, files: RunFiles, runtime: string | undefined, command: string, work: (o: { workers?: VariantWorkers; signal?: AbortSignal }) => Promise<T>): Promise<T> {
  if (flags(f).url === undefined) return work({});
  return brokered(f, files, runtime, command, (run, signal) => work({ workers: variantsOnWorkers(run.source, run.broker), signal }));
}

/** The run on the broker (brokerRun) with Ctrl-C aborting it: queued chunks removed, "cancelled", exit 130. */
async function brokered<T>(f: BrokerFlags, files: RunFiles, runtime: string | undefined, command: string, work: (run: Awaited<ReturnType<typeof brokerRun>>, signal: AbortSignal) => Promise<T>): Promise<T> {
  const { url, modelUrl } = flags(f);
  const ac = new AbortController();
  const onInt = () => ac.abort();
  process.once('SIGINT', onInt);
  try {
    const warn = (s: string) => process.stderr.write(`circuitlens ${command}: ${s}\n`);
    const run = await brokerRun({ url: url!, modelUrl, ...files, runtime: runtime === 'wasm' ? 'wasm' : 'node', warn });
    return await work(run, ac.signal);
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
