// File-system helpers with the machine layer's meaning: errors as MachineErrors, sizes on disk, frozen layers.
import { chmod, lstat, stat, statfs } from 'node:fs/promises';
import { MachineError } from './errors';

/** Turns a Node file-system error into a MachineError naming the file (ENOSPC becomes NO_SPACE). */
export function toMachineIoError(e: unknown, what: string): MachineError {
  const err = e as NodeJS.ErrnoException;
  if (e instanceof Error && e.name === 'MachineError') return e as MachineError;
  switch (err?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new MachineError('NO_SPACE', `The disk is full while ${what}: free some space and try again.`, [], { cause: e });
    case 'ENOENT':
      return new MachineError('NOT_FOUND', `${what}: a file is missing (${err.message}).`, [], { cause: e });
    default:
      return new MachineError('IO_ERROR', `${what}: ${err?.message ?? String(e)}`, [], { cause: e });
  }
}

/** Bytes a file occupies on the host disk (allocated blocks, so sparse files count what they use). */
export async function bytesOnDisk(path: string): Promise<number> {
  try {
    const s = await stat(path);
    return s.blocks !== undefined && process.platform !== 'win32' ? s.blocks * 512 : s.size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
}

/**
 * Refuses a file of a machine folder that is a symbolic link: changing it (chmod, a merge, a rename) would change
 * its target, which may be anywhere outside the library.
 */
export async function refuseSymlink(path: string): Promise<void> {
  let linked = false;
  try {
    linked = (await lstat(path)).isSymbolicLink();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw toMachineIoError(e, `reading ${path}`);
  }
  if (linked) {
    throw new MachineError(
      'INVALID_MANIFEST',
      `${path} is a symbolic link: vmsnap never changes a file through a link (its target may be outside the library); replace the link with the file itself.`,
    );
  }
}

/** Frozen layers are read-only on disk so no tool writes into a snapshot by mistake. */
export async function setReadOnly(path: string, readOnly: boolean): Promise<void> {
  await refuseSymlink(path);
  try {
    await chmod(path, readOnly ? 0o444 : 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Room kept free beyond what an operation is expected to write. */
export const SPACE_SLACK = 64 * 1024 * 1024;

/** Free bytes where `folder` is, or null when the file system does not say. */
export async function freeBytes(folder: string): Promise<number | null> {
  try {
    const s = await statfs(folder);
    return s.bavail * s.bsize;
  } catch {
    return null;
  }
}

/** Refuses up front when the free space cannot hold what a merge or copy may write (plus SPACE_SLACK). */
export async function requireSpace(folder: string, bytes: number, what: string): Promise<void> {
  if (bytes <= 0) return;
  const free = await freeBytes(folder);
  // Unknown: the operation itself will report a full disk.
  if (free !== null && free < bytes + SPACE_SLACK) {
    throw new MachineError('NO_SPACE', `Not enough free disk space for ${what} (needs about ${Math.ceil(bytes / 1048576)} MiB, ${Math.floor(free / 1048576)} MiB free); nothing was changed: free some space and try again.`);
  }
}
