// A machine's screen through the library: where its VNC server listens (the extension's display tab relays it)
// and screenshots; the display device itself is a setting of the manifest, applied at the next start.
import { open, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { DEFAULT_DISPLAY, isDisplayDevice, runtimeInfo, screendump, type DisplayDevice } from '../runtime';
import { MachineError } from './errors';
import type { LibraryContext } from './library-context';
import type { Manifest } from './manifest';
import { runtimeCall } from './power';
import type { MachineEntry } from './store';

export interface Screenshot {
  /** The PNG written (absolute path). */
  file: string;
  width: number;
  height: number;
  bytes: number;
}

/** The display device a machine gets at its next start. */
export function displayOf(m: Manifest): DisplayDevice {
  return m.display ?? DEFAULT_DISPLAY;
}

export function checkDisplay(v: unknown): DisplayDevice {
  if (!isDisplayDevice(v)) throw new MachineError('INVALID_ARGUMENT', `"${String(v)}" is not a display device: choose std (standard VGA), virtio (virtio-vga) or none.`);
  return v;
}

/**
 * The unix socket of the running machine's VNC server. Off: NOT_RUNNING; running without a display (started so,
 * or loaded from a state saved before machines had displays): INVALID_ARGUMENT, naming the way out.
 */
export async function displaySocket(ctx: LibraryContext, ref: string): Promise<string> {
  const { e } = await ctx.find(ref);
  return socketOf(e);
}

async function socketOf(e: MachineEntry): Promise<string> {
  const info = await runtimeInfo(e.folder);
  if (info === null) throw new MachineError('NOT_RUNNING', `Machine "${e.manifest.name}" is off: start it to see its screen.`);
  if (info.displaySocket === undefined || (info.display ?? 'none') === 'none') {
    throw new MachineError(
      'INVALID_ARGUMENT',
      `Machine "${e.manifest.name}" runs without a display device: ${displayOf(e.manifest) === 'none' ? 'set one (vmsnap vm edit --display std) and ' : ''}stop and start it to get a screen.`,
    );
  }
  return info.displaySocket;
}

/** A PNG of the running machine's screen as it is now (QEMU writes it). No lock: nothing in the library changes. */
export async function screenshot(ctx: LibraryContext, ref: string, file: string): Promise<Screenshot> {
  const { e } = await ctx.find(ref);
  const target = resolve(file);
  const dir = await stat(dirname(target)).catch(() => null);
  if (dir === null || !dir.isDirectory()) throw new MachineError('INVALID_ARGUMENT', `The folder ${dirname(target)} does not exist: create it or choose another file.`);
  await socketOf(e);
  await runtimeCall(() => screendump(e.folder, target, 'png', ctx.qemu.qmp ?? {}));
  const size = await pngSize(target);
  return { file: target, ...size };
}

/** Width and height from the PNG's header chunk (IHDR, right after the signature). */
async function pngSize(file: string): Promise<{ width: number; height: number; bytes: number }> {
  const h = await open(file, 'r');
  try {
    const head = Buffer.alloc(24);
    await h.read(head, 0, 24, 0);
    return { width: head.readUInt32BE(16), height: head.readUInt32BE(20), bytes: (await h.stat()).size };
  } finally {
    await h.close();
  }
}
