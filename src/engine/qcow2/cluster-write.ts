// The write path of one qcow2 layer: guest writes and zeroing become new or rewritten clusters, with
// copy-on-write from the backing chain and from internal snapshots. Follows the write ordering of qcow2.txt:
// refcounts and data reach the disk before the tables that point at them, so a crash leaves at worst leaked
// clusters.
import { type ClusterAllocator, type ClusterRun, releaseOf } from './allocation';
import type { ClusterMap } from './cluster-map';
import type { Disk } from './disk';
import type { ImageFile } from './file';
import type { Header } from './header';
import { COPIED, type L2Entry, alignDown, l2Raw } from './layout';

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
  release: ClusterRun[];
}

/** An L2 table about to change, and the table it replaces when it is a new copy. */
interface WritableTable {
  offset: number;
  table: Buffer;
  fresh: boolean;
  release: number;
}

/**
 * Changes the guest data of a writable layer. The caller runs one change at a time and has made the image
 * ready for writing (ranges checked, autoclear features cleared).
 */
export class ClusterWriter {
  private readonly clusterSize: number;
  private readonly l2Entries: number;
  private readonly entryBytes: number;
  private readonly extendedL2: boolean;

  constructor(
    /** The layer with its chain: fill-in for partly written clusters reads through it. */
    private readonly disk: Disk,
    private readonly file: ImageFile,
    private readonly header: Header,
    private readonly l1: Buffer,
    private readonly map: ClusterMap,
    private readonly allocator: ClusterAllocator,
    private readonly crashSafe: boolean,
  ) {
    this.clusterSize = map.clusterSize;
    this.l2Entries = map.l2Entries;
    this.entryBytes = map.entryBytes;
    this.extendedL2 = map.extendedL2;
  }

  private async barrier(): Promise<void> {
    if (this.crashSafe) await this.file.sync();
  }

  /** Writes bytes at a guest offset. */
  async write(data: Buffer, offset: number): Promise<void> {
    await this.forEachTableSlice(offset, data.length, (from, to) => this.writeSlice(data.subarray(from - offset, to - offset), from));
  }

  /** Makes a range read as zeros: zero clusters where the format allows, zero bytes elsewhere. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    if (this.header.version === 2) {
      // No zero flag in version 2: write zero bytes, except where nothing below can show through.
      const extents = await this.map.layerMap(this.l1, offset, length);
      const zeros = Buffer.alloc(Math.min(length, 4 * 1024 * 1024));
      for (const e of extents) {
        if (e.kind === 'unallocated' && this.header.backingFile === null) continue;
        for (let at = e.offset; at < e.offset + e.length; at += zeros.length) {
          await this.write(zeros.subarray(0, Math.min(zeros.length, e.offset + e.length - at)), at);
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
  private async writableTable(l1i: number): Promise<WritableTable> {
    const current = this.map.l1Entry(this.l1, l1i);
    if (current !== 0 && (await this.allocator.refcountOfUsed(current)) === 1) {
      return { offset: current, table: await this.map.l2Table(current), fresh: false, release: 0 };
    }
    const table = current === 0 ? Buffer.alloc(this.clusterSize) : Buffer.from(await this.map.l2Table(current));
    const offset = await this.allocator.allocate(1);
    this.allocator.markL2(offset);
    return { offset, table, fresh: true, release: current };
  }

  /** Points L1 at a table that was just written, then drops the reference to the table it replaced. */
  private async commitTable(l1i: number, t: WritableTable, rewrite: [number, number] | null): Promise<void> {
    if (t.fresh) {
      await this.file.write(t.table, t.offset);
      await this.barrier();
      this.l1.writeBigUInt64BE(BigInt(t.offset) | COPIED, l1i * 8);
      await this.file.write(this.l1.subarray(l1i * 8, l1i * 8 + 8), this.header.l1TableOffset + l1i * 8);
      this.map.cacheL2(t.offset, t.table);
      if (t.release !== 0) {
        await this.barrier();
        this.map.forgetL2(t.release);
        await this.allocator.release({ first: t.release / this.clusterSize, count: 1 });
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
    const current = this.map.l1Entry(this.l1, l1i);
    const oldTable = current === 0 ? null : await this.map.l2Table(current);
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
    const e: L2Entry = table ? this.map.entry(table, l2Index) : { kind: 'unallocated' };
    const oldBitmap = table ? this.map.bitmap(table, l2Index) : 0n;
    const exclusive =
      (e.kind === 'data' || (e.kind === 'zero' && e.host !== 0)) &&
      (await this.allocator.refcountOfUsed(e.host)) === 1 &&
      this.allocator.writableInPlace(e.host / cs);
    if (exclusive && this.allocator.usedElsewhere(e.host / cs)) {
      this.map.damaged(`the data cluster at offset ${e.host} is used more than its refcount says`);
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
      const readTo = Math.min(rTo, this.disk.size - base);
      if (readTo > rFrom) await this.disk.read(content.subarray(0, readTo - rFrom), base + rFrom);
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
      const hosts = await this.allocator.allocateMany(fresh.length);
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

  private async releaseAll(release: ClusterRun[]): Promise<void> {
    if (release.length === 0) return;
    await this.barrier();
    // Neighbouring clusters (a copy-on-write of a whole range) go in one refcount update.
    const runs = release.filter((r) => r.count > 0).sort((a, b) => a.first - b.first);
    for (let i = 0; i < runs.length; ) {
      let j = i + 1;
      let end = runs[i]!.first + runs[i]!.count;
      while (j < runs.length && runs[j]!.first === end) end += runs[j++]!.count;
      await this.allocator.release({ first: runs[i]!.first, count: end - runs[i]!.first });
      i = j;
    }
  }

  /** Version 3: whole clusters (or subclusters) become zero entries; partial ones are written as zero bytes. */
  private async zeroSlice(from: number, to: number): Promise<void> {
    const cs = this.clusterSize;
    const unit = this.extendedL2 ? cs / 32 : cs;
    const a = Math.ceil(from / unit) * unit;
    const b = Math.max(a, alignDown(to, unit));
    if (a >= b) {
      await this.write(Buffer.alloc(to - from), from);
      return;
    }
    if (from < a) await this.write(Buffer.alloc(a - from), from);
    if (b < to) await this.write(Buffer.alloc(to - b), b);
    const l1i = Math.floor(a / (this.l2Entries * cs));
    if (this.extendedL2) await this.privatizePartlyZeroed(l1i, a, b);
    const current = this.map.l1Entry(this.l1, l1i);
    if (current === 0 && this.header.backingFile === null) return; // already reads as zeros
    const t = await this.writableTable(l1i);
    const release: ClusterRun[] = [];
    let lo = Infinity;
    let hi = -1;
    for (let c = Math.floor(a / cs); c * cs < b; c++) {
      const i = c % this.l2Entries;
      const e = this.map.entry(t.table, i);
      const base = c * cs;
      const shared = e.kind === 'compressed' || ((e.kind === 'data' || e.kind === 'zero') && e.host !== 0 && (await this.allocator.refcountOfUsed(e.host)) !== 1);
      if (!this.extendedL2) {
        // A cluster only we use keeps its host cluster (preallocated zeros); a shared one is let go.
        const keep = !shared && (e.kind === 'data' || e.kind === 'zero') ? e.host : 0;
        if (shared) release.push(releaseOf(e, cs));
        this.setEntry(t.table, i, keep === 0 ? 1n : l2Raw(keep, true, true), 0n);
      } else {
        const s0 = Math.max(0, (a - base) / unit);
        const s1 = Math.min(32, (b - base) / unit);
        const mask = ((1n << BigInt(s1 - s0)) - 1n) << BigInt(s0);
        let bitmap = this.map.bitmap(t.table, i);
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
    const current = this.map.l1Entry(this.l1, l1i);
    if (current === 0) return;
    const table = await this.map.l2Table(current);
    for (let c = Math.floor(a / cs); c * cs < b; c++) {
      const base = c * cs;
      if (base >= a && base + cs <= b) continue;
      const e = this.map.entry(table, c % this.l2Entries);
      const shared = e.kind === 'compressed' || (e.kind === 'data' && (await this.allocator.refcountOfUsed(e.host)) !== 1);
      if (shared) {
        const from = Math.max(a, base);
        await this.write(Buffer.alloc(Math.min(b, base + cs) - from), from);
      }
    }
  }
}
