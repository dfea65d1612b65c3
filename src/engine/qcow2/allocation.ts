// Which host clusters a writable layer uses, and handing out new ones. The refcounts say what is free, but a
// damaged image can claim a used cluster is free: every cluster found in use when the image opened is never
// handed out again, whatever its refcount.
import type { ImageFile } from './file';
import type { Header } from './header';
import type { ClusterMap } from './cluster-map';
import { nextNonZeroEntry, type L2Entry } from './layout';
import type { Refcounts } from './refcount';
import type { InternalSnapshot } from './snapshot-table';

/** A run of host clusters, by cluster index. */
export interface ClusterRun {
  first: number;
  count: number;
}

export class ClusterAllocator {
  /**
   * Host clusters in use: metadata ('fixed': header, L1, refcount structures, snapshot table and L1s; 'l2': L2
   * tables) and, in a bitmap, data clusters. Filled in by collect() (writable images only).
   */
  private readonly metadata = new Map<number, 'fixed' | 'l2'>();
  private referenced = new Uint8Array(0);
  /** Data clusters referenced more than once: never written in place, whatever their refcount says. */
  private readonly shared = new Set<number>();
  private readonly clusterSize: number;

  constructor(
    private readonly file: ImageFile,
    private readonly map: ClusterMap,
    private readonly refcounts: Refcounts,
    /** Data clusters referenced when the image opened are never written in place (OpenOptions.copyOnWrite). */
    private readonly copyOnWrite = false,
  ) {
    this.clusterSize = map.clusterSize;
  }

  /** Records every cluster in use, so a damaged image can never make us write over one. */
  async collect(header: Header, activeL1: Buffer, snapshots: readonly InternalSnapshot[]): Promise<void> {
    const cs = this.clusterSize;
    const mark = (offset: number, bytes: number): void => {
      for (let c = Math.floor(offset / cs); c < Math.ceil((offset + bytes) / cs); c++) this.metadata.set(c, 'fixed');
    };
    const h = header;
    mark(0, cs);
    mark(h.l1TableOffset, h.l1Size * 8);
    mark(h.refcountTableOffset, h.refcountTableClusters * cs);
    for (const off of this.refcounts.blockOffsets()) mark(off, cs);
    if (h.nbSnapshots > 0) mark(h.snapshotsOffset, 1);
    const l1s = [activeL1];
    for (const s of snapshots) {
      mark(s.l1TableOffset, s.l1Size * 8);
      const l1 = Buffer.alloc(s.l1Size * 8);
      await this.file.readExact(l1, s.l1TableOffset, 'snapshot L1 table');
      l1s.push(l1);
    }
    this.referenced = new Uint8Array(Math.ceil(this.file.size / cs / 8) + 1);
    const map = this.map;
    for (const l1 of l1s) {
      for (let i = 0; i < l1.length / 8; i++) {
        const off = map.l1Entry(l1, i);
        if (off === 0 || this.metadata.get(off / cs) === 'l2') continue;
        if (this.metadata.get(off / cs) === 'fixed') map.damaged(`L1 entry ${i} points at other metadata (offset ${off})`);
        this.metadata.set(off / cs, 'l2');
        const table = await map.l2Table(off);
        // Most entries of a sparse layer are zero: skipped a run at a time, not decoded one by one.
        for (let j = nextNonZeroEntry(table, 0, map.l2Entries, map.entryBytes); j < map.l2Entries; j = nextNonZeroEntry(table, j + 1, map.l2Entries, map.entryBytes)) {
          const e = map.entry(table, j);
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

  /** Whether a data cluster whose refcount is 1 may be written in place. */
  writableInPlace(cluster: number): boolean {
    return !this.copyOnWrite || cluster >= this.referenced.length * 8 || (this.referenced[cluster >> 3]! & (1 << (cluster & 7))) === 0;
  }

  /** A data cluster that is metadata or referenced twice (so its refcount of 1 is wrong). */
  usedElsewhere(cluster: number): boolean {
    return this.metadata.has(cluster) || this.shared.has(cluster);
  }

  /** Marks a host cluster as holding a new L2 table. */
  markL2(host: number): void {
    this.metadata.set(host / this.clusterSize, 'l2');
  }

  /** The host offset of `count` new contiguous clusters. */
  async allocate(count: number): Promise<number> {
    const first = await this.refcounts.allocate(count, (c) => this.inUse(c));
    return first * this.clusterSize;
  }

  /**
   * Host offsets for `count` new clusters, contiguous where possible. Runs stay shorter than one refcount
   * block's range, so a new refcount block (placed inside the range it counts) can never split every run.
   */
  async allocateMany(count: number): Promise<number[]> {
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
  async refcountOfUsed(host: number): Promise<number> {
    const n = await this.refcounts.get(host / this.clusterSize);
    if (n === 0) this.map.damaged(`the cluster at offset ${host} is in use but its refcount is 0`);
    return n;
  }

  /** Drops one reference to each cluster of a run. */
  async release(run: ClusterRun): Promise<void> {
    // A cluster in use when the image opened is never handed out again while it is open.
    await this.refcounts.update(run.first, run.count, -1, !this.inUse(run.first) || !this.inUse(run.first + run.count - 1));
  }
}

/** The host clusters an entry holds a reference to (a compressed cluster may span two). */
export function releaseOf(e: L2Entry, cs: number): ClusterRun {
  if (e.kind === 'compressed') {
    const first = Math.floor(e.host / cs);
    return { first, count: Math.floor((e.host + e.bytes - 1) / cs) - first + 1 };
  }
  if ((e.kind === 'data' || e.kind === 'zero') && e.host !== 0) return { first: e.host / cs, count: 1 };
  return { first: 0, count: 0 };
}
