import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { link, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { createLockFile, isProcessAlive, processStart, unlinkIfExists } from '../os';
import { MachineError } from './errors';
import { toMachineIoError } from './fsutil';

export const LOCK_FILE = 'machine.lock';
/**
 * How long a lock held by a live process is waited for before the machine is reported busy. Most operations take
 * milliseconds (a snapshot, a status read, the recovery check another window makes when it opens the library):
 * two of them meeting should both succeed, one after the other, and only a long one (a full clone) be refused.
 */
const BUSY_WAIT_MS = 2000;
const BUSY_POLL_MS = 20;
/** This process's start, recorded in its locks (null where /proc is not there). */
const OWN_START = processStart(process.pid);

interface LockRecord {
  pid: number;
  /** The holder's start (processStart), so that a crashed holder's pid, reused by another process, is not it. */
  started?: string;
  host: string;
  operation: string;
  since: string;
  token: string;
}

/**
 * A machine's write lock, shared by every process on this host (the extension in two windows, the CLI): a lock
 * file made with O_EXCL holding pid, operation and time. A lock whose process is gone is stale and taken over.
 */
export class MachineLock {
  private constructor(
    readonly file: string,
    private readonly token: string,
  ) {}

  /** `waitMs`: how long a live holder is waited for (0: report busy at once, for checks that can be skipped). */
  static async acquire(folder: string, machineName: string, operation: string, { file: fileName = LOCK_FILE, waitMs = BUSY_WAIT_MS } = {}): Promise<MachineLock> {
    const file = join(folder, fileName);
    const token = randomBytes(8).toString('hex');
    const waitUntil = Date.now() + waitMs;
    for (let changes = 0; ; ) {
      const record: LockRecord = {
        pid: process.pid,
        ...(OWN_START !== null ? { started: OWN_START } : {}),
        host: hostname(),
        operation,
        since: new Date().toISOString(),
        token,
      };
      try {
        if (await createLockFile(file, JSON.stringify(record))) return new MachineLock(file, token);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOSPC' || code === 'EDQUOT') throw toMachineIoError(e, `locking machine "${machineName}"`);
        // The folder went away: the machine was deleted (or moved) while we waited for it.
        if (code === 'ENOENT') throw new MachineError('NOT_FOUND', `Machine "${machineName}" no longer exists: it was deleted or moved meanwhile.`, [], { cause: e });
        throw new MachineError('IO_ERROR', `Cannot lock machine "${machineName}": ${(e as Error).message}`, [], { cause: e });
      }
      const holder = await readLock(file);
      if (holder !== 'gone' && holder !== 'unreadable' && (holder.host !== hostname() || isProcessAlive(holder.pid, holder.started))) {
        if (Date.now() < waitUntil) {
          await new Promise((r) => setTimeout(r, BUSY_POLL_MS));
          continue;
        }
        throw new MachineError(
          'BUSY',
          `Machine "${machineName}" is busy: ${holder.operation} since ${holder.since} (pid ${holder.pid}); wait for it to finish and try again.`,
        );
      }
      if (++changes > 5) throw new MachineError('BUSY', `Machine "${machineName}" is busy: its lock keeps changing hands; try again.`);
      if (holder === 'gone') continue;
      if (holder === 'unreadable') {
        // A holder between O_EXCL create and its write: give it a moment before judging the file stale.
        await new Promise((r) => setTimeout(r, 50));
        const again = await readLock(file);
        if (again !== 'unreadable') continue;
      }
      await takeOverStale(file, holder);
    }
  }

  async release(): Promise<void> {
    const holder = await readLock(this.file);
    // Only remove our own lock: never one a stale-lock takeover handed to someone else.
    if (holder !== 'gone' && holder !== 'unreadable' && holder.token !== this.token) return;
    await unlinkIfExists(this.file);
  }
}

async function readLock(file: string): Promise<LockRecord | 'gone' | 'unreadable'> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    return 'unreadable';
  }
  try {
    const r = JSON.parse(text) as Partial<LockRecord>;
    if (typeof r.pid !== 'number' || typeof r.operation !== 'string' || typeof r.since !== 'string') return 'unreadable';
    return {
      pid: r.pid,
      ...(typeof r.started === 'string' ? { started: r.started } : {}),
      host: String(r.host ?? ''),
      operation: r.operation,
      since: r.since,
      token: String(r.token ?? ''),
    };
  } catch {
    return 'unreadable';
  }
}

/**
 * Moves the stale lock aside atomically (only one taker wins the rename), then checks that what it moved is the
 * stale lock it judged; if a fresh lock slipped in meanwhile, puts it back.
 */
async function takeOverStale(file: string, judged: LockRecord | 'unreadable'): Promise<void> {
  const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await rename(file, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  const moved = await readLock(aside);
  const same = judged === 'unreadable' ? moved === 'unreadable' : moved !== 'gone' && moved !== 'unreadable' && moved.token === judged.token && moved.pid === judged.pid;
  if (!same) {
    try {
      await link(aside, file);
    } catch {
      // someone else holds the lock now; theirs stays, the moved one was not stale anyway
    }
  }
  await unlink(aside).catch(() => {});
}
