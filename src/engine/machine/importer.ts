import { join } from 'node:path';
import type { OperationOptions } from '../operation';
import { openDisk, Qcow2Image, type Disk, type InternalSnapshot } from '../qcow2';
import { alignRanges, flatten, mergeRanges } from '../qcow2/ops';
import { MachineError } from './errors';
import { newId } from './identity';
import { createLayer, fromImageError, newLayerName } from './layer-files';
import type { SnapshotRecord } from './manifest';
import { validateName } from './names';
import type { ImportMachineOptions, ImportResult } from './types';

const CHUNK = 4 * 1024 * 1024;
const BLOCK = 64 * 1024;
const ZERO = Buffer.alloc(BLOCK);

export interface ImportedLayers {
  virtualSize: number;
  /** File name of the top layer in the staging folder. */
  top: string;
  /** Snapshots made from the image's internal snapshots (empty unless converted), oldest first, a linear chain. */
  snapshots: SnapshotRecord[];
  internalSnapshots: ImportResult['internalSnapshots'];
}

/**
 * Writes an image's content as layers into `folder` (the image is only read). Internal snapshots: flattened away
 * by default; with 'convert', oldest first, each becomes a layer holding what differs from the previous one (qcow2
 * internal snapshots have no tree, so they form a line by date), and the current state tops the last.
 */
export async function importImage(imagePath: string, folder: string, options: ImportMachineOptions): Promise<ImportedLayers> {
  let disk: Disk;
  try {
    disk = await openDisk(imagePath);
  } catch (e) {
    throw fromImageError(e, `importing ${imagePath}`);
  }
  const progress: OperationOptions = { ...(options.signal ? { signal: options.signal } : {}), ...(options.onProgress ? { onProgress: options.onProgress } : {}) };
  try {
    const size = disk.size;
    const internal: InternalSnapshot[] = disk instanceof Qcow2Image ? [...disk.snapshots] : [];
    internal.sort((a, b) => a.date.getTime() - b.date.getTime() || Number(a.id) - Number(b.id) || a.id.localeCompare(b.id));
    const listed = internal.map((s) => ({ id: s.id, name: s.name, date: s.date.toISOString() }));
    const top = newLayerName(0);
    if (options.internalSnapshots !== 'convert' || internal.length === 0 || !(disk instanceof Qcow2Image)) {
      await flatten(disk, join(folder, top), progress);
      return { virtualSize: size, top, snapshots: [], internalSnapshots: listed };
    }
    const odd = internal.find((s) => s.diskSize !== size);
    if (odd) {
      throw new MachineError('INVALID_ARGUMENT', `The internal snapshot "${odd.name}" has a different disk size than the image; import it without converting its snapshots.`);
    }
    const snapshots: SnapshotRecord[] = [];
    let previous: Disk | null = null;
    for (const s of internal) {
      const file = newLayerName(0);
      const view = await disk.openSnapshot(s.id);
      if (previous === null) await flatten(view, join(folder, file), progress);
      else {
        await createLayer(join(folder, file), size, join(folder, snapshots[snapshots.length - 1]!.layers[0]!));
        await copyDifferences(previous, view, join(folder, file), progress);
      }
      previous = view;
      snapshots.push({
        id: newId(),
        name: safeName(s.name, `Snapshot ${s.id}`),
        description: `Imported from the internal snapshot ${s.id} of ${imagePath}.`,
        parentId: snapshots.length > 0 ? snapshots[snapshots.length - 1]!.id : null,
        createdAt: s.date.toISOString(),
        takenWhileRunning: false,
        stateFile: null,
        vm: null,
        layers: [file],
      });
    }
    await createLayer(join(folder, top), size, join(folder, snapshots[snapshots.length - 1]!.layers[0]!));
    await copyDifferences(previous!, disk, join(folder, top), progress);
    return { virtualSize: size, top, snapshots, internalSnapshots: listed };
  } catch (e) {
    throw fromImageError(e, `importing ${imagePath}`);
  } finally {
    await disk.close().catch(() => {});
  }
}

function safeName(raw: string, fallback: string): string {
  try {
    return validateName(raw);
  } catch {
    return fallback;
  }
}

/**
 * Writes into the overlay at `target` (backed by a layer reading like `from`) whatever `to` reads differently.
 * Candidates are what either view allocates; each 64 KiB block of them is compared by content. (changedRanges
 * cannot be used here: two internal snapshots of one file look like the same layer to it.)
 */
async function copyDifferences(from: Disk, to: Disk, target: string, options: OperationOptions): Promise<void> {
  const allocated = [...(await from.layerMap(0, from.size)), ...(await to.layerMap(0, to.size))].filter((e) => e.kind !== 'unallocated');
  const ranges = mergeRanges(alignRanges(allocated, BLOCK, to.size));
  const total = ranges.reduce((n, r) => n + r.length, 0);
  const out = await Qcow2Image.open(target, { writable: true });
  try {
    let done = 0;
    for (const r of ranges) {
      for (let at = r.offset; at < r.offset + r.length; at += CHUNK) {
        if (options.signal?.aborted) throw new MachineError('ABORTED', 'The import was cancelled; nothing was changed.');
        const n = Math.min(CHUNK, r.offset + r.length - at);
        const a = Buffer.alloc(n);
        const b = Buffer.alloc(n);
        await from.read(a, at);
        await to.read(b, at);
        for (let off = 0; off < n; off += BLOCK) {
          const end = Math.min(n, off + BLOCK);
          const nb = b.subarray(off, end);
          if (a.subarray(off, end).equals(nb)) continue;
          if (nb.equals(ZERO.subarray(0, nb.length))) await out.writeZeroes(at + off, nb.length);
          else await out.write(nb, at + off);
        }
        done += n;
        options.onProgress?.(done, total);
      }
    }
    await out.flush();
  } finally {
    await out.close();
  }
}
