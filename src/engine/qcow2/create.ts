// Creating images: a new empty qcow2 file (header, refcount table and blocks, L1 table), made under a
// temporary name and linked into place so an existing image is never overwritten.
import { link, open as openFile, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { openLayer, storedBackingName } from './chain';
import { ImageError, toImageError } from './errors';
import { type Header, INCOMPAT_EXTL2, MAX_L1_BYTES, serializeHeader } from './header';

export const DEFAULT_CLUSTER_SIZE = 65536;

export interface CreateOptions {
  /** Virtual size in bytes, rounded up to whole 512-byte sectors as qemu-img does; defaults to the backing file's size. */
  size?: number;
  /** Default 65536; a power of two from 512 to 2 MiB. */
  clusterSize?: number;
  /** The backing file as the caller names it; stored relative to the new image's folder. */
  backingFile?: string;
  /** Default: detected from the backing file ('qcow2' or 'raw'). */
  backingFormat?: 'qcow2' | 'raw';
  /** Default 3. */
  version?: 2 | 3;
  /** Extended L2 entries with subclusters (version 3 only). */
  extendedL2?: boolean;
  /**
   * Flush the new file to disk before it appears under its name (default false: an empty image holds nothing
   * to lose, and a caller that records it somewhere durable flushes, or can make it again).
   */
  sync?: boolean;
}

/** The shape of a new empty image. */
export interface NewImageLayout {
  size: number;
  clusterBits: number;
  version: 2 | 3;
  extendedL2: boolean;
  backingFile: string | null;
  backingFormat: string | null;
}

export async function createImage(path: string, options: CreateOptions): Promise<void> {
  const clusterSize = options.clusterSize ?? DEFAULT_CLUSTER_SIZE;
  const clusterBits = Math.log2(clusterSize);
  if (!Number.isInteger(clusterBits) || clusterBits < 9 || clusterBits > 21) {
    throw new ImageError('INVALID_ARGUMENT', `The cluster size must be a power of two from 512 bytes to 2 MiB, not ${clusterSize}.`);
  }
  const version = options.version ?? 3;
  const extendedL2 = options.extendedL2 ?? false;
  if (extendedL2 && (version !== 3 || clusterSize < 16384)) {
    throw new ImageError('INVALID_ARGUMENT', 'Extended L2 entries need a version 3 image with clusters of at least 16 KiB.');
  }
  let size = options.size;
  let backingFile: string | null = null;
  let backingFormat: string | null = null;
  if (options.backingFile !== undefined) {
    const target = resolve(options.backingFile);
    const missing = (e: unknown): never => {
      const err = toImageError(e, target);
      throw err.code === 'NOT_FOUND' ? new ImageError('BACKING_MISSING', `The backing file ${target} does not exist.`, target) : err;
    };
    if (size !== undefined && options.backingFormat !== undefined) {
      // Everything is known: only make sure the backing file is there (keeps a new overlay at a few syscalls).
      await stat(target).catch(missing);
      backingFormat = options.backingFormat;
    } else {
      const backing = await openLayer(target, options.backingFormat ?? null, { backing: false }, 0, new Set()).catch(missing);
      size ??= backing.size;
      backingFormat = backing.format;
      await backing.close();
    }
    backingFile = storedBackingName(path, target);
  }
  if (size === undefined || !Number.isSafeInteger(size) || size < 0) {
    throw new ImageError('INVALID_ARGUMENT', 'A new image needs a virtual size (or a backing file to take it from).');
  }
  // QEMU sees disks in 512-byte sectors: a size between would leave a tail it cannot read. Round up, as
  // qemu-img create does (1000 bytes becomes 1024).
  size = Math.ceil(size / 512) * 512;
  const layout: NewImageLayout = { size, clusterBits, version, extendedL2, backingFile, backingFormat };
  const tmp = join(dirname(path), `.${basename(path)}.new-${process.pid}-${Date.now()}`);
  await writeNewImage(tmp, layout, options.sync ?? false);
  try {
    // link() fails if the name exists: an existing image is never overwritten.
    await link(tmp, path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw err.code === 'EEXIST' ? new ImageError('INVALID_ARGUMENT', `${path} already exists.`, path) : toImageError(e, path);
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

/** Where a new image's tables lie. */
export interface NewImageTables {
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
}

/** The header of a new image (16-bit refcounts, no snapshots, no extra features). */
export function newHeader(l: NewImageLayout, t: NewImageTables): Header {
  return {
    version: l.version,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits: l.clusterBits,
    size: l.size,
    cryptMethod: 0,
    l1Size: t.l1Size,
    l1TableOffset: t.l1TableOffset,
    refcountTableOffset: t.refcountTableOffset,
    refcountTableClusters: t.refcountTableClusters,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatibleFeatures: l.extendedL2 ? INCOMPAT_EXTL2 : 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: 4,
    headerLength: l.version === 3 ? 112 : 72,
    compressionType: 0,
    extraHeader: Buffer.alloc(0),
    otherExtensions: [],
    backingFile: l.backingFile,
    backingFormat: l.backingFormat,
    featureNames: [],
  };
}

/** Writes a complete empty image: header, refcount table, refcount blocks, L1 table. */
export async function writeNewImage(path: string, l: NewImageLayout, sync = true): Promise<void> {
  const cs = 2 ** l.clusterBits;
  const l2Entries = cs / (l.extendedL2 ? 16 : 8);
  const l1Size = Math.max(1, Math.ceil(Math.ceil(l.size / cs) / l2Entries));
  if (l1Size * 8 > MAX_L1_BYTES) {
    throw new ImageError('INVALID_ARGUMENT', `A ${l.size}-byte disk needs too large an L1 table with ${cs}-byte clusters; use a larger cluster size.`);
  }
  const l1Clusters = Math.ceil((l1Size * 8) / cs);
  const perBlock = (cs * 8) / 16;
  let blocks = 1;
  let tableClusters = 1;
  for (;;) {
    const total = 1 + tableClusters + blocks + l1Clusters;
    const b = Math.ceil(total / perBlock);
    const t = Math.ceil((b * 8) / cs);
    if (b === blocks && t === tableClusters) break;
    blocks = b;
    tableClusters = t;
  }
  const total = 1 + tableClusters + blocks + l1Clusters;
  const header = newHeader(l, { l1Size, l1TableOffset: (1 + tableClusters + blocks) * cs, refcountTableOffset: cs, refcountTableClusters: tableClusters });
  // The L1 table is left unwritten: the file is extended to its end, so it reads as zeros.
  const image = Buffer.alloc((1 + tableClusters + blocks) * cs);
  serializeHeader(header).copy(image, 0);
  for (let i = 0; i < blocks; i++) image.writeBigUInt64BE(BigInt((1 + tableClusters + i) * cs), cs + i * 8);
  const blocksAt = (1 + tableClusters) * cs;
  for (let c = 0; c < total; c++) image.writeUInt16BE(1, blocksAt + c * 2);
  const fh = await openFile(path, 'wx').catch((e: unknown) => {
    throw toImageError(e, path);
  });
  try {
    await fh.write(image, 0, image.length, 0);
    await fh.truncate(total * cs);
    if (sync) await fh.datasync();
  } catch (e) {
    await fh.close().catch(() => {});
    await unlink(path).catch(() => {});
    throw toImageError(e, path);
  }
  await fh.close();
}
