// A model as files that can travel: the .onnx and what loadEngine (load.ts) reads beside it — its tokenizer, its
// hooks sidecar, the external-data files its initializers name — each with its size and sha256. The coordinator of a
// distributed run lists them (the job's manifest, with --model-url); a worker that lacks the model fetches each file
// relative to the URL and checks it against the list (model-cache.ts). Names are relative to the .onnx's folder,
// '/'-separated, and never leave it: a worker writes them under its cache.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { scanExternalLocations } from '../onnx/external-scan';
import { sidecarPathFor, tokenizerPathFor } from './load';
import { sha256File } from './workspace';

/** One file of a model: its name relative to the .onnx's folder (the .onnx itself first), size and sha256. */
export interface ModelFile {
  name: string;
  size: number;
  sha256: string;
}

/** A model as a job names it: where the coordinator has it, its sha256, and (optionally) where to fetch it. */
export interface ModelRef {
  path: string;
  sha256: string;
  /** The .onnx's URL (http://, https://, file://); the other files are fetched relative to it. */
  url?: string;
  /** With `url`: every file the model loads with, the .onnx first. */
  files?: ModelFile[];
}

const SHA256 = /^[0-9a-f]{64}$/;

/** A --model-url (or the circuitlens.brokerModelUrl setting, `what`), checked: http://, https:// or file://. */
export function checkModelUrl(url: string, what = '--model-url'): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UserError(`${what} ${url}: not a URL; expected http://, https:// or file:// and the path of the model's .onnx`);
  }
  if (!['http:', 'https:', 'file:'].includes(u.protocol)) throw new UserError(`${what} ${url}: expected an http://, https:// or file:// URL (got ${u.protocol}//)`);
  if (u.pathname.endsWith('/')) throw new UserError(`${what} ${url}: names a folder; give the URL of the model's .onnx (the files beside it are fetched relative to it)`);
  return u.href;
}

/** Whether a manifest name stays inside the model's folder: relative, '/'-separated, no '.' or '..' parts. */
export function isLocalName(name: string): boolean {
  if (!name || name.includes('\\') || name.includes('\0') || name.startsWith('/') || /^[A-Za-z]:/.test(name)) return false;
  return name.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

/** The URL of a model's file: the .onnx's own (the first), the others relative to it by name. */
export function fileUrl(modelUrl: string, files: ModelFile[], i: number): string {
  if (i === 0) return modelUrl;
  return new URL(files[i]!.name.split('/').map(encodeURIComponent).join('/'), modelUrl).href;
}

/**
 * A job's model manifest, checked before anything is fetched or written (the same on every worker, so a UserError:
 * the chunk fails at once): the .onnx first with the job's sha256, names that stay in the model's folder, each once.
 */
export function checkManifest(m: ModelRef): { url: string; files: ModelFile[] } {
  if (!SHA256.test(m.sha256)) throw new UserError(`the job's model sha256 "${m.sha256}" is not 64 hex digits`);
  if (!m.url) throw new UserError('the job names no model URL');
  const url = checkModelUrl(m.url, 'the job\'s model URL');
  const files = m.files;
  if (!Array.isArray(files) || !files.length) throw new UserError(`the job names the model URL ${m.url} but not its files (a coordinator older than this worker?)`);
  const seen = new Set<string>();
  for (const f of files) {
    if (!f || typeof f.name !== 'string' || !isLocalName(f.name)) throw new UserError(`the job's model file "${f?.name}" is not a name inside the model's folder`);
    if (!Number.isSafeInteger(f.size) || f.size < 0 || typeof f.sha256 !== 'string' || !SHA256.test(f.sha256)) throw new UserError(`the job's model file ${f.name} has no valid size and sha256`);
    if (seen.has(f.name)) throw new UserError(`the job names the model file ${f.name} twice`);
    seen.add(f.name);
  }
  if (files[0]!.name.includes('/') || files[0]!.sha256 !== m.sha256) throw new UserError(`the job's model files do not start with the model file of sha256 ${m.sha256}`);
  return { url, files };
}

/** The names of the files beside the .onnx that it loads with (tokenizer, sidecar, external data), in that order. */
export function companionNames(modelPath: string): string[] {
  const names: string[] = [];
  const tokenizer = tokenizerPathFor(modelPath);
  if (tokenizer) names.push(path.basename(tokenizer));
  const sidecar = sidecarPathFor(modelPath);
  if (fs.existsSync(sidecar)) names.push(path.basename(sidecar));
  const fd = fs.openSync(modelPath, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const read = (offset: number, length: number) => {
      const b = Buffer.alloc(length);
      const n = fs.readSync(fd, b, 0, length, offset);
      return b.subarray(0, n);
    };
    for (const location of scanExternalLocations(size, read, modelPath)) {
      const name = location.replace(/\\/g, '/');
      if (!isLocalName(path.posix.normalize(name)) || path.posix.normalize(name) !== name) {
        throw new UserError(`${modelPath} keeps weights in "${location}", outside its folder: workers fetch only the files beside the model (relative to --model-url)`);
      }
      names.push(name);
    }
  } finally {
    fs.closeSync(fd);
  }
  return [...new Set(names)];
}

/**
 * The manifest of the model at `modelPath` (its sha256 already known: `sha256`): the .onnx, then its companions,
 * each with its size and sha256 (hashed here).
 */
export async function modelManifest(modelPath: string, sha256: string): Promise<ModelFile[]> {
  const dir = path.dirname(modelPath);
  const own = { name: path.basename(modelPath), size: (await fs.promises.stat(modelPath)).size, sha256 };
  const others = await Promise.all(companionNames(modelPath).map(async (name) => {
    const p = path.join(dir, ...name.split('/'));
    let size: number;
    try {
      size = (await fs.promises.stat(p)).size;
    } catch {
      throw new UserError(`${modelPath} names "${name}", which is missing (expected at ${p})`);
    }
    return { name, size, sha256: await sha256File(p) };
  }));
  return [own, ...others];
}
