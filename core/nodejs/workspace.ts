import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Engine } from '../engine/engine';
import type { Runtime } from '../engine/runtime';
import type { WeightVariants } from '../engine/variants';
import { UserError } from '../errors';
import type { Workspace } from '../workspace';
import { createRuntime, loadEngine } from './load';
import { openModelVariants } from './model-variants';

/** How long modelVariants keeps a model's weights without a call (checks of one canary run come sooner). */
const VARIANTS_IDLE_MS = 5 * 60_000;

/**
 * The Node file system as a Workspace. Engines are cached per model file and reloaded when the file
 * changes on disk (size or mtime), so canaries re-run against the model as it is now.
 */
export class NodeWorkspace implements Workspace {
  private readonly engines = new Map<string, { stamp: string; engine: Promise<Engine>; sha256?: Promise<string> }>();
  /** The weights modelVariants last read, while its file is unchanged. */
  private variants?: { path: string; stamp: string; variants: WeightVariants; idle?: ReturnType<typeof setTimeout> };

  constructor(readonly root: string = process.cwd(), private readonly runtime: Runtime = createRuntime()) {}

  async readText(p: string): Promise<string> {
    try {
      return await fs.promises.readFile(p, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`file not found: ${this.display(p)}`);
      throw new UserError(`cannot read ${this.display(p)}: ${(e as Error).message}`);
    }
  }

  async exists(p: string): Promise<boolean> {
    return fs.promises.access(p).then(() => true, () => false);
  }

  resolve(from: string, rel: string): string {
    return path.resolve(path.dirname(from), rel);
  }

  display(p: string): string {
    const rel = path.relative(this.root, p);
    return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
  }

  /** Size and mtime, what tells that a file changed; undefined when it is gone. */
  private async stamp(p: string): Promise<string | undefined> {
    try {
      const st = await fs.promises.stat(p);
      return `${st.size}:${st.mtimeMs}`;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new UserError(`cannot read ${this.display(p)}: ${(e as Error).message}`);
    }
  }

  async loadEngine(modelPath: string): Promise<Engine> {
    const stamp = await this.stamp(modelPath);
    if (stamp === undefined) throw new UserError(`model file not found: ${this.display(modelPath)}`);
    const cached = this.engines.get(modelPath);
    if (cached && cached.stamp === stamp) return cached.engine;
    if (cached) void cached.engine.then((e) => e.release(), () => undefined);
    const engine = loadEngine(modelPath, this.runtime);
    const entry = { stamp, engine };
    this.engines.set(modelPath, entry);
    engine.catch(() => { if (this.engines.get(modelPath) === entry) this.engines.delete(modelPath); });
    return engine;
  }

  /**
   * For a model with a loaded engine, the hash of the file that engine was loaded from, so a circuit's recorded
   * hash is compared with the model that ran: when the file changed on disk since (mid-run), that hash is
   * gone and the caller is told so instead of being handed the new file's.
   */
  async sha256(p: string): Promise<string> {
    const entry = this.engines.get(p);
    if (!entry) {
      if ((await this.stamp(p)) === undefined) throw new UserError(`file not found: ${this.display(p)}`);
      return sha256File(p);
    }
    entry.sha256 ??= (async () => {
      const changed = () => new UserError(`${this.display(p)} changed on disk after it was loaded; run again to use the file as it is now`);
      if ((await this.stamp(p)) !== entry.stamp) throw changed();
      let hash: string;
      try {
        hash = await sha256File(p);
      } catch (e) {
        if ((await this.stamp(p)) !== entry.stamp) throw changed();
        throw new UserError(`cannot read ${this.display(p)}: ${(e as Error).message}`);
      }
      if ((await this.stamp(p)) !== entry.stamp) throw changed();
      return hash;
    })();
    return entry.sha256;
  }

  /**
   * The model file's weights in memory, kept while the file is unchanged (size, mtime) so the prune and quantize
   * checks of one canary file read it once. One model is held: it is dropped when another is asked for, after
   * VARIANTS_IDLE_MS without a call (a model's weights are too large to keep for nothing) and on dispose.
   */
  async modelVariants(modelPath: string): Promise<WeightVariants> {
    const stamp = await this.stamp(modelPath);
    if (stamp === undefined) throw new UserError(`model file not found: ${this.display(modelPath)}`);
    let held = this.variants;
    if (held?.path !== modelPath || held.stamp !== stamp) {
      this.dropVariants();
      held = this.variants = { path: modelPath, stamp, variants: openModelVariants(modelPath, this.runtime) };
    }
    clearTimeout(held.idle);
    const mine = held;
    held.idle = setTimeout(() => { if (this.variants === mine) this.dropVariants(); }, VARIANTS_IDLE_MS).unref();
    return held.variants;
  }

  private dropVariants(): void {
    clearTimeout(this.variants?.idle);
    this.variants = undefined;
  }

  async dispose(): Promise<void> {
    this.dropVariants();
    for (const { engine } of this.engines.values()) await engine.then((e) => e.release(), () => undefined);
    this.engines.clear();
  }
}

export async function sha256File(p: string): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(p)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Replaces a file atomically: write a temporary file beside it, flush, rename over the target. */
export async function writeFileAtomic(target: string, content: string | Uint8Array): Promise<void> {
  const dir = path.dirname(target);
  await fs.promises.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  const fh = await fs.promises.open(tmp, 'w');
  try {
    await fh.writeFile(content);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await fs.promises.rename(tmp, target);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
}
