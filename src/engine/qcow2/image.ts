import { link, open as openFile, rename, unlink, realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { constants as zlibConstants, inflateRawSync } from 'node:zlib';
import type { Disk, Extent } from './disk';
import { ImageError, toImageError } from './errors';
import { ImageFile } from './file';
import {
  EXT_BITMAPS,
  type Header,
  INCOMPAT_DIRTY,
  INCOMPAT_EXTL2,
  MAX_L1_BYTES,
  QCOW2_MAGIC,
  clusterSizeOf,
  parseHeader,
  serializeHeader,
} from './header';
import { COPIED, L1_RESERVED, OFFSET_MASK, type L2Entry, alignDown, decodeL2, l2Raw, subclusterBits } from './layout';
import { RawDisk, checkRange } from './raw';
import { Refcounts } from './refcount';
import { type InternalSnapshot, readSnapshotTable } from './snapshot-table';

export type { InternalSnapshot } from './snapshot-table';

export const DEFAULT_CLUSTER_SIZE = 65536;
export const DEFAULT_MAX_BACKING_DEPTH = 64;
/** L2 tables kept in memory at most (write-through, so eviction is free). */
const L2_CACHE_BYTES = 64 * 1024 * 1024;

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
}

export interface CreateOptions {
  /** Virtual size in bytes; defaults to the backing file's size. */
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

/** How one run of guest bytes of one layer is stored. */
type Segment =
  | { offset: number; length: number; kind: 'unallocated' | 'zero' }
  | { offset: number; length: number; kind: 'data'; host: number }
  | { offset: number; length: number; kind: 'compressed'; host: number; bytes: number; within: number };

/** A cluster a write touches, and what the write does to it. */
interface ClusterPlan {
  index: number; // guest cluster index
  l2Index: number;
  /** Byte range inside the cluster that gets written to the host. */
  from: number;
  to: number;
  content: Buffer; // bytes for [from, to)
  /** Existing host cluster to write into, or -1 for a new one. */
  host: number;
  /** The extended-L2 bitmap to store with the entry. */
  bitmap: bigint;
  /** Host clusters whose references this change drops (copy-on-write, compressed). */
  release: { first: number; count: number }[];
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
  private readonly l2Entries: number;
  private readonly entryBytes: number;
  private readonly l2Cache = new Map<number, Buffer>();
  private readonly maxCachedL2: number;
  /**
   * Host clusters in use, whatever the refcounts say (a damaged image can claim a used cluster is free):
   * metadata ('fixed': header, L1, refcount structures, snapshot table and L1s; 'l2': L2 tables) and, in a
   * bitmap, data clusters. Known only for writable images; nothing in them is ever handed out again.
   */
  private readonly metadata = new Map<number, 'fixed' | 'l2'>();
  private referenced = new Uint8Array(0);
  /** Data clusters referenced more than once: never written in place, whatever their refcount says. */
  private shared = new Set<number>();
  private autoclearCleared = false;
  /** Changes run one at a time: each waits for the one before (metadata updates must not interleave). */
  private changes: Promise<unknown> = Promise.resolve();
  private lastCompressed: { host: number; data: Buffer } | null = null;

  private constructor(
    readonly path: string,
    private file: ImageFile,
    readonly header: Header,
    private readonly l1: Buffer,
    private refcounts: Refcounts,
    readonly snapshots: InternalSnapshot[],
    public backing: Disk | null,
    readonly readOnly: boolean,
    /** The image was dirty when opened (its refcounts may be stale). */
    readonly wasDirty: boolean,
    private readonly ordering: 'crash-safe' | 'on-flush',
    /** @internal How the chain below was opened. */
    readonly chainOptions: { backing: boolean; maxBackingDepth: number },
  ) {
    this.clusterSize = clusterSizeOf(header);
    this.extendedL2 = (header.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
    this.entryBytes = this.extendedL2 ? 16 : 8;
    this.l2Entries = this.clusterSize / this.entryBytes;
    this.maxCachedL2 = Math.max(16, Math.floor(L2_CACHE_BYTES / this.clusterSize));
  }

  get size(): number {
    return this.header.size;
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

  static async open(path: string, options: OpenOptions = {}): Promise<Qcow2Image> {
    return openQcow2(resolve(path), options, 0, new Set());
  }

  /** @internal Opens one layer; the chain below is opened by openLayer. */
  static async openAt(path: string, options: OpenOptions, depth: number, seen: Set<string>): Promise<Qcow2Image> {
    const writable = options.writable ?? false;
    const file = await ImageFile.open(path, writable);
    try {
      const header = parseHeader(await readFirstCluster(file), file.size, path);
      const dirty = (header.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n;
      if (dirty && writable) {
        throw new ImageError('READ_ONLY', `${path} was not closed cleanly (dirty bit set); repair it with "vmsnap image check --repair" before writing to it.`, path);
      }
      const l1 = Buffer.alloc(header.l1Size * 8);
      await file.readExact(l1, header.l1TableOffset, 'L1 table');
      const ordering = options.writeOrdering ?? 'crash-safe';
      const barrier = ordering === 'crash-safe' ? () => file.sync() : async () => {};
      const refcounts = await Refcounts.load(file, clusterSizeOf(header), header.refcountOrder, header.refcountTableOffset, header.refcountTableClusters, barrier);
      const snapshots = await readSnapshotTable(file, header.snapshotsOffset, header.nbSnapshots, clusterSizeOf(header), header.size);
      const chainOptions = { backing: options.backing ?? true, maxBackingDepth: options.maxBackingDepth ?? DEFAULT_MAX_BACKING_DEPTH };
      const image = new Qcow2Image(path, file, header, l1, refcounts, snapshots, null, !writable, dirty, ordering, chainOptions);
      if (writable) await image.collectMetadata();
      if (header.backingFile !== null && chainOptions.backing) {
        image.backing = await openBacking(image, depth, seen);
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

  // ---- mapping -------------------------------------------------------------------------------------------

  private l1Entry(l1: Buffer, index: number): number {
    const raw = l1.readBigUInt64BE(index * 8);
    if (raw === 0n) return 0;
    if (raw & L1_RESERVED) this.damaged(`L1 entry ${index} has reserved bits set`);
    const off = Number(raw & OFFSET_MASK);
    if (off === 0) return 0;
    if (off % this.clusterSize !== 0) this.damaged(`L1 entry ${index} points at an unaligned L2 table`);
    if (off < this.clusterSize || off + this.clusterSize > this.file.size) this.damaged(`L1 entry ${index} points outside the file (offset ${off})`);
    return off;
  }

  private damaged(what: string): never {
    throw new ImageError('INVALID_IMAGE', `${this.path} is damaged: ${what}. Check it with "vmsnap image check".`, this.path);
  }

  private async l2Table(offset: number): Promise<Buffer> {
    let t = this.l2Cache.get(offset);
    if (t) return t;
    t = Buffer.alloc(this.clusterSize);
    await this.file.readExact(t, offset, 'L2 table');
    this.cacheL2(offset, t);
    return t;
  }

  private cacheL2(offset: number, table: Buffer): void {
    if (this.l2Cache.size >= this.maxCachedL2) {
      const oldest = this.l2Cache.keys().next().value;
      if (oldest !== undefined) this.l2Cache.delete(oldest);
    }
    this.l2Cache.set(offset, table);
  }

  private entry(table: Buffer, i: number): L2Entry {
    const e = decodeL2(table.readBigUInt64BE(i * this.entryBytes), this.header.clusterBits, this.extendedL2);
    if (e === 'reserved') this.damaged(`an L2 entry has reserved bits set`);
    if ((e.kind === 'data' || e.kind === 'zero') && e.host % this.clusterSize !== 0) this.damaged(`a data cluster at offset ${e.host} is not aligned`);
    if (e.kind === 'compressed' && (e.host >= this.file.size || e.host < this.clusterSize)) this.damaged(`a compressed cluster at offset ${e.host} lies outside the file`);
    return e;
  }

  private bitmap(table: Buffer, i: number): bigint {
    return this.extendedL2 ? table.readBigUInt64BE(i * 16 + 8) : 0n;
  }

  /** How [offset, offset + length) of this layer is stored, as merged runs. */
  private async segments(l1: Buffer, offset: number, length: number): Promise<Segment[]> {
    const out: Segment[] = [];
    const push = (s: Segment): void => {
      const last = out[out.length - 1];
      if (last && last.kind === s.kind && last.offset + last.length === s.offset) {
        if (s.kind === 'unallocated' || s.kind === 'zero') {
          last.length += s.length;
          return;
        }
        if (s.kind === 'data' && last.kind === 'data' && last.host + last.length === s.host) {
          last.length += s.length;
          return;
        }
      }
      out.push(s);
    };
    const cs = this.clusterSize;
    const sub = cs / 32;
    const end = offset + length;
    let pos = offset;
    while (pos < end) {
      const cluster = Math.floor(pos / cs);
      const l1i = Math.floor(cluster / this.l2Entries);
      const l2Off = l1i < l1.length / 8 ? this.l1Entry(l1, l1i) : 0;
      if (l2Off === 0) {
        const stop = Math.min(end, (l1i + 1) * this.l2Entries * cs);
        push({ offset: pos, length: stop - pos, kind: 'unallocated' });
        pos = stop;
        continue;
      }
      const table = await this.l2Table(l2Off);
      for (let i = cluster % this.l2Entries; i < this.l2Entries && pos < end; i++) {
        const base = (l1i * this.l2Entries + i) * cs;
        const stop = Math.min(end, base + cs);
        const e = this.entry(table, i);
        if (e.kind === 'compressed') {
          push({ offset: pos, length: stop - pos, kind: 'compressed', host: e.host, bytes: e.bytes, within: pos - base });
        } else if (!this.extendedL2) {
          if (e.kind === 'data') {
            if (e.host >= this.file.size) this.damaged(`the data cluster of guest offset ${base} lies past the end of the file (offset ${e.host})`);
            push({ offset: pos, length: stop - pos, kind: 'data', host: e.host + (pos - base) });
          }
          else push({ offset: pos, length: stop - pos, kind: e.kind });
        } else {
          const bitmap = this.bitmap(table, i);
          for (let p = pos; p < stop; ) {
            const si = Math.floor((p - base) / sub);
            const sEnd = Math.min(stop, base + (si + 1) * sub);
            const { allocated, zero } = subclusterBits(bitmap, si);
            if (allocated && zero) this.damaged(`subcluster ${si} of cluster ${base / cs} is both allocated and zero`);
            if (allocated) {
              if (e.kind !== 'data') this.damaged(`cluster ${base / cs} has allocated subclusters but no host cluster`);
              if (e.host >= this.file.size) this.damaged(`the data cluster of guest offset ${base} lies past the end of the file (offset ${e.host})`);
              push({ offset: p, length: sEnd - p, kind: 'data', host: e.host + (p - base) });
            } else {
              push({ offset: p, length: sEnd - p, kind: zero ? 'zero' : 'unallocated' });
            }
            p = sEnd;
          }
        }
        pos = stop;
      }
    }
    return out;
  }

  async layerMap(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    return this.layerMapWith(this.l1, offset, length);
  }

  /** @internal The allocation map through a given L1 table (the active one or an internal snapshot's). */
  async layerMapWith(l1: Buffer, offset: number, length: number): Promise<Extent[]> {
    return mergeExtents(await this.segments(l1, offset, length));
  }

  // ---- reading -------------------------------------------------------------------------------------------

  async read(buf: Buffer, offset: number): Promise<void> {
    checkRange(this, offset, buf.length);
    await this.readWith(this.l1, this.backing, buf, offset);
  }

  /** @internal Reads through a given L1 table (the active one or an internal snapshot's). */
  async readWith(l1: Buffer, backing: Disk | null, buf: Buffer, offset: number): Promise<void> {
    for (const s of await this.segments(l1, offset, buf.length)) {
      const dst = buf.subarray(s.offset - offset, s.offset - offset + s.length);
      switch (s.kind) {
        case 'data':
          await this.file.readPadded(dst, s.host);
          break;
        case 'zero':
          dst.fill(0);
          break;
        case 'compressed':
          (await this.decompress(s.host, s.bytes)).copy(dst, 0, s.within, s.within + s.length);
          break;
        case 'unallocated':
          await readBacking(backing, dst, s.offset);
          break;
      }
    }
  }

  private async decompress(host: number, bytes: number): Promise<Buffer> {
    if (this.lastCompressed?.host === host) return this.lastCompressed.data;
    const input = Buffer.alloc(Math.min(bytes, this.file.size - host));
    await this.file.readExact(input, host, 'compressed cluster');
    let data: Buffer;
    try {
      data = inflateRawSync(input, { maxOutputLength: this.clusterSize, finishFlush: zlibConstants.Z_SYNC_FLUSH });
    } catch {
      this.damaged(`the compressed cluster at offset ${host} does not decompress`);
    }
    if (data.length !== this.clusterSize) {
      if (data.length > this.clusterSize) this.damaged(`the compressed cluster at offset ${host} decompresses to the wrong size`);
      data = Buffer.concat([data, Buffer.alloc(this.clusterSize - data.length)]);
    }
    this.lastCompressed = { host, data };
    return data;
  }

  // ---- internal snapshots --------------------------------------------------------------------------------

  findSnapshot(idOrName: string): InternalSnapshot {
    const s = this.snapshots.find((x) => x.id === idOrName) ?? this.snapshots.find((x) => x.name === idOrName);
    if (!s) {
      const names = this.snapshots.map((x) => x.name).join(', ') || 'none';
      throw new ImageError('SNAPSHOT_NOT_FOUND', `${this.path} has no internal snapshot "${idOrName}" (it has: ${names}).`, this.path);
    }
    return s;
  }

  /** A read-only view of the disk as it was in an internal snapshot (by id or name). */
  async openSnapshot(idOrName: string): Promise<Disk> {
    const s = this.findSnapshot(idOrName);
    const l1 = Buffer.alloc(s.l1Size * 8);
    await this.file.readExact(l1, s.l1TableOffset, 'snapshot L1 table');
    const needed = Math.ceil(s.diskSize / this.clusterSize / this.l2Entries);
    if (s.l1Size < needed) this.damaged(`the L1 table of snapshot "${s.name}" is too small for its disk size`);
    return new SnapshotView(this, l1, s.diskSize);
  }

  // ---- writing -------------------------------------------------------------------------------------------

  private assertWritable(): void {
    if (this.readOnly) throw new ImageError('READ_ONLY', `${this.path} is open read-only.`, this.path);
  }

  private async barrier(): Promise<void> {
    if (this.ordering === 'crash-safe') await this.file.sync();
  }

  /** Records every cluster in use, so a damaged image can never make us write over one. */
  private async collectMetadata(): Promise<void> {
    const cs = this.clusterSize;
    const mark = (offset: number, bytes: number): void => {
      for (let c = Math.floor(offset / cs); c < Math.ceil((offset + bytes) / cs); c++) this.metadata.set(c, 'fixed');
    };
    const h = this.header;
    mark(0, cs);
    mark(h.l1TableOffset, h.l1Size * 8);
    mark(h.refcountTableOffset, h.refcountTableClusters * cs);
    for (const off of this.refcounts.blockOffsets()) mark(off, cs);
    if (h.nbSnapshots > 0) mark(h.snapshotsOffset, 1);
    const l1s = [this.l1];
    for (const s of this.snapshots) {
      mark(s.l1TableOffset, s.l1Size * 8);
      const l1 = Buffer.alloc(s.l1Size * 8);
      await this.file.readExact(l1, s.l1TableOffset, 'snapshot L1 table');
      l1s.push(l1);
    }
    this.referenced = new Uint8Array(Math.ceil(this.file.size / cs / 8) + 1);
    for (const l1 of l1s) {
      for (let i = 0; i < l1.length / 8; i++) {
        const off = this.l1Entry(l1, i);
        if (off === 0 || this.metadata.get(off / cs) === 'l2') continue;
        if (this.metadata.get(off / cs) === 'fixed') this.damaged(`L1 entry ${i} points at other metadata (offset ${off})`);
        this.metadata.set(off / cs, 'l2');
        const table = await this.l2Table(off);
        for (let j = 0; j < this.l2Entries; j++) {
          const e = this.entry(table, j);
          if (e.kind === 'data' || (e.kind === 'zero' && e.host !== 0)) this.markReferenced(e.host / cs, 1);
          else if (e.kind === 'compressed') {
            const r = releaseOf(e, cs);
            this.markReferenced(r.first, r.count);
          }
        }
      }
    }
  }

  private markReferenced(first: number, count: number): void {
    for (let c = first; c < first + count && c < this.referenced.length * 8; c++) {
      if (this.referenced[c >> 3]! & (1 << (c & 7))) this.shared.add(c);
      this.referenced[c >> 3]! |= 1 << (c & 7);
    }
  }

  private inUse(cluster: number): boolean {
    return this.metadata.has(cluster) || (cluster < this.referenced.length * 8 && (this.referenced[cluster >> 3]! & (1 << (cluster & 7))) !== 0);
  }

  private async allocate(count: number): Promise<number> {
    const first = await this.refcounts.allocate(count, (c) => this.inUse(c));
    return first * this.clusterSize;
  }

  /**
   * Host offsets for `count` new clusters, contiguous where possible. Runs stay shorter than one refcount
   * block's range, so a new refcount block (placed inside the range it counts) can never split every run.
   */
  private async allocateMany(count: number): Promise<number[]> {
    const most = Math.max(1, Math.floor(this.refcounts.entriesPerBlock / 2));
    const out: number[] = [];
    while (out.length < count) {
      const n = Math.min(most, count - out.length);
      const first = await this.allocate(n);
      for (let k = 0; k < n; k++) out.push(first + k * this.clusterSize);
    }
    return out;
  }

  /** The refcount of a cluster this layer references; zero would mean the image is damaged. */
  private async refcountOfUsed(host: number): Promise<number> {
    const n = await this.refcounts.get(host / this.clusterSize);
    if (n === 0) this.damaged(`the cluster at offset ${host} is in use but its refcount is 0`);
    return n;
  }

  /** A writer that does not understand an autoclear feature clears it before changing the image. */
  private async prepareWrite(): Promise<void> {
    this.assertWritable();
    if (this.header.backingFile !== null && this.backing === null) {
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
    if (dirSize > 64 * 1024 * 1024 || dirOffset % cs !== 0) this.damaged('the bitmap directory is invalid');
    const dir = Buffer.alloc(dirSize);
    await this.file.readExact(dir, dirOffset, 'bitmap directory');
    const out: number[] = [];
    for (let c = dirOffset / cs; c < Math.ceil((dirOffset + dirSize) / cs); c++) out.push(c);
    for (let at = 0, n = 0; at + 24 <= dir.length && n < ext.readUInt32BE(0); n++) {
      const tableOffset = Number(dir.readBigUInt64BE(at) & OFFSET_MASK);
      const tableEntries = dir.readUInt32BE(at + 8);
      const entrySize = 24 + dir.readUInt32BE(at + 20) + dir.readUInt16BE(at + 18);
      if (tableEntries * 8 > 64 * 1024 * 1024) this.damaged('a bitmap table is too large');
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

  /** Writes bytes at a guest offset (copy-on-write from the backing chain and from internal snapshots). */
  async write(data: Buffer, offset: number): Promise<void> {
    checkRange(this, offset, data.length);
    await this.serialized(() => this.writeNow(data, offset));
  }

  private async writeNow(data: Buffer, offset: number): Promise<void> {
    await this.prepareWrite();
    await this.forEachTableSlice(offset, data.length, (from, to) => this.writeSlice(data.subarray(from - offset, to - offset), from));
  }

  private serialized<T>(change: () => Promise<T>): Promise<T> {
    const next = this.changes.then(change, change);
    this.changes = next.catch(() => {});
    return next;
  }

  /** Makes a range read as zeros: zero clusters where the format allows, zero bytes elsewhere. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    checkRange(this, offset, length);
    await this.serialized(() => this.zeroNow(offset, length));
  }

  private async zeroNow(offset: number, length: number): Promise<void> {
    await this.prepareWrite();
    if (this.header.version === 2) {
      // No zero flag in version 2: write zero bytes, except where nothing below can show through.
      const extents = await this.layerMap(offset, length);
      const zeros = Buffer.alloc(Math.min(length, 4 * 1024 * 1024));
      for (const e of extents) {
        if (e.kind === 'unallocated' && this.header.backingFile === null) continue;
        for (let at = e.offset; at < e.offset + e.length; at += zeros.length) {
          await this.writeNow(zeros.subarray(0, Math.min(zeros.length, e.offset + e.length - at)), at);
        }
      }
      return;
    }
    await this.forEachTableSlice(offset, length, (from, to) => this.zeroSlice(from, to));
  }

  /** Splits a range at L2 table boundaries (each table is updated on its own). */
  private async forEachTableSlice(offset: number, length: number, fn: (from: number, to: number) => Promise<void>): Promise<void> {
    const span = this.l2Entries * this.clusterSize;
    for (let pos = offset; pos < offset + length; ) {
      const stop = Math.min(offset + length, (Math.floor(pos / span) + 1) * span);
      await fn(pos, stop);
      pos = stop;
    }
  }

  /** The L2 table for a guest offset, ready to be changed: allocated, or copied if an internal snapshot shares it. */
  private async writableTable(l1i: number): Promise<{ offset: number; table: Buffer; fresh: boolean; release: number }> {
    const current = this.l1Entry(this.l1, l1i);
    if (current !== 0 && (await this.refcountOfUsed(current)) === 1) {
      return { offset: current, table: await this.l2Table(current), fresh: false, release: 0 };
    }
    const table = current === 0 ? Buffer.alloc(this.clusterSize) : Buffer.from(await this.l2Table(current));
    const offset = await this.allocate(1);
    this.metadata.set(offset / this.clusterSize, 'l2');
    return { offset, table, fresh: true, release: current };
  }

  /** Points L1 at a table that was just written, then drops the reference to the table it replaced. */
  private async commitTable(l1i: number, t: { offset: number; table: Buffer; fresh: boolean; release: number }, rewrite: [number, number] | null): Promise<void> {
    if (t.fresh) {
      await this.file.write(t.table, t.offset);
      await this.barrier();
      this.l1.writeBigUInt64BE(BigInt(t.offset) | COPIED, l1i * 8);
      await this.file.write(this.l1.subarray(l1i * 8, l1i * 8 + 8), this.header.l1TableOffset + l1i * 8);
      this.cacheL2(t.offset, t.table);
      if (t.release !== 0) {
        await this.barrier();
        this.l2Cache.delete(t.release);
        await this.refcounts.update(t.release / this.clusterSize, 1, -1);
      }
    } else if (rewrite) {
      await this.file.write(t.table.subarray(rewrite[0] * this.entryBytes, rewrite[1] * this.entryBytes), t.offset + rewrite[0] * this.entryBytes);
    }
  }

  private async writeSlice(data: Buffer, offset: number): Promise<void> {
    const cs = this.clusterSize;
    const end = offset + data.length;
    const firstCluster = Math.floor(offset / cs);
    const l1i = Math.floor(firstCluster / this.l2Entries);
    // Plans are made from the current entries before anything changes (they also read old content to fill in).
    const current = this.l1Entry(this.l1, l1i);
    const oldTable = current === 0 ? null : await this.l2Table(current);
    const plans: ClusterPlan[] = [];
    for (let c = firstCluster; c * cs < end; c++) {
      const base = c * cs;
      const from = Math.max(offset, base) - base;
      const to = Math.min(end, base + cs) - base;
      plans.push(await this.planCluster(c, oldTable, from, to, data.subarray(base + from - offset, base + to - offset)));
    }
    await this.applyPlans(l1i, plans);
  }

  private async planCluster(index: number, table: Buffer | null, from: number, to: number, data: Buffer): Promise<ClusterPlan> {
    const cs = this.clusterSize;
    const l2Index = index % this.l2Entries;
    const e: L2Entry = table ? this.entry(table, l2Index) : { kind: 'unallocated' };
    const oldBitmap = table ? this.bitmap(table, l2Index) : 0n;
    const exclusive = (e.kind === 'data' || (e.kind === 'zero' && e.host !== 0)) && (await this.refcountOfUsed(e.host)) === 1;
    if (exclusive && (this.metadata.has(e.host / cs) || this.shared.has(e.host / cs))) {
      this.damaged(`the data cluster at offset ${e.host} is used more than its refcount says`);
    }
    const owned = releaseOf(e, cs);
    const release = !exclusive && owned.count > 0 ? [owned] : [];
    const host = exclusive && (e.kind === 'data' || e.kind === 'zero') ? e.host : -1;
    // The bytes [rFrom, rTo) of the cluster reach the host: whole clusters, or whole subclusters where the
    // extended L2 bitmap can say which parts are ours.
    let rFrom = 0;
    let rTo = cs;
    let bitmap = 0n;
    if (this.extendedL2) {
      const sub = cs / 32;
      const s0 = Math.floor(from / sub);
      const s1 = Math.ceil(to / sub);
      const touched = ((1n << BigInt(s1 - s0)) - 1n) << BigInt(s0);
      const keepBitmap = e.kind === 'unallocated' || e.kind === 'zero' || exclusive;
      if (keepBitmap) {
        rFrom = s0 * sub;
        rTo = s1 * sub;
        const alloc = (oldBitmap & 0xffff_ffffn) | touched;
        const zero = (oldBitmap >> 32n) & ~touched & 0xffff_ffffn;
        bitmap = alloc | (zero << 32n);
        // A subcluster already ours is written in place with no fill-in needed.
        if (exclusive && e.kind === 'data') {
          const allocated = oldBitmap & 0xffff_ffffn;
          if ((allocated & touched) === touched) {
            rFrom = from;
            rTo = to;
          }
        }
      } else {
        bitmap = 0xffff_ffffn; // a new private copy of the whole cluster
      }
    } else if (exclusive && e.kind === 'data') {
      rFrom = from;
      rTo = to;
    }
    // The caller's bytes go out as they are; only a partly covered region gets a buffer of its own, filled
    // in with what the disk reads there now.
    let content = data;
    if (rFrom < from || rTo > to) {
      content = Buffer.alloc(rTo - rFrom);
      const base = index * cs;
      const readTo = Math.min(rTo, this.size - base);
      if (readTo > rFrom) await this.read(content.subarray(0, readTo - rFrom), base + rFrom);
      data.copy(content, from - rFrom);
    }
    return { index, l2Index, from: rFrom, to: rTo, content, host, bitmap, release };
  }

  /** Writes planned clusters: new clusters and data first, then the table entries, then drops old references. */
  private async applyPlans(l1i: number, plans: ClusterPlan[]): Promise<void> {
    const cs = this.clusterSize;
    // The table first: a damaged one is refused before anything is allocated.
    const t = await this.writableTable(l1i);
    const fresh = plans.filter((p) => p.host < 0);
    if (fresh.length > 0) {
      const hosts = await this.allocateMany(fresh.length);
      fresh.forEach((p, k) => (p.host = hosts[k]!));
    }
    // Data: contiguous host runs go out in one write, without copying when the caller's buffer holds them.
    for (let i = 0; i < plans.length; ) {
      let j = i + 1;
      let adjacent = true;
      while (j < plans.length && plans[j]!.host === plans[j - 1]!.host + cs && plans[j - 1]!.to === cs && plans[j]!.from === 0) {
        const a = plans[j - 1]!.content;
        const b = plans[j]!.content;
        adjacent &&= a.buffer === b.buffer && a.byteOffset + a.length === b.byteOffset;
        j++;
      }
      const run = plans.slice(i, j);
      const first = run[0]!.content;
      const length = run.reduce((n, p) => n + p.content.length, 0);
      const buf = run.length === 1 ? first : adjacent ? Buffer.from(first.buffer, first.byteOffset, length) : Buffer.concat(run.map((p) => p.content));
      await this.file.write(buf, run[0]!.host + run[0]!.from);
      i = j;
    }
    await this.barrier();
    let lo = Infinity;
    let hi = -1;
    for (const p of plans) {
      this.setEntry(t.table, p.l2Index, l2Raw(p.host, true), p.bitmap);
      lo = Math.min(lo, p.l2Index);
      hi = Math.max(hi, p.l2Index + 1);
    }
    await this.commitTable(l1i, t, [lo, hi]);
    await this.releaseAll(plans.flatMap((p) => p.release));
  }

  private setEntry(table: Buffer, i: number, raw: bigint, bitmap: bigint): void {
    table.writeBigUInt64BE(raw, i * this.entryBytes);
    if (this.extendedL2) table.writeBigUInt64BE(bitmap, i * 16 + 8);
  }

  private async releaseAll(release: { first: number; count: number }[]): Promise<void> {
    if (release.length === 0) return;
    await this.barrier();
    for (const r of release) await this.refcounts.update(r.first, r.count, -1);
  }

  /** Version 3: whole clusters (or subclusters) become zero entries; partial ones are written as zero bytes. */
  private async zeroSlice(from: number, to: number): Promise<void> {
    const cs = this.clusterSize;
    const unit = this.extendedL2 ? cs / 32 : cs;
    const a = Math.ceil(from / unit) * unit;
    const b = Math.max(a, alignDown(to, unit));
    if (a >= b) {
      await this.writeNow(Buffer.alloc(to - from), from);
      return;
    }
    if (from < a) await this.writeNow(Buffer.alloc(a - from), from);
    if (b < to) await this.writeNow(Buffer.alloc(to - b), b);
    const l1i = Math.floor(a / (this.l2Entries * cs));
    if (this.extendedL2) await this.privatizePartlyZeroed(l1i, a, b);
    const current = this.l1Entry(this.l1, l1i);
    if (current === 0 && this.header.backingFile === null) return; // already reads as zeros
    const t = await this.writableTable(l1i);
    const release: { first: number; count: number }[] = [];
    let lo = Infinity;
    let hi = -1;
    for (let c = Math.floor(a / cs); c * cs < b; c++) {
      const i = c % this.l2Entries;
      const e = this.entry(t.table, i);
      const base = c * cs;
      const shared = e.kind === 'compressed' || ((e.kind === 'data' || e.kind === 'zero') && e.host !== 0 && (await this.refcountOfUsed(e.host)) !== 1);
      if (!this.extendedL2) {
        // A cluster only we use keeps its host cluster (preallocated zeros); a shared one is let go.
        const keep = !shared && (e.kind === 'data' || e.kind === 'zero') ? e.host : 0;
        if (shared) release.push(releaseOf(e, cs));
        this.setEntry(t.table, i, keep === 0 ? 1n : l2Raw(keep, true, true), 0n);
      } else {
        const s0 = Math.max(0, (a - base) / unit);
        const s1 = Math.min(32, (b - base) / unit);
        const mask = ((1n << BigInt(s1 - s0)) - 1n) << BigInt(s0);
        let bitmap = this.bitmap(t.table, i);
        let raw = t.table.readBigUInt64BE(i * 16);
        if (shared && mask === 0xffff_ffffn) {
          release.push(releaseOf(e, cs));
          raw = 0n;
          bitmap = 0xffff_ffffn << 32n;
        } else {
          bitmap = (bitmap & ~mask) | (mask << 32n);
        }
        this.setEntry(t.table, i, raw, bitmap);
      }
      lo = Math.min(lo, i);
      hi = Math.max(hi, i + 1);
    }
    if (hi < 0 && !t.fresh) return;
    await this.commitTable(l1i, t, hi < 0 ? null : [lo, hi]);
    await this.releaseAll(release);
  }

  /**
   * Extended L2: a shared or compressed cluster that is only partly zeroed first becomes a private copy (by
   * writing the zeros as data), so its other subclusters stay readable.
   */
  private async privatizePartlyZeroed(l1i: number, a: number, b: number): Promise<void> {
    const cs = this.clusterSize;
    const current = this.l1Entry(this.l1, l1i);
    if (current === 0) return;
    const table = await this.l2Table(current);
    for (let c = Math.floor(a / cs); c * cs < b; c++) {
      const base = c * cs;
      if (base >= a && base + cs <= b) continue;
      const e = this.entry(table, c % this.l2Entries);
      const shared = e.kind === 'compressed' || (e.kind === 'data' && (await this.refcountOfUsed(e.host)) !== 1);
      if (shared) {
        const from = Math.max(a, base);
        await this.writeNow(Buffer.alloc(Math.min(b, base + cs) - from), from);
      }
    }
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
      await this.backing?.close();
      this.backing = null;
      if (h.backingFile !== null) this.backing = await openBacking(this, 0, new Set());
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
    this.l2Cache.clear();
    this.metadata.clear();
    this.shared.clear();
    this.snapshots.length = 0;
    this.lastCompressed = null;
    await this.collectMetadata();
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
      await this.backing?.close();
    }
  }
}

/** The host clusters an entry holds a reference to (a compressed cluster may span two). */
function releaseOf(e: L2Entry, cs: number): { first: number; count: number } {
  if (e.kind === 'compressed') {
    const first = Math.floor(e.host / cs);
    return { first, count: Math.floor((e.host + e.bytes - 1) / cs) - first + 1 };
  }
  if ((e.kind === 'data' || e.kind === 'zero') && e.host !== 0) return { first: e.host / cs, count: 1 };
  return { first: 0, count: 0 };
}

function mergeExtents(segments: Segment[]): Extent[] {
  const out: Extent[] = [];
  for (const s of segments) {
    const kind = s.kind === 'compressed' ? 'data' : s.kind;
    const last = out[out.length - 1];
    if (last && last.kind === kind && last.offset + last.length === s.offset) last.length += s.length;
    else out.push({ offset: s.offset, length: s.length, kind });
  }
  return out;
}

/** Reads from a backing layer: zeros without one or past its end. */
async function readBacking(backing: Disk | null, dst: Buffer, offset: number): Promise<void> {
  const avail = backing ? Math.max(0, Math.min(dst.length, backing.size - offset)) : 0;
  if (avail < dst.length) dst.fill(0, avail);
  if (avail > 0) await backing!.read(dst.subarray(0, avail), offset);
}

/** A read-only view of an image as it was in one of its internal snapshots. */
class SnapshotView implements Disk {
  readonly format = 'qcow2' as const;
  constructor(
    private readonly image: Qcow2Image,
    private readonly l1: Buffer,
    readonly size: number,
  ) {}
  get path(): string {
    return this.image.path;
  }
  get backing(): Disk | null {
    return this.image.backing;
  }
  async read(buf: Buffer, offset: number): Promise<void> {
    checkRange(this, offset, buf.length);
    await this.image.readWith(this.l1, this.image.backing, buf, offset);
  }
  async layerMap(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    return this.image.layerMapWith(this.l1, offset, length);
  }
  async close(): Promise<void> {
    // The view borrows the image's file; closing the image closes it.
  }
}

// ---- chains --------------------------------------------------------------------------------------------

/** What a file holds, from its first bytes: qcow2 by its magic, anything else is raw. */
export async function probeFormat(path: string): Promise<'qcow2' | 'raw'> {
  let fh;
  try {
    // Look before opening: opening a FIFO would wait for a writer forever.
    const st = await stat(path);
    if (!st.isFile() && !st.isBlockDevice()) throw new ImageError('INVALID_ARGUMENT', `${path} is not a regular file.`, path);
    fh = await openFile(path, 'r');
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    return bytesRead === 4 && b.readUInt32BE(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
  } catch (e) {
    throw toImageError(e, path);
  } finally {
    await fh?.close();
  }
}

/** Opens a layer as the format it is declared (or probed) to be, with the chain below it. */
export async function openLayer(
  path: string,
  format: 'qcow2' | 'raw' | null,
  options: OpenOptions,
  depth: number,
  seen: Set<string>,
): Promise<Disk> {
  return (format ?? (await probeFormat(path))) === 'qcow2' ? openQcow2(path, options, depth, seen) : RawDisk.open(path, options.writable ?? false);
}

async function openQcow2(path: string, options: OpenOptions, depth: number, seen: Set<string>): Promise<Qcow2Image> {
  const real = await realpath(path).catch((e: unknown) => {
    throw toImageError(e, path);
  });
  if (seen.has(real)) {
    throw new ImageError('BACKING_LOOP', `The backing chain loops: ${path} is its own backing file (directly or through others).`, path);
  }
  seen.add(real);
  return Qcow2Image.openAt(path, options, depth, seen);
}

async function openBacking(image: Qcow2Image, depth: number, seen: Set<string>): Promise<Disk> {
  const name = image.backingFile!;
  const max = image.chainOptions.maxBackingDepth;
  if (depth + 1 > max) {
    throw new ImageError('BACKING_TOO_DEEP', `The backing chain of ${image.path} is deeper than ${max} layers.`, image.path);
  }
  const target = isAbsolute(name) ? name : resolve(dirname(image.path), name);
  const fmt = image.backingFormat;
  if (fmt !== null && fmt !== 'qcow2' && fmt !== 'raw') {
    throw new ImageError('UNSUPPORTED_FEATURE', `${image.path} has a backing file of format "${fmt}"; only qcow2 and raw are supported.`, image.path);
  }
  try {
    return await openLayer(target, fmt, { backing: true, maxBackingDepth: max }, depth + 1, seen);
  } catch (e) {
    const err = toImageError(e, target);
    if (err.code === 'NOT_FOUND') {
      throw new ImageError('BACKING_MISSING', `The backing file of ${image.path} is missing: ${target} (stored as "${name}").`, image.path);
    }
    throw err;
  }
}

/** How a backing file is named inside an overlay: relative to the overlay's folder. */
export function storedBackingName(imagePath: string, backingPath: string): string {
  return relative(dirname(resolve(imagePath)), resolve(backingPath)) || basename(backingPath);
}

// ---- creating ------------------------------------------------------------------------------------------

interface Layout {
  size: number;
  clusterBits: number;
  version: 2 | 3;
  extendedL2: boolean;
  backingFile: string | null;
  backingFormat: string | null;
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

async function createImage(path: string, options: CreateOptions): Promise<void> {
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
  const layout: Layout = { size, clusterBits, version, extendedL2, backingFile, backingFormat };
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

/** Writes a complete empty image: header, refcount table, refcount blocks, L1 table. */
async function writeNewImage(path: string, l: Layout, sync = true): Promise<void> {
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
  const header: Header = {
    version: l.version,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits: l.clusterBits,
    size: l.size,
    cryptMethod: 0,
    l1Size,
    l1TableOffset: (1 + tableClusters + blocks) * cs,
    refcountTableOffset: cs,
    refcountTableClusters: tableClusters,
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
