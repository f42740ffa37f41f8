import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../engine/engine';
import type { MemoryOptions } from '../engine/memory';
import type { Runtime } from '../engine/runtime';
import { UserError } from '../errors';
import { decodeModel, externalLocations, referenceWeightsInFile, type OnnxModel } from '../onnx/model';
import type { HooksSidecar } from '../onnx/detect';
import { Tokenizer } from '../tokenizer';
import { OrtNodeRuntime, type OrtNodeOptions } from './ort-node';
import { OrtWebRuntime } from '../engine/ort-web';

export type RuntimeName = 'node' | 'wasm';

/** `flushDenormals` (native only): see OrtNodeRuntime; for processes CircuitLens owns, such as the CLI. */
export function createRuntime(name: RuntimeName = 'node', opts: OrtNodeOptions = {}): Runtime {
  return name === 'wasm' ? new OrtWebRuntime() : new OrtNodeRuntime(opts);
}

/** The tokenizer a model loads with: `<model>.tokenizer.json` beside it, else `tokenizer.json`; undefined when neither is. */
export function tokenizerPathFor(modelPath: string): string | undefined {
  const dir = path.dirname(modelPath);
  const base = path.basename(modelPath, '.onnx');
  return [path.join(dir, `${base}.tokenizer.json`), path.join(dir, 'tokenizer.json')].find((f) => fs.existsSync(f));
}

/** Reads `tokenizer.json` beside the model (or `<model>.tokenizer.json`); undefined when there is none. */
export function loadTokenizerFor(modelPath: string): Tokenizer | undefined {
  const f = tokenizerPathFor(modelPath);
  return f === undefined ? undefined : Tokenizer.parse(fs.readFileSync(f, 'utf8'), f);
}

/** The hooks sidecar's path: `<model>.hooks.json` (it may not exist). */
export function sidecarPathFor(modelPath: string): string {
  return modelPath.replace(/\.onnx$/, '') + '.hooks.json';
}

export function loadSidecar(modelPath: string): { sidecar?: HooksSidecar; sidecarPath?: string } {
  const p = sidecarPathFor(modelPath);
  if (!fs.existsSync(p)) return {};
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(p, 'utf8'));
  } catch (e) {
    throw new UserError(`${p} is not valid JSON: ${(e as Error).message}`);
  }
  const hooks = (json as { hooks?: unknown }).hooks;
  if (!hooks || typeof hooks !== 'object' || Object.values(hooks).some((v) => typeof v !== 'string')) {
    throw new UserError(`${p}: expected {"hooks": {"<hook name>": "<onnx tensor name>", ...}}`);
  }
  const ctx = (json as { contextLength?: unknown }).contextLength;
  return { sidecar: { hooks: hooks as Record<string, string>, contextLength: typeof ctx === 'number' ? ctx : undefined }, sidecarPath: p };
}

export function readModelFile(modelPath: string): Uint8Array {
  if (!fs.existsSync(modelPath)) throw new UserError(`model file not found: ${modelPath}`);
  if (fs.statSync(modelPath).isDirectory()) throw new UserError(`${modelPath} is a folder; pass the .onnx file inside it`);
  return fs.readFileSync(modelPath);
}

/** Models larger than this are re-read for sessions built after loading instead of kept decoded in memory. */
const KEEP_DECODED_BYTES = 64 * 1024 * 1024;

/** The environment variable that sets the engine's memory budget in GiB (see memoryBudget). */
export const MEMORY_ENV = 'CIRCUITLENS_MEMORY_GB';

/**
 * The memory an engine may plan for (EngineOptions.memory): `budgetBytes` when given, else $CIRCUITLENS_MEMORY_GB
 * GiB, else 0.75 × this machine's memory.
 */
export function memoryBudget(budgetBytes?: number): { budget: number; budgetSource: string } {
  if (budgetBytes !== undefined) return { budget: budgetBytes, budgetSource: 'as given' };
  const env = process.env[MEMORY_ENV];
  if (env !== undefined && env !== '') {
    const gb = Number(env);
    if (!Number.isFinite(gb) || gb <= 0) throw new UserError(`${MEMORY_ENV}=${env}: expected a positive number of GiB`);
    return { budget: gb * 1024 ** 3, budgetSource: `${MEMORY_ENV}=${env}` };
  }
  const total = os.totalmem();
  return { budget: 0.75 * total, budgetSource: `0.75 × this machine's ${(total / 1024 ** 3).toFixed(1)} GiB` };
}

/**
 * Loads a model file with its tokenizer, sidecar and external data into an engine. `memoryBudget`: bytes the engine
 * may plan for (default: see memoryBudget).
 */
export async function loadEngine(modelPath: string, runtime: Runtime = createRuntime(), opts: { keepDecodedBytes?: number; edgeHeadSlicing?: boolean; eapBlockLayers?: number; memoryBudget?: number } = {}): Promise<Engine> {
  const before = fs.statSync(modelPath, { throwIfNoEntry: false });
  const bytes = readModelFile(modelPath);
  const large = bytes.length > (opts.keepDecodedBytes ?? KEEP_DECODED_BYTES);
  // A large model's own weights go to native onnxruntime as external data referring to the model file's bytes
  // (read when a session is made), not inside every instrumented graph it is given: one copy of them in memory
  // fewer while loading. Not for models that keep weights in other files too (those are read by path).
  const dir = path.dirname(modelPath);
  const self = path.basename(modelPath);
  const model = decodeModel(bytes, modelPath);
  const inFile = large && runtime.backend === 'node' && externalLocations(model).length === 0;
  const withRefs = (m: OnnxModel, b: Uint8Array) => { if (inFile) referenceWeightsInFile(m, b, self); return m; };
  withRefs(model, bytes);
  // The first session takes the bytes already read; sessions built later re-read the file (checked unchanged).
  let first: Uint8Array | undefined = bytes;
  const external = externalLocations(model).map((location) => {
    if (inFile && location === self) return { location, read: () => { const b = first ?? readUnchanged(); first = undefined; return b; } };
    const p = path.join(dir, location);
    if (!fs.existsSync(p)) throw new UserError(`${modelPath} keeps weights in "${location}", which is missing (expected at ${p})`);
    return runtime.backend === 'node' ? { location, path: p } : { location, data: fs.readFileSync(p) };
  });
  const stamp = before ? `${before.size}:${before.mtimeMs}` : '';
  function readUnchanged(): Uint8Array {
    const st = fs.statSync(modelPath, { throwIfNoEntry: false });
    if (!st || `${st.size}:${st.mtimeMs}` !== stamp) throw new UserError(`${modelPath} changed on disk after it was loaded; run again to use the file as it is now`);
    return readModelFile(modelPath);
  }
  // Its weights referenced in the file, the re-read graph is small; the weights are read again by `read` above.
  const reload = large ? () => { const b = readUnchanged(); return withRefs(decodeModel(b, modelPath), b); } : undefined;
  const memory: MemoryOptions = {
    ...memoryBudget(opts.memoryBudget),
    sharedWeights: runtime instanceof OrtNodeRuntime && runtime.sharesWeights(external),
    raiseHint: `to plan for more memory than that, set ${MEMORY_ENV} (GiB)`,
  };
  return Engine.fromModel(runtime, model, { what: modelPath, tokenizer: loadTokenizerFor(modelPath), ...loadSidecar(modelPath), external, reload, edgeHeadSlicing: opts.edgeHeadSlicing, eapBlockLayers: opts.eapBlockLayers, memory });
}
