// Who owns what in a worker's model cache (model-cache.ts), for workers that share the folder: a fetch's temporary
// folder (`.part-<sha>-<pid>-<random>@<host>`) and a model's fetch lock (`.<sha256>.lock`, made with O_EXCL, holding
// its owner's pid and host, its mtime touched while the fetch runs). Whether an owner is gone is known for a process
// on this host (its pid is not running); for another host's (a cache on a shared mount) only by age. Same-host
// assumption: two containers with the same hostname but their own pid namespaces sharing a cache look dead to each
// other; a live fetch then keeps writing (its folder's mtime, its lock's heartbeat), which the age rules below wait
// for, and two fetches of one model stay correct either way (each checks and renames its folder whole).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** This host's name as it goes into file names. */
const HOST = os.hostname().replace(/[^\w.-]/g, '_') || 'localhost';

/** A fetch folder untouched this long whose owner on this host is gone is removed. */
const PART_GONE_MS = 10 * 60 * 1000;
/** A fetch folder untouched this long is removed whoever owned it (another host's, a reused pid, an old name). */
const PART_ABANDONED_MS = 24 * 3600 * 1000;
/** A fetch lock's owner touches it this often; one untouched for LOCK_STALE_MS is taken as abandoned. */
const HEARTBEAT_MS = 10_000;
const LOCK_STALE_MS = 60_000;
/** How often a worker waiting for another's fetch looks again. */
const WAIT_POLL_MS = 250;

/** Whether a process with this pid runs on this host (EPERM: it does, as another user). */
function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether an owner (pid, host) is known to be gone: a process of this host that no longer runs. */
function ownerGone(pid: number, host: string): boolean {
  return host === HOST && !pidAlive(pid);
}

/** The name of a new fetch folder for the model `sha256`, owned by this process. */
export function partName(sha256: string): string {
  return `.part-${sha256.slice(0, 12)}-${process.pid}-${crypto.randomBytes(4).toString('hex')}@${HOST}`;
}

const PART = /^\.part-[0-9a-f]{1,12}-(\d+)-[0-9a-f]{8}@(.+)$/;

/** The newest mtime of a folder and everything in it (a fetch in progress keeps writing). */
async function newestMtime(p: string): Promise<number> {
  const st = await fs.promises.stat(p);
  let newest = st.mtimeMs;
  if (st.isDirectory()) {
    for (const e of await fs.promises.readdir(p)) newest = Math.max(newest, await newestMtime(path.join(p, e)).catch(() => 0));
  }
  return newest;
}

/**
 * Removes the fetch folders (`.part-…`) in `dir` left by fetches that died (a worker killed mid-fetch): untouched
 * for PART_GONE_MS with their owner on this host gone, or untouched for PART_ABANDONED_MS whoever owned them.
 * Returns the names removed; a missing `dir` has none.
 */
export async function removeStaleParts(dir: string, now = Date.now()): Promise<string[]> {
  const names = await fs.promises.readdir(dir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names.filter((n) => n.startsWith('.part-'))) {
    const p = path.join(dir, name);
    const age = now - (await newestMtime(p).catch(() => now));
    const m = PART.exec(name);
    const gone = m ? ownerGone(Number(m[1]), m[2]!) : true;
    if ((gone && age > PART_GONE_MS) || age > PART_ABANDONED_MS) {
      await fs.promises.rm(p, { recursive: true, force: true });
      removed.push(name);
    }
  }
  return removed;
}

interface LockOwner { pid: number; host: string; token: string }

async function readOwner(file: string): Promise<{ owner?: LockOwner; text: string; mtimeMs: number } | undefined> {
  try {
    const [text, st] = await Promise.all([fs.promises.readFile(file, 'utf8'), fs.promises.stat(file)]);
    let owner: LockOwner | undefined;
    try { owner = JSON.parse(text) as LockOwner; } catch { /* half-written: judged by its age */ }
    return { owner, text, mtimeMs: st.mtimeMs };
  } catch {
    return undefined;
  }
}

/**
 * Takes the fetch lock of the model `sha256` in `dir`, waiting while another live owner holds it (`waiting` is told
 * once, with the owner). A lock whose owner on this host is gone, or untouched for LOCK_STALE_MS, is removed and
 * taken. Release it when the fetch is done (or failed); the caller looks at the cache again after taking it, since
 * the owner waited for may have fetched the model meanwhile.
 */
export async function takeFetchLock(dir: string, sha256: string, waiting: (owner: string) => void): Promise<{ release(): Promise<void> }> {
  const file = path.join(dir, `.${sha256}.lock`);
  const me: LockOwner = { pid: process.pid, host: HOST, token: crypto.randomBytes(8).toString('hex') };
  const text = JSON.stringify(me) + '\n';
  let told = false;
  for (;;) {
    try {
      await fs.promises.writeFile(file, text, { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const held = await readOwner(file);
    if (!held) continue; // released meanwhile
    const stale = (held.owner && ownerGone(held.owner.pid, held.owner.host)) || Date.now() - held.mtimeMs > LOCK_STALE_MS;
    if (stale) {
      // Removed only if it is still the lock judged stale (not one taken meanwhile by another waiter).
      if ((await readOwner(file))?.text === held.text) await fs.promises.rm(file, { force: true });
      continue;
    }
    if (!told) waiting(held.owner ? `process ${held.owner.pid} on ${held.owner.host}` : 'another worker');
    told = true;
    await new Promise((r) => setTimeout(r, WAIT_POLL_MS));
  }
  const beat = setInterval(() => { const t = new Date(); fs.promises.utimes(file, t, t).catch(() => undefined); }, HEARTBEAT_MS);
  beat.unref();
  return {
    async release() {
      clearInterval(beat);
      if ((await readOwner(file))?.text === text) await fs.promises.rm(file, { force: true });
    },
  };
}
