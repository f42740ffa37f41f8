// The `circuitlens.broker` setting: when it names a Redis (redis://HOST:PORT), the batched work of Attribute Suite,
// Discover Circuit, Verify Circuit and Sweep Suite runs on `circuitlens worker` processes through it, as `--broker` does in the
// CLI (core/analysis/distributed/run.ts onWorkers, core/nodejs/broker.ts), and so do the pruned and quantized
// models of Pruning Curves and Quantization Sensitivity, one per job (distributed/variants.ts). Cancelling the
// progress notification removes the queued chunks (the contexts carry its signal). Empty: everything runs here.
// circuitlens.brokerModelUrl, when set, is where workers that lack the model at this path fetch it (the CLI's --model-url).
import * as vscode from 'vscode';
import type { Contexts } from '../core/analysis/open-suite';
import { onWorkers, workersFor } from '../core/analysis/distributed/run';
import { variantsOnWorkers } from '../core/analysis/distributed/variants';
import type { VariantWorkers } from '../core/analysis/variant-measures';
import { UserError } from '../core/errors';
import { brokerConnection, brokerRun, checkBroker } from '../core/nodejs/broker';
import { checkModelUrl } from '../core/nodejs/model-files';
import type { State } from './state';

/** Where workers fetch the model (circuitlens.brokerModelUrl); undefined when empty. */
function modelUrlSetting(): string | undefined {
  return vscode.workspace.getConfiguration('circuitlens').get<string>('brokerModelUrl', '').trim() || undefined;
}

/**
 * The broker the setting names, checked (a bad URL or a broker that cannot be reached is a UserError, which the
 * progress notification shows, before anything is loaded or run), and circuitlens.brokerModelUrl when set, checked
 * too; undefined when circuitlens.broker is empty.
 */
export async function configuredBroker(): Promise<string | undefined> {
  const url = vscode.workspace.getConfiguration('circuitlens').get<string>('broker', '').trim();
  if (!url) return undefined;
  try {
    await checkBroker(url);
  } catch (e) {
    throw new UserError(`${(e as Error).message} — the setting circuitlens.broker names it; empty it to run here`);
  }
  const modelUrl = modelUrlSetting();
  if (modelUrl) checkModelUrl(modelUrl, 'the setting circuitlens.brokerModelUrl');
  return url;
}

/** Sends the batched work of the suite's contexts to the broker's workers (nothing when `url` is undefined). */
export async function sendToWorkers(state: State, url: string | undefined, modelPath: string, suitePath: string, contexts: Contexts): Promise<void> {
  const run = await runOn(state, url, modelPath, suitePath);
  if (run) onWorkers(contexts, run.source, run.broker);
}

/** The binding of a context an analysis prepares itself (Sweep Suite's) to the broker's workers; undefined when `url` is. */
export async function workersForRun(state: State, url: string | undefined, modelPath: string, suitePath: string): Promise<ReturnType<typeof workersFor> | undefined> {
  const run = await runOn(state, url, modelPath, suitePath);
  return run && workersFor(run.source, run.broker);
}

/** Where Pruning Curves and Quantization Sensitivity measure their models: the broker's workers, or here (undefined). */
export async function variantWorkers(state: State, url: string | undefined, modelPath: string, suitePath: string): Promise<VariantWorkers | undefined> {
  const run = await runOn(state, url, modelPath, suitePath);
  return run && variantsOnWorkers(run.source, run.broker);
}

/** The run on the broker (brokerRun) with the settings' model URL, logged; undefined when `url` is. */
async function runOn(state: State, url: string | undefined, modelPath: string, suitePath: string) {
  if (!url) return undefined;
  const modelUrl = modelUrlSetting();
  const warn = (s: string) => state.log.warn(`broker ${url}: ${s}`);
  const run = await brokerRun({ url, modelUrl, modelPath, suitePath, sha256: (p) => state.ws.sha256(p), warn });
  state.log.info(`batched work goes to the workers on ${url}${modelUrl ? ` (the model from ${modelUrl} where they lack it)` : ''}`);
  return run;
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
    item.tooltip = `CircuitLens: Attribute Suite, Discover Circuit, Verify Circuit, Sweep Suite, Pruning Curves and Quantization Sensitivity run their batched work on the workers of ${where} (setting circuitlens.broker)`;
    item.show();
  };
  update();
  const sub = vscode.workspace.onDidChangeConfiguration((e) => { if (e.affectsConfiguration('circuitlens.broker')) update(); });
  return vscode.Disposable.from(item, sub);
}
