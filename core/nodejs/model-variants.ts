// A model file held in memory with all its weights, from which engines are made with some initializers replaced:
// bisect's candidate models (one model's graph with some of another's tensors) without writing a file for each.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Engine } from '../engine/engine';
import type { Runtime } from '../engine/runtime';
import type { WeightVariants } from '../engine/variants';
import { UserError } from '../errors';
import { decodeModel, EXTERNAL, type OnnxModel, type TensorProto } from '../onnx/model';
import { withInitializers } from '../onnx/weight-swap';
import { loadSidecar, loadTokenizerFor, memoryBudget, MEMORY_ENV, readModelFile } from './load';

/**
 * Reads a model file and the external-data files it refers to. The weights stay in memory (each candidate engine
 * holds its own copy of them in onnxruntime while it lives): for models that fit in memory a few times over.
 */
export function openModelVariants(modelPath: string, runtime: Runtime): WeightVariants {
  const model = decodeModel(readModelFile(modelPath), modelPath);
  const external = externalTensors(model, modelPath);
  inlineExternalData(modelPath, external, new Map(filesOf(external).map((f) => [f, fs.readFileSync(f)])));
  return variantsOf(model, modelPath, runtime);
}

/**
 * openModelVariants with the files read asynchronously (a worker's: the event loop, which renews its job's lock,
 * runs while GBs are read). Decoding stays synchronous; it does not copy the weights (protobufjs gives views of the
 * file's bytes), so it costs time by the model's number of fields, not its bytes.
 */
export async function readModelVariants(modelPath: string, runtime: Runtime): Promise<WeightVariants> {
  const st = await fs.promises.stat(modelPath).catch(() => undefined);
  if (!st) throw new UserError(`model file not found: ${modelPath}`);
  if (st.isDirectory()) throw new UserError(`${modelPath} is a folder; pass the .onnx file inside it`);
  const model = decodeModel(await fs.promises.readFile(modelPath), modelPath);
  const external = externalTensors(model, modelPath);
  inlineExternalData(modelPath, external, new Map(await Promise.all(filesOf(external).map(async (f) => [f, await fs.promises.readFile(f)] as const))));
  return variantsOf(model, modelPath, runtime);
}

function variantsOf(model: OnnxModel, modelPath: string, runtime: Runtime): WeightVariants {
  const hooks = loadSidecar(modelPath);
  const tokenizer = loadTokenizerFor(modelPath);
  const memory = { ...memoryBudget(), sharedWeights: false, raiseHint: `to plan for more memory than that, set ${MEMORY_ENV} (GiB)` };
  return {
    path: modelPath, model, hooks,
    engineWith: (replace) => Engine.fromModel(runtime, withInitializers(model, replace), {
      what: replace.length ? `${modelPath} with ${replace.length} tensor${replace.length === 1 ? '' : 's'} replaced` : modelPath,
      tokenizer, ...hooks, external: [], memory,
    }),
  };
}

interface ExternalTensor { t: TensorProto; location: string; file: string; field: (k: string) => string | undefined }

/** The external-data initializers of the model, each with its location's field and the file it names (checked to
 *  exist, once per file). */
function externalTensors(model: OnnxModel, modelPath: string): ExternalTensor[] {
  const dir = path.dirname(modelPath);
  const found = new Set<string>();
  return model.graph!.initializer.filter((t) => t.dataLocation === EXTERNAL).map((t) => {
    const field = (k: string) => t.externalData?.find((e) => e.key === k)?.value;
    const location = field('location');
    if (!location) throw new UserError(`${modelPath}: initializer "${t.name}" is external data without a location`);
    const file = path.resolve(dir, location);
    if (!found.has(file)) {
      if (!fs.existsSync(file)) throw new UserError(`${modelPath} keeps weights in "${location}", which is missing (expected at ${file})`);
      found.add(file);
    }
    return { t, location, file, field };
  });
}

/** The files the external tensors are in, each once. */
const filesOf = (external: ExternalTensor[]): string[] => [...new Set(external.map((e) => e.file))];

/** Puts every external-data initializer's bytes (location, offset, length), from the files read, into the model. */
function inlineExternalData(modelPath: string, external: ExternalTensor[], files: ReadonlyMap<string, Uint8Array>): void {
  for (const { t, location, file, field } of external) {
    const bytes = files.get(file)!;
    const offset = Number(field('offset') ?? 0);
    const length = field('length') !== undefined ? Number(field('length')) : bytes.length - offset;
    if (!(offset >= 0 && length >= 0 && offset + length <= bytes.length)) {
      throw new UserError(`${modelPath}: initializer "${t.name}" reads bytes ${offset}–${offset + length} of "${location}", which has ${bytes.length}`);
    }
    inline(t, bytes.subarray(offset, offset + length));
  }
}

function inline(t: TensorProto, bytes: Uint8Array): void {
  t.rawData = bytes;
  t.externalData = [];
  t.dataLocation = 0;
}
