// The `circuitlens.broker` setting: when it names a Redis (redis://HOST:PORT), the batched work of Attribute Suite,
// Discover Circuit and Verify Circuit runs on `circuitlens worker` processes through it, as `--broker` does in the
// CLI (core/analysis/distributed/run.ts onWorkers, core/nodejs/broker.ts), and so do the pruned and quantized
// models of Pruning Curves and Quantization Sensitivity, one per job (distributed/variants.ts). Cancelling the
// progress notification removes the queued chunks (the contexts carry its signal). Empty: everything runs here.
import * as vscode from 'vscode';
import type { Contexts } from '../core/analysis/open-suite';
import { onWorkers, type Broker } from '../core/analysis/distributed/run';
import { variantsOnWorkers } from '../core/analysis/distributed/variants';
import type { VariantWorkers } from '../core/analysis/variant-measures';
import { UserError } from '../core/errors';
import { brokerConnection, brokerJobs, checkBroker, chunkRows, runFiles, sha256Text } from '../core/nodejs/broker';
import type { State } from './state';

declare const CIRCUITLENS_VERSION: string | undefined;
/** The package version, set by the build (esbuild.js): workers refuse chunks of another version. */
const VERSION = typeof CIRCUITLENS_VERSION === 'string' ? CIRCUITLENS_VERSION : '0.0.0';

/**
 * The broker the setting names, checked (a bad URL or a broker that cannot be reached is a UserError, which the
 * progress notification shows, before anything is loaded or run); undefined when the setting is empty.
 */
export async function configuredBroker(): Promise<string | undefined> {
  const url = vscode.workspace.getConfiguration('circuitlens').get<string>('broker', '').trim();
  if (!url) return undefined;
  try {
    brokerConnection(url);
    await checkBroker(url);
  } catch (e) {
    throw new UserError(`${(e as Error).message} — the setting circuitlens.broker names it; empty it to run here`);
  }
  return url;
}

/** Sends the batched work of the suite's contexts to the broker's workers (nothing when `url` is undefined). */
export async function sendToWorkers(state: State, url: string | undefined, modelPath: string, suitePath: string, contexts: Contexts): Promise<void> {
  if (!url) return;
  const files = await runFiles(modelPath, suitePath, (p) => state.ws.sha256(p));
  onWorkers(contexts, { version: VERSION, ...files, runtime: 'node' }, brokerFor(state, url));
  state.log.info(`batched work goes to the workers on ${url}`);
}

/** Where Pruning Curves and Quantization Sensitivity measure their models: the broker's workers, or here (undefined). */
export async function variantWorkers(state: State, url: string | undefined, modelPath: string, suitePath: string): Promise<VariantWorkers | undefined> {
  if (!url) return undefined;
  const files = await runFiles(modelPath, suitePath, (p) => state.ws.sha256(p));
  state.log.info(`pruned and quantized models go to the workers on ${url}`);
  return variantsOnWorkers({ version: VERSION, ...files, runtime: 'node' }, brokerFor(state, url));
}

function brokerFor(state: State, url: string): Broker {
  const warn = (s: string) => state.log.warn(`broker ${url}: ${s}`);
  return { jobs: brokerJobs(url, { warn }), hash: sha256Text, targetRows: chunkRows() };
}

/** While circuitlens.broker is set, a status bar item says where batched work goes (host and port, no password). */
export function brokerStatus(): vscode.Disposable {
  const item = vscode.window.createStatusBarItem('circuitlens.broker', vscode.StatusBarAlignment.Left, 49);
  item.name = 'CircuitLens workers';
  item.command = { title: 'Open Settings', command: 'workbench.action.openSettings', arguments: ['circuitlens.broker'] };
  const update = () => {
    const url = vscode.workspace.getConfiguration('circuitlens').get<string>('broker', '').trim();
    if (!url) { item.hide(); return; }
    let where = url;
    try { const c = brokerConnection(url); where = `${c.host}:${c.port}`; } catch { /* shown as set; a run says what is wrong */ }
    item.text = `$(server-process) workers: ${where}`;
    item.tooltip = `CircuitLens: Attribute Suite, Discover Circuit, Verify Circuit, Pruning Curves and Quantization Sensitivity run their batched work on the workers of ${where} (setting circuitlens.broker)`;
    item.show();
  };
  update();
  const sub = vscode.workspace.onDidChangeConfiguration((e) => { if (e.affectsConfiguration('circuitlens.broker')) update(); });
  return vscode.Disposable.from(item, sub);
}
