// A qcow2 image (qcow2.txt, versions 2 and 3), one layer with its backing chain: opening and validating it,
// reading, writing, internal snapshots, and changes to the whole layer (emptying it, a new backing file).
// The pieces live beside it: cluster-map.ts (mapping, L2 cache), cluster-write.ts and allocation.ts (the write
// path), chain.ts (backing chains), create.ts (new images), snapshot-table.ts (internal snapshots).
import { rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ClusterAllocator } from './allocation';
import { DEFAULT_MAX_BACKING_DEPTH, openBacking, openQcow2, probeFormat, storedBackingName } from './chain';
import { ClusterMap } from './cluster-map';
import { ClusterWriter } from './cluster-write';
import { type CreateOptions, createImage, writeNewImage } from './create';
import type { Disk, Extent } from './disk';
import { ImageError, toImageError } from './errors';
import { ImageFile } from './file';
import { EXT_BITMAPS, type Header, INCOMPAT_DIRTY, clusterSizeOf, parseHeader, serializeHeader } from './header';
import { OFFSET_MASK } from './layout';
import { checkRange } from './raw';
import { Refcounts } from './refcount';
import { type InternalSnapshot, SnapshotView, findSnapshot, readSnapshotTable } from './snapshot-table';

export type { InternalSnapshot } from './snapshot-table';
export type { CreateOptions } from './create';

export interface OpenOptions {
  /** Open for writing (default false). A dirty or damaged image refuses to open for writing. */
  writable?: boolean;
  /** Open the backing chain (default true). Without it, unallocated clusters read as zeros. */
  backing?: boolean;
  /** Most layers below this one (default 64). */
  maxBackingDepth?: number;
  /**
   * 'crash-safe' (default): flushes between dependent writes, so a crash at any point leaves at worst leaked
   * clusters. 'on-flush': flushes only in flush()/close(), for new files that are renamed into place after.
   */
  writeOrdering?: 'crash-safe' | 'on-flush';
  /**
   * Never write in place into a data cluster the image references when opened: a change goes to a new cluster
   * and the old one is freed (and not handed out again while open). An undo journal then need only keep the
   * tables, not the data, to put the image back; the price is free clusters left inside the file, which later
   * writes into the image reuse.
   */
  copyOnWrite?: boolean;
}

/**
 * A qcow2 image (version 2 or 3) with its backing chain: read, write with copy-on-write, allocation maps and
 * internal snapshots. Follows the write ordering of qcow2.txt: refcounts and data reach the disk before the
 * tables that point at them, so a crash leaves at worst leaked clusters.
 */
export class Qcow2Image implements Disk {
  readonly format = 'qcow2' as const;
  readonly clusterSize: number;
  readonly extendedL2: boolean;
  private map: ClusterMap;
  private allocator: ClusterAllocator;
  private writer: ClusterWriter;
  private backingLayer: Disk | null = null;
  private autoclearCleared = false;
  /** Changes run one at a time: each waits for the one before (metadata updates must not interleave). */
  private changes: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly path: string,
    private file: ImageFile,
    readonly header: Header,
    private readonly l1: Buffer,
    private refcounts: Refcounts,
    readonly snapshots: InternalSnapshot[],
    readonly readOnly: boolean,
    /** The image was dirty when opened (its refcounts may be stale). */
    readonly wasDirty: boolean,
    private readonly ordering: 'crash-safe' | 'on-flush',
    private readonly copyOnWrite: boolean,
    /** How the chain below was opened, to open it again under a new backing file. */
    private readonly chainOptions: { backing: boolean; maxBackingDepth: number },
  ) {
    this.clusterSize = clusterSizeOf(header);
    this.map = new ClusterMap(path, file, header);
    this.extendedL2 = this.map.extendedL2;
    this.allocator = new ClusterAllocator(file, this.map, refcounts, copyOnWrite);
    this.writer = new ClusterWriter(this, file, header, l1, this.map, this.allocator, ordering === 'crash-safe');
  }

  /** The virtual size in whole 512-byte sectors: QEMU ignores a partial last sector, so we do too. */
  get size(): number {
    return Math.floor(this.header.size / 512) * 512;
  }

  get version(): 2 | 3 {
    return this.header.version;
  }

  /** The backing file's name as stored in the image (often relative), or null. */
  get backingFile(): string | null {
    return this.header.backingFile;
  }

  get backingFormat(): string | null {
    return this.header.backingFormat;
  }

  /** The next layer down, or null (none, or opened without its backing chain). */
  get backing(): Disk | null {
    return this.backingLayer;
  }

  static async open(path: string, options: OpenOptions = {}): Promise<Qcow2Image> {
    return openQcow2(resolve(path), options, 0, new Set());
  }

  /**
   * @internal Opens this one layer; `openBelow` opens the chain under it (chain.ts, which refuses loops and
   * too deep chains). Everyone else opens images with Qcow2Image.open.
   */
  static async openLayer(path: string, options: OpenOptions, openBelow: (image: Qcow2Image) => Promise<Disk>): Promise<Qcow2Image> {
    const writable = options.writable ?? false;
    const file = await ImageFile.open(path, writable);
    try {
      const header = parseHeader(await readFirstCluster(file), file.size, path);
      const dirty = (header.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n;
      if (dirty && writable) {
        throw new ImageError('READ_ONLY', `${path} was not closed cleanly (dirty bit set); it needs a repair before it can be written to.`, path, 'dirty');
      }
      const l1 = Buffer.alloc(header.l1Size * 8);
      await file.readExact(l1, header.l1TableOffset, 'L1 table');
      const ordering = options.writeOrdering ?? 'crash-safe';
      const barrier = ordering === 'crash-safe' ? () => file.sync() : async () => {};
      const refcounts = await Refcounts.load(file, clusterSizeOf(header), header.refcountOrder, header.refcountTableOffset, header.refcountTableClusters, barrier, writable);
      const snapshots = await readSnapshotTable(file, header.snapshotsOffset, header.nbSnapshots, clusterSizeOf(header), header.size);
      const chainOptions = { backing: options.backing ?? true, maxBackingDepth: options.maxBackingDepth ?? DEFAULT_MAX_BACKING_DEPTH };
      const image = new Qcow2Image(path, file, header, l1, refcounts, snapshots, !writable, dirty, ordering, options.copyOnWrite === true, chainOptions);
      if (writable) await image.allocator.collect(header, l1, snapshots);
      if (header.backingFile !== null && chainOptions.backing) {
        image.backingLayer = await openBelow(image);
      }
      return image;
    } catch (e) {
      await file.close().catch(() => {});
      throw toImageError(e, path);
    }
  }

  static async create(path: string, options: CreateOptions): Promise<void> {
    await createImage(resolve(path), options);
  }

  async layerMap(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    return this.map.layerMap(this.l1, offset, length);
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    checkRange(this, offset, buf.length);
    await this.map.read(this.l1, this.backingLayer, buf, offset);
  }

  /** A read-only view of the disk as it was in an internal snapshot (by id or name). */
  async openSnapshot(idOrName: string): Promise<Disk> {
    return SnapshotView.open(this, this.file, this.map, findSnapshot(this.snapshots, idOrName, this.path));
  }

  // ---- changing the image --------------------------------------------------------------------------------

  private assertWritable(): void {
    if (this.readOnly) throw new ImageError('READ_ONLY', `${this.path} is open read-only.`, this.path);
  }

  private async barrier(): Promise<void> {
    if (this.ordering === 'crash-safe') await this.file.sync();
  }

  private serialized<T>(change: () => Promise<T>): Promise<T> {
    const next = this.changes.then(change, change);
    this.changes = next.catch(() => {});
    return next;
  }

  /** Writes bytes at a guest offset (copy-on-write from the backing chain and from internal snapshots). */
  async write(data: Buffer, offset: number): Promise<void> {
    checkRange(this, offset, data.length);
    await this.serialized(async () => {
      await this.prepareWrite();
      await this.writer.write(data, offset);
    });
  }

  /** Makes a range read as zeros: zero clusters where the format allows, zero bytes elsewhere. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    checkRange(this, offset, length);
    await this.serialized(async () => {
      await this.prepareWrite();
      await this.writer.writeZeroes(offset, length);
    });
  }

  /** A writer that does not understand an autoclear feature clears it before changing the image. */
  private async prepareWrite(): Promise<void> {
    this.assertWritable();
    if (this.header.backingFile !== null && this.backingLayer === null) {
      // Copy-on-write needs what the backing file reads; zeros in its place would lose data.
      throw new ImageError('INVALID_ARGUMENT', `${this.path} was opened without its backing chain, so it cannot be written to; open it with its backing files.`, this.path);
    }
    if (this.autoclearCleared) return;
    if (this.header.version === 3 && this.header.autoclearFeatures !== 0n) {
      // Persistent bitmaps would no longer match the data: drop them (extension and clusters), as QEMU drops
      // bitmaps it finds inconsistent, so nothing is left behind as leaked clusters.
      const bitmaps = this.header.otherExtensions.find((e) => e.type === EXT_BITMAPS);
      const freed = bitmaps ? await this.bitmapClusters(bitmaps.data) : [];
      this.header.otherExtensions = this.header.otherExtensions.filter((e) => e.type !== EXT_BITMAPS);
      this.header.autoclearFeatures = 0n;
      await this.writeHeader();
      for (const c of freed) await this.refcounts.update(c, 1, -1);
    }
    this.autoclearCleared = true;
  }

  /** Every cluster the persistent bitmaps use: directory, bitmap tables and their data clusters. */
  private async bitmapClusters(ext: Buffer): Promise<number[]> {
    if (ext.length < 24) return [];
    const cs = this.clusterSize;
    const dirSize = Number(ext.readBigUInt64BE(8));
    const dirOffset = Number(ext.readBigUInt64BE(16));
    if (dirSize > 64 * 1024 * 1024 || dirOffset % cs !== 0) this.map.damaged('the bitmap directory is invalid');
    const dir = Buffer.alloc(dirSize);
    await this.file.readExact(dir, dirOffset, 'bitmap directory');
    const out: number[] = [];
    for (let c = dirOffset / cs; c < Math.ceil((dirOffset + dirSize) / cs); c++) out.push(c);
    for (let at = 0, n = 0; at + 24 <= dir.length && n < ext.readUInt32BE(0); n++) {
      const tableOffset = Number(dir.readBigUInt64BE(at) & OFFSET_MASK);
      const tableEntries = dir.readUInt32BE(at + 8);
      const entrySize = 24 + dir.readUInt32BE(at + 20) + dir.readUInt16BE(at + 18);
      if (tableEntries * 8 > 64 * 1024 * 1024) this.map.damaged('a bitmap table is too large');
      const table = Buffer.alloc(tableEntries * 8);
      await this.file.readExact(table, tableOffset, 'bitmap table');
      for (let c = tableOffset / cs; c < Math.ceil((tableOffset + table.length) / cs); c++) out.push(c);
      for (let i = 0; i < tableEntries; i++) {
        const data = Number(table.readBigUInt64BE(i * 8) & OFFSET_MASK);
        if (data !== 0) out.push(data / cs);
      }
      at += Math.ceil(entrySize / 8) * 8;
    }
    return out;
  }

  /** Frees every cluster of this layer so it reads through to its backing file again (an empty overlay). */
  async makeEmpty(): Promise<void> {
    await this.serialized(() => this.makeEmptyNow());
  }

  private async makeEmptyNow(): Promise<void> {
    this.assertWritable();
    const h = this.header;
    if (this.snapshots.length > 0) {
      throw new ImageError('INVALID_ARGUMENT', `${this.path} has internal snapshots; emptying it would lose them.`, this.path);
    }
    const tmp = join(dirname(this.path), `.${basename(this.path)}.empty-${process.pid}-${Date.now()}`);
    await writeNewImage(tmp, {
      size: h.size,
      clusterBits: h.clusterBits,
      version: h.version,
      extendedL2: this.extendedL2,
      backingFile: h.backingFile,
      backingFormat: h.backingFormat,
    });
    try {
      await rename(tmp, this.path);
    } catch (e) {
      await unlink(tmp).catch(() => {});
      throw toImageError(e, this.path);
    }
    await this.reopenFile();
  }

  /** Points this layer at another backing file (stored relative to this image's folder) or none. Data is untouched. */
  async setBacking(backingFile: string | null, format?: 'qcow2' | 'raw'): Promise<void> {
    await this.serialized(() => this.setBackingNow(backingFile, format));
  }

  private async setBackingNow(backingFile: string | null, format?: 'qcow2' | 'raw'): Promise<void> {
    this.assertWritable();
    const h = this.header;
    if (backingFile === null) {
      h.backingFile = null;
      h.backingFormat = null;
    } else {
      const target = resolve(dirname(this.path), backingFile);
      h.backingFormat = format ?? (await probeFormat(target));
      h.backingFile = storedBackingName(this.path, target);
    }
    await this.writeHeader();
    if (this.chainOptions.backing) {
      await this.backingLayer?.close();
      this.backingLayer = null;
      if (h.backingFile !== null) this.backingLayer = await openBacking(this, this.chainOptions.maxBackingDepth, 0, new Set());
    }
  }

  private async writeHeader(): Promise<void> {
    const bytes = serializeHeader(this.header);
    const buf = Buffer.alloc(Math.min(this.clusterSize, Math.max(bytes.length, 4096)));
    bytes.copy(buf);
    await this.barrier();
    await this.file.write(buf, 0);
    await this.file.sync();
  }

  private async reopenFile(): Promise<void> {
    await this.file.close();
    const file = await ImageFile.open(this.path, true);
    const first = Buffer.alloc(Math.min(file.size, this.clusterSize));
    await file.readExact(first, 0, 'header');
    const h = parseHeader(first, file.size, this.path);
    Object.assign(this.header, h);
    await file.readExact(this.l1, h.l1TableOffset, 'L1 table');
    const barrier = this.ordering === 'crash-safe' ? () => file.sync() : async () => {};
    this.refcounts = await Refcounts.load(file, this.clusterSize, h.refcountOrder, h.refcountTableOffset, h.refcountTableClusters, barrier);
    this.file = file;
    this.snapshots.length = 0;
    // A new file: a cold L2 cache, and what is in use found again.
    this.map = new ClusterMap(this.path, file, this.header);
    this.allocator = new ClusterAllocator(file, this.map, this.refcounts, this.copyOnWrite);
    this.writer = new ClusterWriter(this, file, this.header, this.l1, this.map, this.allocator, this.ordering === 'crash-safe');
    await this.allocator.collect(this.header, this.l1, this.snapshots);
  }

  /** Bytes the file occupies on the host disk. */
  async bytesOnDisk(): Promise<number> {
    return this.file.blocksOnDisk();
  }

  /** Bytes in the file (its apparent size). */
  get fileSize(): number {
    return this.file.size;
  }

  async flush(): Promise<void> {
    if (!this.readOnly) await this.serialized(() => this.file.sync());
  }

  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.file.close();
      await this.backingLayer?.close();
    }
  }
}

/**
 * The header, its extensions and the backing file's name lie in the first cluster (at least 4 KiB is read): not
 * the 2 MiB of the largest cluster size, which would make every open of a small-cluster layer pay for it.
 */
async function readFirstCluster(file: ImageFile): Promise<Buffer> {
  const head = Buffer.alloc(Math.min(file.size, 4096));
  await file.readExact(head, 0, 'header');
  const bits = head.length >= 24 ? head.readUInt32BE(20) : 0;
  const want = bits >= 9 && bits <= 21 ? Math.min(file.size, 2 ** bits) : 0;
  if (want <= head.length) return head;
  const first = Buffer.alloc(want);
  head.copy(first);
  await file.readExact(first.subarray(head.length), head.length, 'header');
  return first;
}
