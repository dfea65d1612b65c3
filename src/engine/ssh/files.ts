// File helpers of the SSH modules: a new file written with its mode from the start, atomic replacement with a
// mode (over the engine's one atomic writer), and fs errors as SshErrors.
import { open, writeFile } from 'node:fs/promises';
import { writeAtomically } from '../os';
import { SshError, isSshError } from './errors';

export function toSshIoError(e: unknown, what: string): SshError {
  if (isSshError(e)) return e;
  const err = e as NodeJS.ErrnoException;
  return new SshError('IO_ERROR', `${what}: ${err?.message ?? String(e)}`, null, { cause: e });
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

/** Replaces `path` wholly or not at all, even across a crash, with `mode` from the start. */
export async function atomicReplace(path: string, data: string, mode: number): Promise<void> {
  await writeAtomically(path, (temporary) => writeFile(temporary, data, { encoding: 'utf8', flag: 'wx', mode }));
}
