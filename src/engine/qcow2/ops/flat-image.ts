// Writing a new standalone qcow2 image from a disk in one pass. Data clusters are laid out in guest order right
// after the header as they are read, with several reads and writes in flight at once, and the tables (L2, L1,
// refcounts) are built in memory and written once at the end. Only for a file nobody uses yet (a temporary one,
// renamed into place when complete): an interrupted run leaves a file that is thrown away, so the write
// ordering an image in use needs (cluster-write.ts) does not apply here.
import { open, type FileHandle } from 'node:fs/promises';
import type { Disk } from '../disk';
import { ImageError, toImageError } from '../errors';
import { newHeader } from '../create';
import { MAX_L1_BYTES, serializeHeader } from '../header';
import { COPIED } from '../layout';
import { alignedBuffer } from './aligned-buffer';
import { isAllZero } from './bytes';
import type { Progress } from './progress';
import { splitRanges, type ByteRange } from './ranges';

/**
 * Bytes per read. Several of them in flight keep both the reading and the writing side of the kernel busy (as
 * qemu-img convert does with 8 requests of 2 MiB); 2 MiB is a multiple of every cluster size.
 */
const PIECE_BYTES = 2 * 1024 * 1024;
const IN_FLIGHT = 4;

export interface FlatImageOptions {
  clusterSize: number;
  progress: Progress;
  /** Told the bytes of every data write (to start writing back to disk in the background). */
  wrote?: (bytes: number) => void;
  /** Called once the file exists, before any data is written. */
  created?: () => Promise<void>;
}

/**
 * Creates `path` (which must not exist) holding what `disk` reads over `data` (cluster-aligned ranges; the rest
 * reads as zeros), sparse: clusters that read as zeros stay unallocated. Returns the bytes of data stored.
 */
export async function writeFlatImage(disk: Disk, path: string, data: readonly ByteRange[], options: FlatImageOptions): Promise<number> {
  const cs = options.clusterSize;
  const size = Math.ceil(disk.size / 512) * 512;
  const l2Entries = cs / 8;
  const l1Size = Math.max(1, Math.ceil(Math.ceil(size / cs) / l2Entries));
  if (l1Size * 8 > MAX_L1_BYTES) {
    throw new ImageError('INVALID_ARGUMENT', `A ${size}-byte disk needs too large an L1 table with ${cs}-byte clusters; use a larger cluster size.`);
  }
  let fh: FileHandle;
  try {
    fh = await open(path, 'wx');
  } catch (e) {
    throw toImageError(e, path);
  }
  try {
    await options.created?.();
    const layout = new Layout(cs, l2Entries);
    await copyData(disk, fh, splitRanges(data, PIECE_BYTES), layout, options);
    await writeTables(fh, layout, size, l1Size);
    return layout.dataBytes;
  } catch (e) {
    throw toImageError(e, path);
  } finally {
    await fh.close().catch(() => {});
  }
}

/** Host clusters handed out in order, and the L2 tables that point at them. */
class Layout {
  /** Next free host cluster; cluster 0 is the header. */
  next = 1;
  dataBytes = 0;
  readonly l2 = new Map<number, Buffer>();

  constructor(
    readonly clusterSize: number,
    readonly l2Entries: number,
  ) {}

  /** Gives the guest cluster a new host cluster and returns its offset. */
  place(guestCluster: number): number {
    const l1i = Math.floor(guestCluster / this.l2Entries);
    let table = this.l2.get(l1i);
    if (!table) {
      table = Buffer.alloc(this.clusterSize);
      this.l2.set(l1i, table);
    }
    const host = this.next++ * this.clusterSize;
    table.writeBigUInt64BE(BigInt(host) | COPIED, (guestCluster % this.l2Entries) * 8);
    return host;
  }
}

/**
 * Reads the pieces, several at once; in guest order, each piece's non-zero clusters get consecutive host
 * clusters and go out in one vectored write while later pieces are still being read.
 */
async function copyData(disk: Disk, fh: FileHandle, pieces: readonly ByteRange[], layout: Layout, options: FlatImageOptions): Promise<void> {
  const cs = layout.clusterSize;
  const free = Array.from({ length: Math.min(IN_FLIGHT, pieces.length) }, () => alignedBuffer(PIECE_BYTES));
  const running = new Set<Promise<void>>();
  let failure: { error: unknown } | null = null;
  let placedSoFar: Promise<void> = Promise.resolve();

  for (const piece of pieces) {
    while (free.length === 0 && failure === null) await Promise.race(running);
    if (failure !== null) break;
    const slot = free.pop()!;
    const buf = slot.subarray(0, piece.length);
    const before = placedSoFar;
    const placed = (async (): Promise<{ host: number; parts: Buffer[] } | null> => {
      await disk.read(buf, piece.offset);
      await before; // host clusters are handed out in guest order
      if (failure !== null) return null;
      options.progress.step(piece.length); // throws when aborted
      const parts: Buffer[] = [];
      let host = -1;
      for (let at = 0; at < buf.length; at += cs) {
        const cluster = buf.subarray(at, Math.min(buf.length, at + cs));
        if (isAllZero(cluster)) continue;
        const h = layout.place((piece.offset + at) / cs);
        if (host < 0) host = h;
        const last = parts[parts.length - 1];
        // Neighbouring clusters of the buffer go out as one part.
        if (last && last.byteOffset + last.length === cluster.byteOffset) parts[parts.length - 1] = buf.subarray(last.byteOffset - buf.byteOffset, at + cluster.length);
        else parts.push(cluster);
      }
      return host < 0 ? null : { host, parts };
    })();
    placedSoFar = placed.then(
      () => undefined,
      () => undefined, // reported through the task below
    );
    const task = placed
      .then(async (run) => {
        if (run === null) return;
        let bytes = 0;
        for (const p of run.parts) bytes += p.length;
        await writeAll(fh, run.parts, run.host, bytes);
        layout.dataBytes += bytes;
        options.wrote?.(bytes);
      })
      .catch((error: unknown) => {
        failure ??= { error };
      })
      .finally(() => {
        free.push(slot);
        running.delete(task);
      });
    running.add(task);
  }
  await Promise.all(running);
  if (failure !== null) throw (failure as { error: unknown }).error;
}

/** A vectored write, finished with plain writes when the kernel takes only part of it. */
async function writeAll(fh: FileHandle, parts: Buffer[], position: number, total: number): Promise<void> {
  const { bytesWritten } = await fh.writev(parts, position);
  if (bytesWritten === total) return;
  let skip = bytesWritten;
  let at = position + bytesWritten;
  for (const p of parts) {
    if (skip >= p.length) {
      skip -= p.length;
      continue;
    }
    const rest = p.subarray(skip);
    skip = 0;
    for (let done = 0; done < rest.length; ) {
      const r = await fh.write(rest, done, rest.length - done, at);
      done += r.bytesWritten;
      at += r.bytesWritten;
    }
  }
}

/** After the data: the L2 tables, the L1 table, the refcount table and its blocks, then the header. */
async function writeTables(fh: FileHandle, layout: Layout, size: number, l1Size: number): Promise<void> {
  const cs = layout.clusterSize;
  const l1 = Buffer.alloc(Math.ceil((l1Size * 8) / cs) * cs);
  const tables: Buffer[] = [];
  const tablesAt = layout.next * cs;
  for (const l1i of [...layout.l2.keys()].sort((a, b) => a - b)) {
    l1.writeBigUInt64BE(BigInt(layout.next++ * cs) | COPIED, l1i * 8);
    tables.push(layout.l2.get(l1i)!);
  }
  const l1At = layout.next * cs;
  layout.next += l1.length / cs;
  // The refcount blocks count every cluster of the file, themselves and the refcount table included.
  const perBlock = cs / 2;
  let blocks = 1;
  let tableClusters = 1;
  for (;;) {
    const total = layout.next + tableClusters + blocks;
    const b = Math.ceil(total / perBlock);
    const t = Math.ceil((b * 8) / cs);
    if (b === blocks && t === tableClusters) break;
    blocks = b;
    tableClusters = t;
  }
  const refcountTableAt = layout.next * cs;
  const blocksAt = refcountTableAt + tableClusters * cs;
  const total = layout.next + tableClusters + blocks;
  const refcounts = Buffer.alloc((tableClusters + blocks) * cs);
  for (let i = 0; i < blocks; i++) refcounts.writeBigUInt64BE(BigInt(blocksAt + i * cs), i * 8);
  const counts = refcounts.subarray(tableClusters * cs);
  for (let c = 0; c < total; c++) counts.writeUInt16BE(1, c * 2);

  const header = Buffer.alloc(cs);
  serializeHeader(
    newHeader(
      { size, clusterBits: Math.log2(cs), version: 3, extendedL2: false, backingFile: null, backingFormat: null },
      { l1Size, l1TableOffset: l1At, refcountTableOffset: refcountTableAt, refcountTableClusters: tableClusters },
    ),
  ).copy(header);
  const metadata = [...tables, l1, refcounts];
  let bytes = 0;
  for (const m of metadata) bytes += m.length;
  await writeAll(fh, metadata, tablesAt, bytes);
  await writeAll(fh, [header], 0, cs);
}
