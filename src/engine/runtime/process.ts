// Processes we did not start in this process: QEMU outlives the CLI, so we find it again by pid.
import { readFileSync } from 'node:fs';
import { readFile, unlink } from 'node:fs/promises';
import { createLockFile, isProcessAlive } from '../os';
import { QemuError } from './errors';

/** The process's argument vector where the system shows it (Linux), else null. */
export function processArgv(pid: number): string[] | null {
  if (process.platform !== 'linux') return null;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a.length > 0);
  } catch {
    return null;
  }
}

/** Polls until the process is gone; false when it still runs after the time-out. */
export async function waitForExit(pid: number, timeoutMs: number, pollMs = 20, signal?: AbortSignal): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isProcessAlive(pid)) {
    if (Date.now() >= deadline || signal?.aborted === true) return false;
    await sleep(pollMs);
  }
  return true;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A start lock across processes: an O_EXCL file holding our pid. Two `vm start` racing for one folder cannot
 * both spawn QEMU; a lock left by a dead process is taken over. (QEMU's own pidfile lock is the second guard.)
 */
export class StartLock {
  private constructor(private readonly file: string) {}

  static async acquire(file: string, what: string): Promise<StartLock> {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        if (await createLockFile(file, String(process.pid))) return new StartLock(file);
      } catch (e) {
        throw new QemuError('IO_ERROR', `Cannot create ${file}: ${(e as Error).message}`, { cause: e });
      }
      const holder = await readPid(file);
      if (holder !== null && isProcessAlive(holder)) {
        throw new QemuError('ALREADY_RUNNING', `${what} is being started or stopped by another process (pid ${holder}); wait for it and try again.`);
      }
      if (holder === null) await sleep(50); // a holder between create and write: look again before judging
      if (holder !== null || (await readPid(file)) === null) await unlink(file).catch(() => {});
    }
    throw new QemuError('ALREADY_RUNNING', `${what} is being started or stopped by another process; try again.`);
  }

  async release(): Promise<void> {
    if ((await readPid(this.file)) === process.pid) await unlink(this.file).catch(() => {});
  }
}

/** The pid a file holds, or null when it is missing or not a number. */
export async function readPid(file: string): Promise<number | null> {
  try {
    const n = Number.parseInt((await readFile(file, 'utf8')).trim(), 10);
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}
