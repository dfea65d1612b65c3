import { lstat, realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Disk, OperationOptions } from '../disk';
import { ImageError } from '../errors';
import { Qcow2Image } from '../image';
import { BackgroundWriteback, writeAtomically } from './atomic-file';
import { writeFlatImage } from './flat-image';
import { chainLayers, chainRanges, closeQuietly, layerIdentity, openSource, type DiskSource } from './layers';
import { Progress } from './progress';
import { alignRanges, totalLength } from './ranges';

export interface FlattenOptions extends OperationOptions {
  /** Flatten this internal snapshot (id or name) of the source instead of its current state. */
  snapshot?: string;
  /** Cluster size of the new image; default the source's (64 KiB for a raw source). */
  clusterSize?: number;
  /** Replace an existing file at the destination (default: refuse). */
  overwrite?: boolean;
}

export interface FlattenResult {
  /** Absolute path of the new image. */
  path: string;
  /** Bytes of data written into it (zero and unallocated ranges are never written). */
  dataBytes: number;
}

/**
 * Writes the disk `source` reads (its whole backing chain, or one of its internal snapshots) into a new
 * standalone qcow2 v3 image at `destination`, sparse: only non-zero clusters are stored. The destination
 * appears complete or not at all.
 */
export async function flatten(source: DiskSource, destination: string, options: FlattenOptions = {}): Promise<FlattenResult> {
  const target = resolve(destination);
  const input = await openSource(source);
  let view: Disk | null = null;
  try {
    let disk = input.disk;
    if (options.snapshot !== undefined) {
      if (!(disk instanceof Qcow2Image)) {
        throw new ImageError('INVALID_ARGUMENT', `${disk.path} is a raw image, which has no internal snapshots.`, disk.path);
      }
      view = await disk.openSnapshot(options.snapshot);
      disk = view;
    }
    const clusterSize = options.clusterSize ?? (input.disk instanceof Qcow2Image ? input.disk.clusterSize : 65536);
    if (!Number.isInteger(clusterSize) || clusterSize < 512 || clusterSize > 2 * 1024 * 1024 || (clusterSize & (clusterSize - 1)) !== 0) {
      throw new ImageError('INVALID_ARGUMENT', `The cluster size ${clusterSize} is not a power of two from 512 bytes to 2 MiB.`);
    }
    await refuseDestination(target, input.disk, options.overwrite === true);
    const sourceDisk = disk;
    const dataBytes = await writeAtomically(target, (temporary) => copyChain(sourceDisk, temporary, clusterSize, options));
    return { path: target, dataBytes };
  } finally {
    await closeQuietly(view);
    await input.release();
  }
}

async function refuseDestination(target: string, source: Disk, overwrite: boolean): Promise<void> {
  const existing = await lstat(target).catch(() => null);
  if (!existing) return;
  if (!overwrite) {
    throw new ImageError('INVALID_ARGUMENT', `${target} already exists: choose another name, or allow overwriting it.`, target);
  }
  if (existing.isDirectory()) throw new ImageError('INVALID_ARGUMENT', `${target} is a folder, not an image file.`, target);
  const real = await realpath(target);
  for (const layer of chainLayers(source)) {
    if ((await layerIdentity(layer)) === real) {
      throw new ImageError('INVALID_ARGUMENT', `${target} is a layer of the chain being flattened; write the copy to another file.`, target);
    }
  }
}

async function copyChain(disk: Disk, temporary: string, clusterSize: number, options: OperationOptions): Promise<number> {
  // Whole clusters, so every data cluster is read and checked for zeros as one.
  const data = alignRanges(await chainRanges(disk, 0, disk.size, ['data']), clusterSize, disk.size);
  const progress = new Progress(`Flattening ${disk.path}`, totalLength(data), options);
  // No flushes along the way: the file is fsynced once, before it is renamed into place; writing back in the
  // background meanwhile keeps that last fsync short.
  let writeback: BackgroundWriteback | null = null;
  try {
    const written = await writeFlatImage(disk, temporary, data, {
      clusterSize,
      progress,
      wrote: (bytes) => writeback?.wrote(bytes),
      created: async () => {
        writeback = await BackgroundWriteback.start(temporary);
      },
    });
    progress.finish();
    return written;
  } finally {
    await (writeback as BackgroundWriteback | null)?.close();
  }
}
