// Which accelerator QEMU runs a machine with, and watching a freshly started guest for KVM's internal error (on
// hosts where /dev/kvm exists but cannot run the guest, e.g. nested virtualisation, the guest stops at its boot
// loader in QEMU's `internal-error` run state and looks paused).
import { isProcessAlive } from '../os';
import { isQemuError } from './errors';
import { readPid, sleep } from './process';
import { withQmp, type QmpOptions } from './qmp';
import { runtimeFiles } from './files';

/** KVM when usable, else TCG: the default, and what the extension's `auto` setting means. */
export const AUTO_ACCEL = 'kvm:tcg';

/** The accelerator list QEMU is given: the option, else $VMSNAP_QEMU_ACCEL, else kvm:tcg. */
export function acceleratorOf(options: { accel?: string }): string {
  return options.accel ?? process.env['VMSNAP_QEMU_ACCEL'] ?? AUTO_ACCEL;
}

/** True for an accelerator list that tries KVM first and may fall back to TCG (auto), not for 'kvm' alone. */
export function isAutoAccel(accel: string): boolean {
  const list = accel.split(':');
  return list[0] === 'kvm' && list.includes('tcg');
}

/**
 * Polls QEMU's run state every 100 ms for up to `ms` and returns 'internal-error' as soon as it appears, else the
 * last state seen (null when the process ended or QMP could not be reached).
 */
export async function watchRunState(folder: string, ms: number, options: { qmp?: QmpOptions } = {}): Promise<string | null> {
  const files = runtimeFiles(folder);
  const deadline = Date.now() + ms;
  let state: string | null = null;
  for (;;) {
    const pid = await readPid(files.pidFile);
    if (pid === null || !isProcessAlive(pid)) return null;
    try {
      state = await withQmp(files.qmpSocket, async (qmp) => (await qmp.execute<{ status: string }>('query-status')).status, options.qmp);
    } catch (e) {
      if (!isQemuError(e)) throw e; // QMP busy for a moment: ask again
    }
    if (state === 'internal-error' || Date.now() >= deadline) return state;
    await sleep(100);
  }
}
