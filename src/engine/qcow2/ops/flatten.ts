import { lstat, realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Disk, OperationOptions } from '../disk';
import { ImageError } from '../errors';
import { Qcow2Image } from '../image';
import { BackgroundWriteback, writeAtomically } from './atomic-file';
import { isAllZero } from './bytes';
import { chainLayers, chainRanges, closeQuietly, layerIdentity, openSource, type DiskSource } from './layers';
import { CHUNK_BYTES, pipelined } from './pipeline';
import { Progress } from './progress';
import { alignRanges, splitRanges, totalLength } from './ranges';

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
  // Whole clusters, so every write allocates full clusters and never reads back what it is replacing.
  const data = alignRanges(await chainRanges(disk, 0, disk.size, ['data']), clusterSize, disk.size);
  const pieces = splitRanges(data, CHUNK_BYTES);
  const progress = new Progress(`Flattening ${disk.path}`, totalLength(pieces), options);

  // No flushes along the way: the file is fsynced once, before it is renamed into place.
  await Qcow2Image.create(temporary, { size: disk.size, clusterSize, sync: false });
  const out = await Qcow2Image.open(temporary, { writable: true, backing: false, writeOrdering: 'on-flush' });
  const writeback = await BackgroundWriteback.start(temporary);
  let written = 0;
  let ok = false;
  try {
    await pipelined(
      pieces,
      (buf, piece) => disk.read(buf, piece.offset),
      async (buf, piece) => {
        // Clusters that read as zeros stay unallocated: the new image has no backing file, so they read as zeros.
        let runStart = -1;
        const flush = async (end: number): Promise<void> => {
          if (runStart < 0) return;
          await out.write(buf.subarray(runStart, end), piece.offset + runStart);
          written += end - runStart;
          writeback.wrote(end - runStart);
          runStart = -1;
        };
        for (let at = 0; at < buf.length; at += clusterSize) {
          if (!isAllZero(buf.subarray(at, Math.min(buf.length, at + clusterSize)))) {
            if (runStart < 0) runStart = at;
          } else {
            await flush(at);
          }
        }
        await flush(buf.length);
        progress.step(piece.length);
      },
    );
    await out.flush();
    ok = true;
  } finally {
    await writeback.close();
    if (ok) await out.close();
    else await closeQuietly(out);
  }
  progress.finish();
  return written;
}
