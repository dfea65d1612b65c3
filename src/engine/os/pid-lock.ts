// The pid-file lock primitive: a lock file created with O_EXCL that holds a record of who took it.
import { open } from 'node:fs/promises';
import { unlinkIfExists } from './files';

/**
 * Creates `file` exclusively with `record` in it: true when this process now holds it, false when it exists
 * already (the caller reads the holder and judges whether it is stale). Other failures are thrown as they are.
 */
export async function createLockFile(file: string, record: string): Promise<boolean> {
  let fh;
  try {
    fh = await open(file, 'wx', 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  let written = false;
  try {
    await fh.writeFile(record);
    written = true;
  } finally {
    await fh.close();
    // A lock file without its record (the disk is full) would hold the lock for nobody: leave none.
    if (!written) await unlinkIfExists(file).catch(() => {});
  }
  return true;
}
