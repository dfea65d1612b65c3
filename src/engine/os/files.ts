// Small file-system primitives the whole engine shares: existence, flushing, removal that tolerates absence.
import { constants } from 'node:fs';
import { open, stat, unlink } from 'node:fs/promises';

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

export async function unlinkIfExists(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Flushes a file's (or a folder's) data and metadata to the disk; 'r+' for files on Windows, which flushes only writable handles. */
export async function fsyncPath(path: string, flags: 'r' | 'r+' = 'r'): Promise<void> {
  const fh = await open(path, flags === 'r' ? constants.O_RDONLY : constants.O_RDWR);
  try {
    await fh.sync();
  } catch (e) {
    // Some file systems refuse fsync on directories; the rename is still atomic there.
    if ((e as NodeJS.ErrnoException).code !== 'EINVAL' && (e as NodeJS.ErrnoException).code !== 'EISDIR') throw e;
  } finally {
    await fh.close();
  }
}

/** Makes a folder's entries (a rename, a new file) durable; Windows cannot open folders for that. */
export async function fsyncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  await fsyncPath(dir);
}
