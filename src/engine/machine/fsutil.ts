import { randomBytes } from 'node:crypto';
import { constants, readFileSync } from 'node:fs';
import { chmod, open, rename, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
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

export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, constants.O_RDONLY);
  try {
    await fh.sync();
  } catch (e) {
    // Some file systems refuse fsync on directories; the rename is still atomic there.
    if ((e as NodeJS.ErrnoException).code !== 'EINVAL' && (e as NodeJS.ErrnoException).code !== 'EISDIR') throw e;
  } finally {
    await fh.close();
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  await fsyncPath(dir);
}

/**
 * Writes a file so that it is either wholly the old or wholly the new content, even across a crash. With
 * `durable` false the file and folder are not flushed: still never torn when the process is killed, but a
 * power loss may bring the old content back (for records that recovery can do without).
 */
export async function atomicWrite(path: string, data: string, durable = true): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', 0o644);
    try {
      await fh.writeFile(data, 'utf8');
      if (durable) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => {});
    throw e;
  }
  if (durable) await fsyncDir(dirname(path));
}

export async function atomicWriteJson(path: string, value: unknown, durable = true): Promise<void> {
  await atomicWrite(path, JSON.stringify(value, null, 2) + '\n', durable);
}

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

/** Frozen layers are read-only on disk so no tool writes into a snapshot by mistake. */
export async function setReadOnly(path: string, readOnly: boolean): Promise<void> {
  try {
    await chmod(path, readOnly ? 0o444 : 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/**
 * When process `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat), or null where that cannot
 * be read: with the pid it names one process, not whichever later one got the same pid.
 */
export function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2, the command name, is in parentheses and may hold spaces: count from after it (field 3).
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** Whether the process that recorded `pid` (and, when it did, its start) still runs: a reused pid is not it. */
export function isSameProcessAlive(pid: number, started: string | undefined): boolean {
  if (!isAlive(pid)) return false;
  if (started === undefined) return true;
  const now = processStart(pid);
  return now === null || now === started;
}

export function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
