// A machine's screen device: the display QEMU gives the guest and its VNC server on a unix socket in the machine
// folder (never a TCP port: the folder is private to its user). Screenshots are in ./screendump.ts.
import type { RuntimeFiles } from './files';

/** std: QEMU's standard VGA (every guest has a driver); virtio: virtio-vga (VGA-compatible at boot); none: headless. */
export type DisplayDevice = 'std' | 'virtio' | 'none';

const DISPLAY_DEVICES: readonly DisplayDevice[] = ['std', 'virtio', 'none'];

/** What a machine without a display setting gets. */
export const DEFAULT_DISPLAY: DisplayDevice = 'std';

export function isDisplayDevice(v: unknown): v is DisplayDevice {
  return typeof v === 'string' && (DISPLAY_DEVICES as readonly string[]).includes(v);
}

/** QEMU option values separate with commas: a comma inside a value is written twice. */
function opt(value: string): string {
  return value.replace(/,/g, ',,');
}

/**
 * The display device's arguments, added after every other device so that the PCI slots of the disks and the NIC
 * stay where they were before machines had displays (a guest names its network interface after the slot). A USB
 * tablet comes with it: VNC sends absolute pointer positions, which a PS/2 mouse can only approximate.
 */
export function displayArgs(display: DisplayDevice, files: RuntimeFiles): string[] {
  if (display === 'none') return [];
  return [
    '-device', display === 'virtio' ? 'virtio-vga,id=video0' : 'VGA,id=video0',
    '-device', 'qemu-xhci,id=usb0',
    '-device', 'usb-tablet,id=tablet0,bus=usb0.0',
    '-vnc', `unix:${opt(files.displaySocket)}`,
  ];
}
