import { realpath } from 'node:fs/promises';
import { chainMap, openDisk } from '../chain';
import type { Disk, ExtentKind } from '../disk';
import { mergeRanges, type ByteRange } from './ranges';

/** A disk an operation reads: opened from a path (and then closed by the operation) or handed in open. */
export type DiskSource = string | Disk;

export interface OpenedSource {
  disk: Disk;
  /** Closes the disk if the operation opened it; a disk handed in stays open. */
  release(): Promise<void>;
}

export async function openSource(source: DiskSource): Promise<OpenedSource> {
  if (typeof source !== 'string') return { disk: source, release: async () => {} };
  const disk = await openDisk(source);
  return { disk, release: () => closeQuietly(disk) };
}

/** Closing a read-only disk cannot lose data, so a failure to close must not hide the operation's own result. */
export async function closeQuietly(disk: { close(): Promise<void> } | null | undefined): Promise<void> {
  try {
    await disk?.close();
  } catch {
    // nothing was written through it
  }
}

/** The layers of a chain, top first. */
export function chainLayers(disk: Disk): Disk[] {
  const layers: Disk[] = [];
  for (let d: Disk | null = disk; d; d = d.backing) layers.push(d);
  return layers;
}

/** Layer files compared by real path, so links and relative names still find a shared base. */
export async function layerIdentity(disk: Disk): Promise<string> {
  try {
    return await realpath(disk.path);
  } catch {
    return disk.path;
  }
}

/** The ranges of [0, length) where one layer alone holds something of the given kinds. */
export async function layerRanges(layer: Disk, length: number, kinds: readonly ExtentKind[]): Promise<ByteRange[]> {
  const end = Math.min(length, layer.size);
  if (end <= 0) return [];
  const extents = await layer.layerMap(0, end);
  return mergeRanges(extents.filter((e) => kinds.includes(e.kind)).map((e) => ({ offset: e.offset, length: e.length })));
}

/** The ranges of [offset, offset + length) where the whole chain reads something of the given kinds. */
export async function chainRanges(disk: Disk, offset: number, length: number, kinds: readonly ExtentKind[]): Promise<ByteRange[]> {
  const end = Math.min(offset + length, disk.size);
  if (end <= offset) return [];
  const extents = await chainMap(disk, offset, end - offset);
  return mergeRanges(extents.filter((e) => kinds.includes(e.kind)).map((e) => ({ offset: e.offset, length: e.length })));
}

/** Reads like Disk.read, but a range running past the disk's end reads zeros there (as QEMU pads a short backing file). */
export async function readPadded(disk: Disk, buf: Buffer, offset: number): Promise<void> {
  const inside = Math.max(0, Math.min(buf.length, disk.size - offset));
  if (inside > 0) await disk.read(inside === buf.length ? buf : buf.subarray(0, inside), offset);
  if (inside < buf.length) buf.fill(0, inside);
}
