import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { toImageError } from '../errors';

/** The temporary name a new file is written under, in the target's folder so the final rename is atomic. */
export function temporaryNameFor(target: string): string {
  return join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.partial`);
}

/**
 * Creates `target` all at once: `write` fills a temporary file next to it, which is fsynced and renamed over
 * `target`. On any failure (abort included) the temporary file is removed and `target` is untouched.
 */
export async function writeAtomically<T>(target: string, write: (temporary: string) => Promise<T>): Promise<T> {
  const temporary = temporaryNameFor(target);
  let result: T;
  try {
    result = await write(temporary);
    await fsyncPath(temporary, 'r+');
    await rename(temporary, target);
  } catch (e) {
    await rm(temporary, { force: true }).catch(() => {});
    throw toImageError(e, target);
  }
  // The rename is durable only once the folder is synced; failing that is not worth undoing a finished file.
  await fsyncPath(dirname(target), 'r').catch(() => {});
  return result;
}

export async function fsyncPath(path: string, flags: 'r' | 'r+'): Promise<void> {
  const handle = await open(path, flags);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Starts writing a new file's dirty pages to disk in the background while more are being written, so the final
 * fsync waits for little more than the last few MiB instead of the whole file.
 */
export class BackgroundWriteback {
  private pending: Promise<void> | null = null;
  private sinceLast = 0;

  private constructor(private readonly handle: FileHandle) {}

  static async start(path: string): Promise<BackgroundWriteback> {
    return new BackgroundWriteback(await open(path, 'r'));
  }

  /** Counts bytes written; after every WRITEBACK_BYTES, starts a datasync unless one is still running. */
  wrote(bytes: number): void {
    this.sinceLast += bytes;
    if (this.sinceLast < WRITEBACK_BYTES || this.pending) return;
    this.sinceLast = 0;
    this.pending = this.handle
      .datasync()
      .catch(() => {}) // the final fsync reports what matters
      .finally(() => {
        this.pending = null;
      });
  }

  async close(): Promise<void> {
    await this.pending;
    await this.handle.close().catch(() => {});
  }
}

const WRITEBACK_BYTES = 32 * 1024 * 1024;
