// Whether a machine has anything to boot: a disk whose first sector ends in the boot signature, or a CD-ROM.
import { join } from 'node:path';
import { openDisk } from '../qcow2';
import type { MachineEntry } from './store';

/** The sentence a front end shows when a machine that powers on has nothing to boot. */
export const NO_BOOTABLE_DISK = 'No bootable disk: import an image or attach an ISO.';

/**
 * Why the machine cannot boot, or null. The firmware (SeaBIOS) boots a disk whose first sector ends in 0x55 0xAA
 * (an MBR, or the protective MBR of a GPT disk) or a CD; without either it prints "No bootable device" to a
 * screen nobody sees, and the serial console stays blank. Reading the sector is exact and instant, where
 * waiting for the firmware's message would take seconds and need a display.
 */
export async function bootProblem(e: MachineEntry): Promise<string | null> {
  if (e.manifest.cdrom !== undefined) return null;
  for (const d of e.manifest.disks) {
    const disk = await openDisk(join(e.folder, d.top)).catch(() => null);
    if (disk === null) return null; // unreadable here (e.g. locked by QEMU): do not claim it is empty
    try {
      if (disk.size < 512) continue;
      const sector = Buffer.alloc(512);
      await disk.read(sector, 0);
      if (sector[510] === 0x55 && sector[511] === 0xaa) return null;
    } finally {
      await disk.close();
    }
  }
  return NO_BOOTABLE_DISK;
}
