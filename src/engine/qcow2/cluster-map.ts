// Cluster mapping of one qcow2 layer (qcow2.txt, "Cluster mapping"): L1 and L2 entries validated and decoded
// into runs of guest bytes, the L2 table cache, and compressed clusters inflated. Reads only; the write path
// (cluster-write.ts) changes tables through the cache kept here.
import { constants as zlibConstants, inflateRawSync } from 'node:zlib';
import type { Disk, Extent } from './disk';
import { ImageError } from './errors';
import type { ImageFile } from './file';
import { type Header, INCOMPAT_EXTL2, clusterSizeOf } from './header';
import { L1_RESERVED, OFFSET_MASK, type L2Entry, decodeL2At, isZeroEntry, nextNonZeroEntry, subclusterBits } from './layout';

/** L2 tables kept in memory at most (write-through, so eviction is free). */
const L2_CACHE_BYTES = 64 * 1024 * 1024;

/** How one run of guest bytes of one layer is stored. */
type Segment =
  | { offset: number; length: number; kind: 'unallocated' | 'zero' }
  | { offset: number; length: number; kind: 'data'; host: number }
  | { offset: number; length: number; kind: 'compressed'; host: number; bytes: number; within: number };

/** Where the guest clusters of one layer live in its file, through the active L1 table or a snapshot's. */
export class ClusterMap {
  readonly clusterSize: number;
  readonly extendedL2: boolean;
  /** Entries in one L2 table. */
  readonly l2Entries: number;
  /** Bytes of one L2 entry: 8, or 16 with extended L2 (entry and subcluster bitmap). */
  readonly entryBytes: number;
  private readonly clusterBits: number;
  private readonly version: 2 | 3;
  private readonly l2Cache = new Map<number, Buffer>();
  private readonly maxCachedL2: number;
  private lastCompressed: { host: number; data: Buffer } | null = null;

  constructor(
    private readonly path: string,
    private readonly file: ImageFile,
    header: Header,
  ) {
    this.clusterBits = header.clusterBits;
    this.version = header.version;
    this.clusterSize = clusterSizeOf(header);
    this.extendedL2 = (header.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
    this.entryBytes = this.extendedL2 ? 16 : 8;
    this.l2Entries = this.clusterSize / this.entryBytes;
    this.maxCachedL2 = Math.max(16, Math.floor(L2_CACHE_BYTES / this.clusterSize));
  }

  /** The L2 table offset of an L1 entry (0: none), checked to lie inside the file. */
  l1Entry(l1: Buffer, index: number): number {
    if (isZeroEntry(l1, index * 8)) return 0;
    const raw = l1.readBigUInt64BE(index * 8);
    if (raw & L1_RESERVED) this.damaged(`L1 entry ${index} has reserved bits set`);
    const off = Number(raw & OFFSET_MASK);
    if (off === 0) return 0;
    if (off % this.clusterSize !== 0) this.damaged(`L1 entry ${index} points at an unaligned L2 table`);
    if (off < this.clusterSize || off + this.clusterSize > this.file.size) this.damaged(`L1 entry ${index} points outside the file (offset ${off})`);
    return off;
  }

  damaged(what: string): never {
    throw new ImageError('INVALID_IMAGE', `${this.path} is damaged: ${what}.`, this.path, 'damaged');
  }

  async l2Table(offset: number): Promise<Buffer> {
    let t = this.l2Cache.get(offset);
    if (t) return t;
    t = Buffer.alloc(this.clusterSize);
    await this.file.readExact(t, offset, 'L2 table');
    this.cacheL2(offset, t);
    return t;
  }

  /** Keeps a table just written (the cache is write-through: what it holds is what the file holds). */
  cacheL2(offset: number, table: Buffer): void {
    if (this.l2Cache.size >= this.maxCachedL2) {
      const oldest = this.l2Cache.keys().next().value;
      if (oldest !== undefined) this.l2Cache.delete(oldest);
    }
    this.l2Cache.set(offset, table);
  }

  /** Drops a table whose cluster was let go. */
  forgetL2(offset: number): void {
    this.l2Cache.delete(offset);
  }

  entry(table: Buffer, i: number): L2Entry {
    const e = decodeL2At(table, i * this.entryBytes, this.clusterBits, this.extendedL2);
    if (e === 'reserved') this.damaged(`an L2 entry has reserved bits set`);
    // Zero clusters are a version 3 feature: QEMU refuses them in a version 2 image as corruption.
    if (e.kind === 'zero' && this.version < 3) this.damaged(`an L2 entry of this version 2 image has the version 3 zero flag set`);
    if ((e.kind === 'data' || e.kind === 'zero') && e.host % this.clusterSize !== 0) this.damaged(`a data cluster at offset ${e.host} is not aligned`);
    if (e.kind === 'compressed' && (e.host >= this.file.size || e.host < this.clusterSize)) this.damaged(`a compressed cluster at offset ${e.host} lies outside the file`);
    return e;
  }

  /** The extended-L2 subcluster bitmap of an entry (0 without extended L2). */
  bitmap(table: Buffer, i: number): bigint {
    return this.extendedL2 ? table.readBigUInt64BE(i * 16 + 8) : 0n;
  }

  /** How [offset, offset + length) of this layer is stored, as merged runs. */
  private async segments(l1: Buffer, offset: number, length: number): Promise<Segment[]> {
    const out: Segment[] = [];
    // Runs that only extend the last segment create no object: a large image has many thousand clusters.
    const extend = (kind: 'unallocated' | 'zero' | 'data', offset: number, length: number, host: number): boolean => {
      const last = out[out.length - 1];
      if (!last || last.kind !== kind || last.offset + last.length !== offset) return false;
      if (kind === 'data' && (last as { host: number }).host + last.length !== host) return false;
      last.length += length;
      return true;
    };
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
        // Most entries of a large, sparse layer are zero (unallocated, bitmap empty): a run of them is one
        // unallocated segment, found without decoding each.
        const last = Math.min(this.l2Entries, i + Math.ceil((end - base) / cs));
        const nonZero = nextNonZeroEntry(table, i, last, this.entryBytes);
        if (nonZero > i) {
          const runStop = Math.min(end, (l1i * this.l2Entries + nonZero) * cs);
          if (!extend('unallocated', pos, runStop - pos, 0)) push({ offset: pos, length: runStop - pos, kind: 'unallocated' });
          pos = runStop;
          i = nonZero - 1;
          continue;
        }
        const e = this.entry(table, i);
        if (e.kind === 'compressed') {
          push({ offset: pos, length: stop - pos, kind: 'compressed', host: e.host, bytes: e.bytes, within: pos - base });
        } else if (!this.extendedL2) {
          if (e.kind === 'data') {
            if (e.host >= this.file.size) this.damaged(`the data cluster of guest offset ${base} lies past the end of the file (offset ${e.host})`);
            const host = e.host + (pos - base);
            if (!extend('data', pos, stop - pos, host)) push({ offset: pos, length: stop - pos, kind: 'data', host });
          } else if (!extend(e.kind, pos, stop - pos, 0)) push({ offset: pos, length: stop - pos, kind: e.kind });
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

  /** The allocation map through a given L1 table (the active one or an internal snapshot's). */
  async layerMap(l1: Buffer, offset: number, length: number): Promise<Extent[]> {
    return mergeExtents(await this.segments(l1, offset, length));
  }

  /** Reads through a given L1 table; what it leaves unallocated comes from `backing` (zeros without one). */
  async read(l1: Buffer, backing: Disk | null, buf: Buffer, offset: number): Promise<void> {
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
    // As QEMU: a stream cut short is an I/O error, never a cluster padded with zeros.
    if (data.length !== this.clusterSize) {
      this.damaged(`the compressed cluster at offset ${host} decompresses to ${data.length} bytes instead of ${this.clusterSize}`);
    }
    this.lastCompressed = { host, data };
    return data;
  }
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
