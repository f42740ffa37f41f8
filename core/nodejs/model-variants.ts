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
  inlineExternalData(model, modelPath, externalFiles(model, modelPath, (f) => fs.readFileSync(f)));
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
  const files = externalFiles(model, modelPath);
  await Promise.all([...files.keys()].map(async (f) => { files.set(f, await fs.promises.readFile(f)); }));
  inlineExternalData(model, modelPath, files);
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

/** The external-data initializers of the model, each with its location's field and the file it names. */
function externalTensors(model: OnnxModel, modelPath: string): { t: TensorProto; location: string; file: string; field: (k: string) => string | undefined }[] {
  const dir = path.dirname(modelPath);
  return model.graph!.initializer.filter((t) => t.dataLocation === EXTERNAL).map((t) => {
    const field = (k: string) => t.externalData?.find((e) => e.key === k)?.value;
    const location = field('location');
    if (!location) throw new UserError(`${modelPath}: initializer "${t.name}" is external data without a location`);
    const file = path.resolve(dir, location);
    if (!fs.existsSync(file)) throw new UserError(`${modelPath} keeps weights in "${location}", which is missing (expected at ${file})`);
    return { t, location, file, field };
  });
}

/** The external-data files the model names, each read by `read` (or left to be read: an empty entry). */
function externalFiles(model: OnnxModel, modelPath: string, read?: (file: string) => Uint8Array): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  for (const { file } of externalTensors(model, modelPath)) if (!files.has(file)) files.set(file, read ? read(file) : new Uint8Array(0));
  return files;
}

/** Puts every external-data initializer's bytes (location, offset, length), from the files read, into the model. */
function inlineExternalData(model: OnnxModel, modelPath: string, files: Map<string, Uint8Array>): void {
  for (const { t, location, file, field } of externalTensors(model, modelPath)) {
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
