// Writing a model with some initializers replaced (a pruned model) as a file CircuitLens loads like the original:
// every weight inside the one .onnx file (external data read in), and the files model loading looks for beside
// it (core/nodejs/load.ts: `<model>.tokenizer.json` or `tokenizer.json`, `<model>.hooks.json`) copied when the
// original has them and the new place would not find the same content. Every file is written atomically.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { encodeModel, type TensorProto } from '../onnx/model';
import { withInitializers } from '../onnx/weight-swap';
import type { WeightVariants } from '../engine/variants';
import { sidecarPathFor, tokenizerPathFor } from './load';
import { writeFileAtomic } from './workspace';

/** protobuf's limit on one message: larger models need external data, which this writer does not produce. */
const PROTOBUF_LIMIT = 2 ** 31 - 1;

/**
 * The companion files to write with a model at `target`: [source, destination] pairs. `force`: whether existing
 * destinations may be replaced (otherwise a UserError, before anything is written).
 */
export function companionFiles(source: string, target: string, force: boolean | undefined): [string, string][] {
  const out: [string, string][] = [];
  const tok = tokenizerPathFor(source);
  if (tok) {
    const found = tokenizerPathFor(target);
    const same = found !== undefined && fs.readFileSync(found).equals(fs.readFileSync(tok));
    if (!same) out.push([tok, path.join(path.dirname(target), `${path.basename(target, '.onnx')}.tokenizer.json`)]);
  }
  const hooks = sidecarPathFor(source);
  if (fs.existsSync(hooks)) out.push([hooks, sidecarPathFor(target)]);
  for (const [, to] of out) {
    if (!force && fs.existsSync(to) && path.resolve(to) !== path.resolve(target)) throw new UserError(`${to} exists (the model's companion file would go there); pass --force to replace it`);
  }
  return out;
}

/** Writes `v.model` with `replace` put in, and its companion files; returns the files written. */
export async function writeModelWith(v: WeightVariants, replace: readonly TensorProto[], target: string, force: boolean | undefined): Promise<string[]> {
  if (!target.endsWith('.onnx')) throw new UserError(`--out ${target}: the model file must end in .onnx (its tokenizer and hooks files are named after it)`);
  const companions = companionFiles(v.path, target, force);
  const bytes = encodeModel(withInitializers(v.model, replace));
  if (bytes.length > PROTOBUF_LIMIT) throw new UserError(`the pruned model is ${(bytes.length / 2 ** 30).toFixed(1)} GiB, over protobuf's 2 GiB limit for one file; writing models with external data is not supported`);
  await writeFileAtomic(target, bytes);
  for (const [from, to] of companions) await writeFileAtomic(to, fs.readFileSync(from));
  return [target, ...companions.map(([, to]) => to)];
}
