// Small file helpers shared by the SSH modules: atomic writes with a chosen mode, and fs errors as SshErrors.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SshError, isSshError } from './errors';

export function toSshIoError(e: unknown, what: string): SshError {
  if (isSshError(e)) return e;
  const err = e as NodeJS.ErrnoException;
  return new SshError('IO_ERROR', `${what}: ${err?.message ?? String(e)}`, null, { cause: e });
}

/** A temp name next to `path`, so a rename or link onto `path` never crosses file systems. */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/** Writes a new file (never an existing one), flushed to disk, with `mode` from the start (no window at 0644). */
export async function writeNewFile(path: string, data: string, mode: number): Promise<void> {
  const fh = await open(path, 'wx', mode);
  try {
    await fh.writeFile(data, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Replaces `path` wholly or not at all, even across a crash: temp file, flush, rename, flush the folder. */
export async function atomicReplace(path: string, data: string, mode: number): Promise<void> {
  const tmp = tempPathFor(path);
  try {
    await writeNewFile(tmp, data, mode);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => {});
    throw e;
  }
  await syncDir(dirname(path));
}

export async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return; // folders cannot be opened for fsync there; renames are still atomic
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR') throw e;
  } finally {
    await fh.close();
  }
}
