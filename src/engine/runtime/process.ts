// Processes we did not start in this process: QEMU outlives the CLI, so we find it again by pid.
import { readFileSync } from 'node:fs';
import { open, readFile, unlink } from 'node:fs/promises';
import { QemuError } from './errors';

/** True while the process exists and is not a zombie (a dead child nobody reaped still answers kill 0). */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (process.platform === 'linux') {
    try {
      // "pid (comm) S ..." : the state letter follows the last ')'.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      return state !== 'Z' && state !== 'X';
    } catch {
      return false;
    }
  }
  return true;
}

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
export async function waitForExit(pid: number, timeoutMs: number, pollMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isProcessAlive(pid)) {
    if (Date.now() >= deadline) return false;
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
        const fh = await open(file, 'wx', 0o644);
        try {
          await fh.writeFile(String(process.pid));
        } finally {
          await fh.close();
        }
        return new StartLock(file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new QemuError('IO_ERROR', `Cannot create ${file}: ${(e as Error).message}`, { cause: e });
        }
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
