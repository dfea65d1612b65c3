// The image cache's index (`index.json`): which source (URL or local path) gave which image, with what the
// source looked like then (size, mtime, ETag), so a second fetch needs no network or no re-hash. Written
// atomically under a small lock file, re-read inside the lock, so two processes fetching at once both land.
import { open, readFile, stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { atomicWriteJson, isProcessAlive, processStart } from '../os';
import { ImageFetchError } from './errors';
import type { ImageFormat } from './detect';

export const INDEX_FILE = 'index.json';
const LOCK_FILE = 'index.lock';
/** The lock is held for a rename and a small write; a holder this old is stuck, whatever its pid says. */
const LOCK_STALE_MS = 60_000;
/** A lock file without its record: its writer died between creating and writing it (a write of a few bytes). */
const TORN_LOCK_MS = 5_000;
const LOCK_WAIT_MS = 15_000;
const LOCK_POLL_MS = 15;

export interface IndexEntry {
  sha256: string;
  format: ImageFormat;
  /** Bytes of the image file. */
  size: number;
  virtualSize: number;
  /** When it was fetched (ISO 8601). */
  fetchedAt: string;
  /** A local source's modification time when it was hashed: unchanged size and mtime mean unchanged content. */
  mtimeMs?: number;
  /** A URL's validators as the server sent them (kept for a future revalidation; the cache trusts its hash). */
  etag?: string;
  lastModified?: string;
}

export interface CacheIndex {
  version: 1;
  sources: Record<string, IndexEntry>;
}

const SHA256 = /^[0-9a-f]{64}$/;

/** The index as stored; a missing or unreadable one is empty (it is a cache: the images are the truth). */
export async function readIndex(cacheDir: string): Promise<CacheIndex> {
  let text: string;
  try {
    text = await readFile(join(cacheDir, INDEX_FILE), 'utf8');
  } catch {
    return { version: 1, sources: {} };
  }
  const sources: Record<string, IndexEntry> = {};
  try {
    const parsed = JSON.parse(text) as { sources?: Record<string, Partial<IndexEntry>> };
    for (const [source, e] of Object.entries(parsed.sources ?? {})) {
      if (typeof e?.sha256 !== 'string' || !SHA256.test(e.sha256) || (e.format !== 'qcow2' && e.format !== 'raw')) continue;
      if (typeof e.size !== 'number' || typeof e.virtualSize !== 'number') continue;
      sources[source] = {
        sha256: e.sha256,
        format: e.format,
        size: e.size,
        virtualSize: e.virtualSize,
        fetchedAt: typeof e.fetchedAt === 'string' ? e.fetchedAt : '',
        ...(typeof e.mtimeMs === 'number' ? { mtimeMs: e.mtimeMs } : {}),
        ...(typeof e.etag === 'string' ? { etag: e.etag } : {}),
        ...(typeof e.lastModified === 'string' ? { lastModified: e.lastModified } : {}),
      };
    }
  } catch {
    // A torn or hand-edited index: start over, the image files stay.
  }
  return { version: 1, sources };
}

/**
 * Runs `change` on the freshly read index while holding the cache's lock, then writes the result atomically
 * (temporary file, fsync, rename). `change` may also place or remove image files: it runs inside the lock.
 */
export async function updateIndex<T>(
  cacheDir: string,
  change: (index: CacheIndex) => Promise<T> | T,
  /** Undoes what `change` did to files when the index cannot be written (still inside the lock). */
  rollback?: () => Promise<void>,
): Promise<T> {
  const release = await lockCache(cacheDir);
  try {
    const index = await readIndex(cacheDir);
    const result = await change(index);
    try {
      await atomicWriteJson(join(cacheDir, INDEX_FILE), index);
    } catch (e) {
      await rollback?.().catch(() => {});
      throw e;
    }
    return result;
  } finally {
    await release();
  }
}

interface LockRecord {
  pid: number;
  started?: string;
  host: string;
  since: number;
}

async function lockCache(cacheDir: string): Promise<() => Promise<void>> {
  const file = join(cacheDir, LOCK_FILE);
  const started = processStart(process.pid);
  const record: LockRecord = { pid: process.pid, ...(started !== null ? { started } : {}), host: hostname(), since: Date.now() };
  const giveUp = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const fh = await open(file, 'wx', 0o644);
      try {
        await fh.writeFile(JSON.stringify(record));
      } catch (e) {
        await fh.close();
        await unlink(file).catch(() => {});
        throw e;
      }
      await fh.close();
      return async () => {
        await unlink(file).catch(() => {});
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (await isStale(file)) {
      await unlink(file).catch(() => {});
      continue;
    }
    if (Date.now() > giveUp) {
      throw new ImageFetchError('IO_ERROR', `The image cache (${cacheDir}) stays locked by another process (${file}): wait for its download to finish, or remove that file if no vmsnap runs.`);
    }
    await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
  }
}

async function isStale(file: string): Promise<boolean> {
  let holder: Partial<LockRecord>;
  try {
    holder = JSON.parse(await readFile(file, 'utf8')) as Partial<LockRecord>;
  } catch {
    // Being written this instant, or torn by a crash: judge by its age.
    try {
      return Date.now() - (await stat(file)).mtimeMs > TORN_LOCK_MS;
    } catch {
      return false;
    }
  }
  if (typeof holder.since === 'number' && Date.now() - holder.since > LOCK_STALE_MS) return true;
  return holder.host === hostname() && typeof holder.pid === 'number' && !isProcessAlive(holder.pid, holder.started ?? undefined);
}
