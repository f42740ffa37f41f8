// A worker's cache of models fetched from their URL (model-files.ts: the job's manifest): each model in a folder
// named by its sha256, every file checked against the manifest's sha256 and size. A fetch goes into a temporary
// folder beside them and is renamed into place whole once every file checks, so the cache holds a model completely
// or not at all, and workers sharing the folder (one machine, or a shared mount) never see another's half-written
// files. Two workers after the same model take turns (a lock file, cache-owners.ts): the second waits for the
// first's fetch and uses its folder; fetch folders left by a worker killed mid-fetch are removed (cache-owners.ts).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors';
import { partName, removeStaleParts, takeFetchLock } from './cache-owners';
import { checkManifest, fileUrl, type ModelFile, type ModelRef } from './model-files';

/** The cache folder: --cache, else $CIRCUITLENS_CACHE, else ~/.cache/circuitlens/models. */
export function cacheDir(flag?: string): string {
  return path.resolve(flag || process.env.CIRCUITLENS_CACHE || path.join(os.homedir(), '.cache', 'circuitlens', 'models'));
}

/** In a model's folder: its files as fetched and checked (name, size, sha256, mtime), so they need not be hashed again. */
const VERIFIED = '.verified.json';

async function readVerified(home: string): Promise<Map<string, { size: number; sha256: string; mtimeMs: number }>> {
  try {
    const j = JSON.parse(await fs.promises.readFile(path.join(home, VERIFIED), 'utf8')) as { files?: { name: string; size: number; sha256: string; mtimeMs: number }[] };
    return new Map((j.files ?? []).map((f) => [f.name, f]));
  } catch {
    return new Map();
  }
}

/** Bytes past a file's expected size that are still hashed (to name what was served) before giving up on it. */
const OVERRUN_BYTES = 64 * 1024 * 1024;

export class ModelCache {
  private readonly pending = new Map<string, Promise<string>>();
  private readonly announced = new Set<string>();

  /** `sha256`: a file's hash (a worker's, which hashes a file again only when it changed). */
  constructor(readonly dir: string, private readonly o: { log: (s: string) => void; sha256: (p: string) => Promise<string> }) {}

  /**
   * The path of the model's file in the cache, fetched from its URL first when the cache does not hold every file
   * of its manifest with those bytes. Throws a UserError for a malformed manifest (the same on every worker), an
   * Error for a fetch that failed or served other bytes (the chunk is tried again, maybe elsewhere).
   */
  modelPath(m: ModelRef): Promise<string> {
    const { url, files } = checkManifest(m);
    if (files.some((f) => f.name === VERIFIED)) throw new UserError(`the job names a model file ${VERIFIED}, a name the worker's cache keeps for itself`);
    const key = `${m.sha256}\0${JSON.stringify(files)}`;
    let p = this.pending.get(key);
    if (!p) {
      p = this.resolve(m.sha256, url, files).finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return p;
  }

  private async resolve(sha256: string, url: string, files: ModelFile[]): Promise<string> {
    const home = path.join(this.dir, sha256);
    const onnx = path.join(home, files[0]!.name);
    const found = () => {
      if (!this.announced.has(onnx)) this.o.log(`model ${sha256.slice(0, 12)}… found in the cache, not fetched again: ${onnx}`);
      this.announced.add(onnx);
      return onnx;
    };
    if ((await this.differs(home, files)) === undefined) return found();
    try {
      await fs.promises.mkdir(this.dir, { recursive: true });
    } catch (e) {
      throw new Error(`cannot make the model cache ${this.dir}: ${(e as Error).message} (--cache DIR or CIRCUITLENS_CACHE names another)`);
    }
    // One fetch of a model at a time in this cache: a worker fetching it already is waited for, and its copy used.
    const lock = await takeFetchLock(this.dir, sha256, (owner) => this.o.log(`model ${sha256.slice(0, 12)}… is being fetched into ${this.dir} by ${owner}: waiting for it`));
    try {
      const differs = await this.differs(home, files);
      if (differs === undefined) return found();
      if (differs !== 'absent') this.o.log(`the cached copy at ${home} ${differs}: fetching it again`);
      await this.removeStale();
      await this.fetchInto(home, url, files);
      this.announced.add(onnx);
      return onnx;
    } finally {
      await lock.release();
    }
  }

  /** Removes what fetches that died left in the cache (cache-owners.ts removeStaleParts), saying so. */
  async removeStale(): Promise<void> {
    const removed = await removeStaleParts(this.dir).catch(() => []);
    if (removed.length) this.o.log(`removed ${removed.length} unfinished fetch${removed.length === 1 ? '' : 'es'} left in ${this.dir} by workers that stopped: ${removed.join(', ')}`);
  }

  /**
   * Why the folder does not hold these files with these bytes ('absent': no folder), or undefined when it does. A
   * file whose size and mtime are those recorded when it was fetched and checked (VERIFIED) is not hashed again:
   * a model of many GB is hashed once, not by every worker process that starts on the cache.
   */
  private async differs(home: string, files: ModelFile[]): Promise<string | undefined> {
    if (!fs.existsSync(home)) return 'absent';
    const verified = await readVerified(home);
    for (const f of files) {
      const p = path.join(home, ...f.name.split('/'));
      const st = await fs.promises.stat(p).catch(() => undefined);
      if (!st?.isFile()) return `lacks ${f.name}`;
      if (st.size !== f.size) return `has ${f.name} of ${st.size} bytes, not ${f.size}`;
      const v = verified.get(f.name);
      if (v && v.sha256 === f.sha256 && v.size === st.size && v.mtimeMs === st.mtimeMs) continue;
      const got = await this.o.sha256(p);
      if (got !== f.sha256) return `has ${f.name} with sha256 ${got}, not ${f.sha256}`;
    }
    return undefined;
  }

  private async fetchInto(home: string, url: string, files: ModelFile[]): Promise<void> {
    const t0 = performance.now();
    const part = path.join(this.dir, partName(path.basename(home)));
    await fs.promises.mkdir(part);
    try {
      for (let i = 0; i < files.length; i++) {
        const f = files[i]!;
        const dest = path.join(part, ...f.name.split('/'));
        await fs.promises.mkdir(path.dirname(dest), { recursive: true });
        await download(fileUrl(url, files, i), dest, f);
      }
      const record = await Promise.all(files.map(async (f) => ({ ...f, mtimeMs: (await fs.promises.stat(path.join(part, ...f.name.split('/')))).mtimeMs })));
      await fs.promises.writeFile(path.join(part, VERIFIED), JSON.stringify({ files: record }, null, 1) + '\n');
      await placeWhole(part, home, () => this.differs(home, files));
      const bytes = files.reduce((s, f) => s + f.size, 0);
      this.o.log(`fetched model ${path.basename(home).slice(0, 12)}… from ${url}: ${files.length} file${files.length === 1 ? '' : 's'}, ${(bytes / 1e6).toFixed(1)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s, each checked by sha256, into ${home}`);
    } finally {
      await fs.promises.rm(part, { recursive: true, force: true });
    }
  }
}

/**
 * Renames the checked folder `part` to `home`. When `home` is there already (another worker's rename came first),
 * its copy is kept if it holds the files (`differs` says), else it is moved aside and replaced.
 */
async function placeWhole(part: string, home: string, differs: () => Promise<string | undefined>): Promise<void> {
  for (let tries = 0; ; tries++) {
    try {
      await fs.promises.rename(part, home);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EPERM') || tries >= 3) throw new Error(`cannot place the fetched model at ${home}: ${(e as Error).message}`);
    }
    if ((await differs()) === undefined) return;
    const aside = `${home}.old-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    try {
      await fs.promises.rename(home, aside);
    } catch { /* moved or replaced by another worker meanwhile: look again */ }
    await fs.promises.rm(aside, { recursive: true, force: true });
  }
}

/** The bytes at a URL: a file (file://) or an HTTP GET (http://, https://; redirects followed). */
async function open(url: string): Promise<AsyncIterable<Uint8Array>> {
  const u = new URL(url);
  if (u.protocol === 'file:') {
    const p = fileURLToPath(u);
    try {
      await fs.promises.access(p, fs.constants.R_OK);
    } catch (e) {
      throw new Error(`cannot fetch ${url}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? `no file at ${p}` : (e as Error).message}`);
    }
    return fs.createReadStream(p);
  }
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'follow' });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`cannot fetch ${url}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => undefined);
    throw new Error(`cannot fetch ${url}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
  }
  return Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
}

/**
 * Fetches `url` to `dest` (a new file), hashing it on the way; the bytes must be the manifest's (size and sha256),
 * else the message names the URL, the sha256 expected and the one served.
 */
async function download(url: string, dest: string, want: ModelFile): Promise<void> {
  const h = crypto.createHash('sha256');
  let size = 0;
  let overrun = false;
  const source = await open(url);
  try {
    await pipeline(source, async function* (chunks: AsyncIterable<Uint8Array>) {
      for await (const chunk of chunks) {
        const before = size;
        size += chunk.length;
        if (size > want.size + OVERRUN_BYTES) { overrun = true; return; }
        h.update(chunk);
        // Nothing past the expected size is written: a server sending more fills no disk.
        if (before < want.size) yield size <= want.size ? chunk : chunk.subarray(0, want.size - before);
      }
    }, fs.createWriteStream(dest, { flags: 'wx' }));
  } catch (e) {
    throw new Error(`cannot fetch ${url}: ${(e as Error).message}`);
  }
  if (overrun) throw new Error(`refused the model: ${url} serves more than ${want.size + OVERRUN_BYTES} bytes, the coordinator's ${want.name} has ${want.size} (sha256 ${want.sha256})`);
  const got = h.digest('hex');
  if (got !== want.sha256 || size !== want.size) {
    throw new Error(`refused the model: ${url} served sha256 ${got} (${size} bytes), the coordinator's ${want.name} has sha256 ${want.sha256} (${want.size} bytes)`);
  }
}
