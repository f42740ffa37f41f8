// Where a worker finds a job's model (`circuitlens worker`): the file at the coordinator's path when it has the
// job's bytes — the .onnx by its sha256 and, when the job lists them (its manifest, with --model-url), every file
// it loads with beside it (tokenizer, hooks sidecar, external data) by size, then sha256 — else the cache's copy,
// fetched from the job's URL (model-cache.ts). Each file is hashed once per worker while its size, mtime and inode
// stay the same.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { ModelCache } from './model-cache';
import { companionNames, type ModelFile, type ModelRef } from './model-files';
import { sha256File } from './workspace';

/** Why the files beside a model differ from the job's manifest, in words, naming the file (and both hashes). */
interface Mismatch { name: string; why: string }

export class WorkerModels {
  private readonly hashes = new Map<string, { stamp: string; sha: Promise<string> }>();
  private readonly names = new Map<string, { stamp: string; names: string[] }>();
  private readonly noticed = new Set<string>();
  readonly cache: ModelCache;
  /** Files hashed so far (for tests: each file once while it is unchanged). */
  hashed = 0;

  /** `me`: the worker, as its messages name it. */
  constructor(cacheDir: string, private readonly o: { me: string; log: (s: string) => void }) {
    this.cache = new ModelCache(cacheDir, { log: o.log, sha256: async (p) => (await this.sha256(p)) ?? 'no file' });
  }

  /** The file's sha256, hashed again only when its size, mtime or inode changes; undefined when there is no file. */
  async sha256(p: string): Promise<string | undefined> {
    const st = await fs.promises.stat(p).catch(() => undefined);
    if (!st?.isFile()) return undefined;
    const stamp = `${st.size}:${st.mtimeMs}:${st.ino}`;
    const h = this.hashes.get(p);
    if (h && h.stamp === stamp) return h.sha;
    this.hashed++;
    const sha = sha256File(p);
    this.hashes.set(p, { stamp, sha });
    sha.catch(() => { if (this.hashes.get(p)?.sha === sha) this.hashes.delete(p); });
    return sha;
  }

  /**
   * Where the job's model is here: the coordinator's path when the files there are the job's, else the cache's copy
   * (fetched from the job's URL when the cache lacks it). Not UserErrors: another worker may have the files, so
   * the job is tried again there.
   */
  async modelPath(m: ModelRef): Promise<string> {
    const { me, log } = this.o;
    const here = await this.sha256(m.path);
    const differs = here === m.sha256 ? await this.companionsDiffer(m.path, m.files ?? [], !m.url) : undefined;
    if (here === m.sha256 && !differs) return m.path;
    if (!m.url) {
      if (differs) throw new Error(`worker ${me} refused the chunk: ${m.path} here is the coordinator's model, but ${differs.why} (a different file beside the model at the same path)`);
      if (here === undefined) throw new Error(`worker ${me}: model file not found: ${m.path} (each worker needs the model at the coordinator's path, or the coordinator gives --model-url)`);
      throw new Error(`worker ${me} refused the chunk: ${m.path} here has sha256 ${here}, the coordinator's model ${m.sha256} (a different file at the same path)`);
    }
    const note = differs ? `${m.path} here is the coordinator's model, but ${differs.why}` : here !== undefined ? `${m.path} here has sha256 ${here}, not the coordinator's ${m.sha256}` : undefined;
    if (note && !this.noticed.has(note)) {
      this.noticed.add(note);
      log(`${note}: using the model from ${m.url}`);
    }
    try {
      return await this.cache.modelPath(m);
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new Error(`worker ${me} ${/^refused/.test((e as Error).message) ? '' : 'could not get the chunk\'s model: '}${(e as Error).message}`);
    }
  }

  /**
   * Whether the files the model at `modelPath` loads with differ from the manifest's `files` (the .onnx first, its
   * sha256 already matched): a listed file missing, of another size, or (same size) another sha256; or a file the
   * model would load here that the manifest does not list (a hooks sidecar, another tokenizer). Sizes are looked at
   * first: a file of another size is not hashed, unless `nameHash` (no URL to fall back on: the message names it).
   */
  async companionsDiffer(modelPath: string, files: ModelFile[], nameHash = false): Promise<Mismatch | undefined> {
    if (files.length < 2) return undefined;
    const dir = path.dirname(modelPath);
    const listed = new Set(files.map((f) => f.name));
    for (const name of await this.companions(modelPath)) {
      if (!listed.has(name)) return { name, why: `it loads with ${path.join(dir, name)}, which the coordinator's model does not have` };
    }
    for (const f of files.slice(1)) {
      const p = path.join(dir, ...f.name.split('/'));
      const st = await fs.promises.stat(p).catch(() => undefined);
      if (!st?.isFile()) return { name: f.name, why: `${p} is missing (the coordinator's ${f.name} has sha256 ${f.sha256})` };
      if (st.size === f.size) {
        const got = await this.sha256(p);
        if (got === f.sha256) continue;
        return { name: f.name, why: `${p} has sha256 ${got}, the coordinator's ${f.name} ${f.sha256}` };
      }
      const got = nameHash ? `sha256 ${await this.sha256(p)} ` : '';
      return { name: f.name, why: `${p} has ${got}${st.size} bytes, the coordinator's ${f.name} sha256 ${f.sha256} and ${f.size} bytes` };
    }
    return undefined;
  }

  /** The names of the files the model at `modelPath` loads with (model-files.ts), kept while the .onnx is unchanged. */
  private async companions(modelPath: string): Promise<string[]> {
    const dir = await fs.promises.readdir(path.dirname(modelPath)).catch(() => []);
    const st = await fs.promises.stat(modelPath);
    // Which tokenizer and sidecar are there depends on the folder too: its listing is part of the stamp.
    const stamp = `${st.size}:${st.mtimeMs}:${st.ino}:${dir.sort().join('/')}`;
    const c = this.names.get(modelPath);
    if (c && c.stamp === stamp) return c.names;
    const names = companionNames(modelPath);
    this.names.set(modelPath, { stamp, names });
    return names;
  }

  /** Bytes of the model at `file` and the files it loads with (what a load reads), for the job's lock. */
  async bytes(file: string): Promise<number> {
    const dir = path.dirname(file);
    let total = (await fs.promises.stat(file)).size;
    // External data outside the model's folder (allowed without --model-url): not counted.
    for (const name of await this.companions(file).catch(() => [])) total += (await fs.promises.stat(path.join(dir, ...name.split('/'))).catch(() => ({ size: 0 }))).size;
    return total;
  }
}
