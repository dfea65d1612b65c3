// Machines that run the counting guest, for any suite: the tools they need, machines a suite starts (always ended
// afterwards), and waiting for the guest's counts in its serial log.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Library, type MachineDetails } from '../../src/engine/machine';
import { machineStatus, stopMachine, type MachineConfig } from '../../src/engine/runtime';
import { isProcessAlive } from '../../src/engine/os';
import { countsInLog, writeCountingGuest } from './counting-guest';
import { requireTool } from './qemu';

/** Tests run on TCG by default (KVM is never required; under nested virtualisation it can be far slower). */
export const ACCEL = process.env['VMSNAP_QEMU_ACCEL'] ?? 'tcg';

export function requireQemu(): void {
  const qemu = process.env['VMSNAP_QEMU'];
  if (qemu !== undefined) {
    if (!existsSync(qemu)) throw new Error(`VMSNAP_QEMU=${qemu} does not exist.`);
  } else {
    const r = (() => {
      try {
        execFileSync('sh', ['-c', 'command -v qemu-system-x86_64'], { stdio: 'ignore' });
        return true;
      } catch {
        return false;
      }
    })();
    if (!r) throw new Error('qemu-system-x86_64 is not installed: install Debian\'s qemu-system-x86 (apt-get install --no-install-recommends qemu-system-x86).');
  }
  requireTool('qemu-img');
  requireTool('qemu-io');
}

/** A library in `libDir` (on ACCEL) holding the machine "guest": the counting guest written to `raw` and imported. */
export async function libraryWithCountingGuest(libDir: string, raw: string, memoryMiB = 64): Promise<{ lib: Library; machine: MachineDetails }> {
  requireQemu();
  const lib = await Library.open(libDir, { qemu: { accel: ACCEL } });
  writeCountingGuest(raw);
  const { machine } = await lib.importMachine('guest', raw, { cpus: 1, memoryMiB });
  return { lib, machine };
}

/** Force-stops every machine of the library still running (for a suite's `after`: whatever the tests did). */
export async function stopEveryMachine(lib: Library | undefined): Promise<void> {
  for (const x of (await lib?.list().catch(() => [])) ?? []) await stopMachine(x.folder, { force: true }).catch(() => {});
}

/** Folders of machines a suite started; `endAll` stops every one still running, whatever the tests did. */
export class Machines {
  private readonly folders = new Set<string>();
  private readonly pids = new Set<number>();

  constructor(private readonly root: string) {}

  /** A machine folder with a qcow2 top layer over the counting guest's raw image. */
  make(name: string, memoryMiB = 64): MachineConfig {
    const folder = join(this.root, name);
    mkdirSync(folder, { recursive: true });
    const base = join(folder, 'base.raw');
    writeCountingGuest(base);
    const top = join(folder, 'top-0.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', top]);
    this.folders.add(folder);
    return { folder, name, cpus: 1, memoryMiB, disks: [top], macAddress: '52:54:00:12:34:56' };
  }

  track(folder: string, pid?: number | null): void {
    this.folders.add(folder);
    if (pid) this.pids.add(pid);
  }

  async endAll(): Promise<void> {
    for (const folder of this.folders) {
      const st = await machineStatus(folder).catch(() => null);
      if (st?.pid) this.pids.add(st.pid);
      await stopMachine(folder, { force: true }).catch(() => {});
    }
    for (const pid of this.pids) if (isProcessAlive(pid)) process.kill(pid, 'SIGKILL');
  }
}

/** The counts in a serial log from byte `from` on. */
export function countsSince(log: string, from = 0): number[] {
  const text = existsSync(log) ? readFileSync(log).subarray(from).toString('latin1') : '';
  return countsInLog(text);
}

export function logSize(log: string): number {
  return existsSync(log) ? readFileSync(log).length : 0;
}

/** Reads the counts since byte `from` every 25 ms until `pick` finds what it waits for in them. */
async function watchCounts<T>(log: string, from: number, timeoutMs: number, pick: (counts: number[]) => T | undefined, failure: (counts: number[]) => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const counts = countsSince(log, from);
    const found = pick(counts);
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(failure(counts));
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Waits until the guest has printed at least `n` counts since byte `from` of the log; returns them. */
export function waitForCounts(log: string, n: number, from = 0, timeoutMs = 20000): Promise<number[]> {
  return watchCounts(
    log,
    from,
    timeoutMs,
    (counts) => (counts.length >= n ? counts : undefined),
    (counts) => `The guest printed ${counts.length} of ${n} counts in ${timeoutMs} ms (${log}).`,
  );
}

/**
 * The first `n` counts of a guest restarted from an earlier state while it ran (a revert to a running snapshot):
 * the old guest may print a few more counts after byte `from` before it stops, so the restarted one begins where
 * the count drops below the one before it (`lastBefore`: the last count before `from`).
 */
export function countsAfterRestart(log: string, from: number, lastBefore: number, n: number, timeoutMs = 20000): Promise<number[]> {
  return watchCounts(
    log,
    from,
    timeoutMs,
    (counts) => {
      const seen = [lastBefore, ...counts];
      const drop = seen.findIndex((c, i) => i > 0 && c < seen[i - 1]!);
      return drop > 0 && seen.length - drop >= n ? seen.slice(drop, drop + n) : undefined;
    },
    (counts) => `The restarted guest did not print ${n} counts in ${timeoutMs} ms (after ${lastBefore}: ${counts.join(' ')}).`,
  );
}

export function last(counts: number[]): number {
  const v = counts[counts.length - 1];
  if (v === undefined) throw new Error('no counts');
  return v;
}
