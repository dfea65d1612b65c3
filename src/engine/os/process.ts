// Whether a process still runs, told apart from a zombie and from a later process that got the same pid.
import { existsSync, readFileSync } from 'node:fs';

/** /proc/PID/stat from field 3 on (the state letter first), or null when it cannot be read. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2, the command name, is in parentheses and may hold spaces: count from after it.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

let procMounted: boolean | undefined;
function hasProc(): boolean {
  procMounted ??= process.platform === 'linux' && existsSync('/proc/self/stat');
  return procMounted;
}

/**
 * When process `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat), or null where that cannot
 * be read: with the pid it names one process, not whichever later one got the same pid.
 */
export function processStart(pid: number): string | null {
  return statFields(pid)?.[19] ?? null;
}

/**
 * True while process `pid` exists and is not a zombie (a dead child nobody reaped still answers kill 0). With
 * `started` (its processStart when it was recorded), a later process that reuses the pid is not it.
 */
export function isProcessAlive(pid: number, started?: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (!hasProc()) return true;
  const fields = statFields(pid);
  if (fields === null) return false; // it ended between the two looks
  if (fields[0] === 'Z' || fields[0] === 'X') return false;
  return started === undefined || fields[19] === undefined || fields[19] === started;
}
