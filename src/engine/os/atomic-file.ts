// Files replaced all at once: readers (and a crash) see the whole old content or the whole new one, never a mix.
import { randomBytes } from 'node:crypto';
import { open, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fsyncDir } from './files';

/** The temporary name a new file is written under, in the target's folder so the final rename is atomic. */
export function temporaryNameFor(target: string): string {
  return join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.partial`);
}

export interface AtomicWriteOptions {
  /**
   * Flush the file and its folder (default true). Without it the file is still never torn when the process is
   * killed, but a power loss may bring the old content back (for records recovery can do without).
   */
  durable?: boolean;
  /** Whether a failed flush of the folder after the rename fails the write (default) or is let go. */
  folderSync?: 'required' | 'best-effort';
}

/**
 * Creates or replaces `target` all at once: `write` fills a temporary file next to it, which is flushed and
 * renamed over `target`. On any failure (abort included) the temporary file is removed and `target` is untouched.
 */
export async function writeAtomically<T>(target: string, write: (temporary: string) => Promise<T>, options: AtomicWriteOptions = {}): Promise<T> {
  const durable = options.durable ?? true;
  const temporary = temporaryNameFor(target);
  let result: T;
  try {
    result = await write(temporary);
    if (durable) {
      // Opened for writing: Windows flushes only through a writable handle.
      const fh = await open(temporary, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
    await rename(temporary, target);
  } catch (e) {
    await rm(temporary, { force: true }).catch(() => {});
    throw e;
  }
  if (durable) {
    // The rename is durable only once the folder is flushed.
    if (options.folderSync === 'best-effort') await fsyncDir(dirname(target)).catch(() => {});
    else await fsyncDir(dirname(target));
  }
  return result;
}

/** A text file replaced atomically (see writeAtomically). */
export async function atomicWrite(path: string, data: string, durable = true): Promise<void> {
  await writeAtomically(path, (temporary) => writeFile(temporary, data, { encoding: 'utf8', flag: 'wx', mode: 0o644 }), { durable });
}

export async function atomicWriteJson(path: string, value: unknown, durable = true): Promise<void> {
  await atomicWrite(path, JSON.stringify(value, null, 2) + '\n', durable);
}
