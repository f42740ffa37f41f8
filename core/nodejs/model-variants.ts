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
  inlineExternalData(model, modelPath);
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

/** Reads every external-data initializer's bytes from its file (location, offset, length) into the model. */
function inlineExternalData(model: OnnxModel, modelPath: string): void {
  const files = new Map<string, Uint8Array>();
  const dir = path.dirname(modelPath);
  for (const t of model.graph!.initializer) {
    if (t.dataLocation !== EXTERNAL) continue;
    const field = (k: string) => t.externalData?.find((e) => e.key === k)?.value;
    const location = field('location');
    if (!location) throw new UserError(`${modelPath}: initializer "${t.name}" is external data without a location`);
    const file = path.resolve(dir, location);
    let bytes = files.get(file);
    if (!bytes) {
      if (!fs.existsSync(file)) throw new UserError(`${modelPath} keeps weights in "${location}", which is missing (expected at ${file})`);
      bytes = fs.readFileSync(file);
      files.set(file, bytes);
    }
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
