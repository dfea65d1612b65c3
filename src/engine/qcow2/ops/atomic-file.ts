import { open, type FileHandle } from 'node:fs/promises';
import { writeAtomically as replaceAtomically } from '../../os';
import { toImageError } from '../errors';

export { fsyncPath, temporaryNameFor } from '../../os';

/**
 * Creates `target` all at once: `write` fills a temporary file next to it, which is fsynced and renamed over
 * `target`. On any failure (abort included) the temporary file is removed and `target` is untouched.
 */
export async function writeAtomically<T>(target: string, write: (temporary: string) => Promise<T>): Promise<T> {
  try {
    // A failed flush of the folder is not worth undoing a finished file.
    return await replaceAtomically(target, write, { folderSync: 'best-effort' });
  } catch (e) {
    throw toImageError(e, target);
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
