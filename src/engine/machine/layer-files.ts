// The machine layer's only contact with the disk layer: creating, measuring and re-pointing layer files.
import { randomBytes } from 'node:crypto';
import { isImageError, Qcow2Image } from '../qcow2';
import { MachineError } from './errors';
import { rm, stat } from 'node:fs/promises';

/** Layer files are named by disk and a random tag, never by role: a top layer becomes a snapshot layer in place. */
export function newLayerName(diskIndex: number): string {
  return `disk${diskIndex}-${randomBytes(4).toString('hex')}.qcow2`;
}

export const LAYER_NAME_PATTERN = /^disk\d+-[0-9a-f]{8}\.qcow2$/;

/**
 * A new layer: empty and standalone, or an empty overlay on `backing` (an absolute path; stored relative).
 * It is not flushed: an empty layer lost to a power cut is made again by recovery (repairEmptyTop), which
 * keeps snapshots and clones at one flush (the manifest's) each.
 */
export async function createLayer(path: string, size: number, backing: string | null, backingFormat: 'qcow2' | 'raw' = 'qcow2'): Promise<void> {
  const options = { size, sync: false };
  await Qcow2Image.create(path, backing === null ? options : { ...options, backingFile: backing, backingFormat });
}

/** A top layer a power cut left empty or cut short (it was new and never written) is made again, empty. */
export async function repairEmptyTop(path: string, size: number, backing: string | null): Promise<boolean> {
  const st = await stat(path).catch(() => null);
  if (st !== null && st.size >= 512) return false;
  await rm(path, { force: true });
  await createLayer(path, size, backing);
  return true;
}

/** Bytes a layer holds itself (data or zeros), i.e. how much its state differs from the layer below. */
export async function layerAllocatedBytes(path: string): Promise<number> {
  const image = await Qcow2Image.open(path, { backing: false });
  try {
    let total = 0;
    for (const e of await image.layerMap(0, image.size)) if (e.kind !== 'unallocated') total += e.length;
    return total;
  } finally {
    await image.close();
  }
}

/** The backing file name a layer stores (as written: relative for ours), or null. */
export async function layerBacking(path: string): Promise<string | null> {
  const image = await Qcow2Image.open(path, { backing: false });
  try {
    return image.backingFile;
  } finally {
    await image.close();
  }
}

/** Re-points a layer at `backing` (absolute; stored relative) without touching data. */
export async function setLayerBacking(path: string, backing: string | null): Promise<void> {
  const image = await Qcow2Image.open(path, { writable: true, backing: false });
  try {
    await image.setBacking(backing, backing === null ? undefined : 'qcow2');
    await image.flush();
  } finally {
    await image.close();
  }
}

/** Image errors keep their readable message; NO_SPACE and ABORTED keep their meaning under the machine's codes. */
export function fromImageError(e: unknown, what: string): unknown {
  if (!isImageError(e)) return e;
  switch (e.code) {
    case 'NO_SPACE':
      return new MachineError('NO_SPACE', `The disk is full while ${what}; nothing was changed: free some space and try again.`, [], { cause: e });
    case 'ABORTED':
      return new MachineError('ABORTED', `${what[0]?.toUpperCase() ?? ''}${what.slice(1)} was cancelled; nothing was changed.`, [], { cause: e });
    default:
      return new MachineError('IMAGE_ERROR', e.message, [], { cause: e });
  }
}
