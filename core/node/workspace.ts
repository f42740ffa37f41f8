import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Engine } from '../engine/engine';
import type { Runtime } from '../engine/runtime';
import { UserError } from '../errors';
import type { Workspace } from '../workspace';
import { createRuntime, loadEngine } from './load';

/**
 * The Node file system as a Workspace. Engines are cached per model file and reloaded when the file
 * changes on disk (size or mtime), so canaries re-run against the model as it is now.
 */
export class NodeWorkspace implements Workspace {
  private readonly engines = new Map<string, { stamp: string; engine: Promise<Engine> }>();

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

  async loadEngine(modelPath: string): Promise<Engine> {
    const st = await fs.promises.stat(modelPath);
    const stamp = `${st.size}:${st.mtimeMs}`;
    const cached = this.engines.get(modelPath);
    if (cached && cached.stamp === stamp) return cached.engine;
    if (cached) void cached.engine.then((e) => e.release(), () => undefined);
    const engine = loadEngine(modelPath, this.runtime);
    this.engines.set(modelPath, { stamp, engine });
    engine.catch(() => this.engines.delete(modelPath));
    return engine;
  }

  async sha256(p: string): Promise<string> {
    return sha256File(p);
  }

  async dispose(): Promise<void> {
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
