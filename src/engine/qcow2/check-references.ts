import type { FileHandle } from 'node:fs/promises';
import { EXT_BITMAPS, type Header } from './header';
import { entryOffset, hex, ProblemLog, readAt } from './check-io';
import { BlockState, type StoredRefcounts } from './check-refcounts';
import { MAX_SNAPSHOT_TABLE_BYTES, parseSnapshotTable } from './snapshot-table';

/** The geometry the walk needs, derived once from the header and the file size. */
export interface Layout {
  clusterBits: number;
  clusterSize: number;
  fileSize: number;
  /** Clusters the file spans (its size rounded up), as QEMU's nb_clusters. */
  clusters: number;
  extendedL2: boolean;
  /** Entries per L2 table. */
  l2Entries: number;
  /** The largest refcount an entry can hold. */
  refcountMax: number;
}

/** QEMU's limits: an L1 table of at most 32 MiB (the snapshot table's: snapshot-table.ts). */
const MAX_L1_ENTRIES = (32 * 1024 * 1024) / 8;
const MAX_SNAPSHOT_EXTRA = 1024;
const MAX_BITMAPS = 65535;
const MAX_BITMAP_DIRECTORY_BYTES = 64 * 1024 * 1024;
const MAX_BITMAP_TABLE_ENTRIES = (64 * 1024 * 1024) / 8;
const SATURATED = 0xffffffff;

/**
 * The refcount every host cluster should have, counted from the references found. One 32-bit counter per
 * cluster of the file; counts that do not fit are kept in a map (only a hostile image gets there).
 */
export class ExpectedRefcounts {
  private readonly counts: Uint32Array;
  private readonly large = new Map<number, number>();
  /** The highest cluster with at least one reference, or -1. */
  highest = -1;

  constructor(
    private readonly layout: Layout,
    private readonly log: ProblemLog,
  ) {
    // A reference may end inside the cluster after the last one (a partly written last cluster).
    this.counts = new Uint32Array(layout.clusters + 1);
  }

  get length(): number {
    return this.counts.length;
  }

  get(cluster: number): number {
    const c = this.counts[cluster] ?? 0;
    return c === SATURATED ? (this.large.get(cluster) ?? c) : c;
  }

  private set(cluster: number, value: number): void {
    if (value >= SATURATED) {
      this.counts[cluster] = SATURATED;
      this.large.set(cluster, value);
    } else {
      this.counts[cluster] = value;
    }
  }

  /** Counts `times` references to every cluster [offset, offset + size) touches. */
  add(offset: number, size: number, times: number, what: string): void {
    if (size <= 0 || times <= 0) return;
    const { clusterSize, fileSize } = this.layout;
    // As QEMU: a partly written last cluster is fine, a reference a whole cluster or more past EOF is not.
    if (offset + size - fileSize >= clusterSize) {
      this.log.corruption(`${what} at ${hex(offset)} (${size} bytes) lies past the end of the file (${fileSize} bytes)`, times);
      return;
    }
    const first = Math.floor(offset / clusterSize);
    const last = Math.floor((offset + size - 1) / clusterSize);
    for (let k = first; k <= last; k++) {
      const now = this.get(k);
      const room = this.layout.refcountMax - now;
      if (times > room) {
        this.log.corruption(`cluster ${hex(k * clusterSize)} is referenced more often than its refcount width can count`, times - room);
        this.set(k, this.layout.refcountMax);
      } else {
        this.set(k, now + times);
      }
      if (k > this.highest) this.highest = k;
    }
  }
}

export interface SnapshotEntry {
  id: string;
  name: string;
  l1Offset: number;
  l1Size: number;
}

/**
 * Reads the internal snapshot table as QEMU does. An entry that cannot be read ends the table: the entries
 * before it are returned with what is wrong (a corruption for the check, as qemu-img counts it).
 */
export async function readSnapshotTable(
  fh: FileHandle,
  h: Header,
  fileSize: number,
): Promise<{ snapshots: SnapshotEntry[]; tableBytes: number; problem: string | null }> {
  const snapshots: SnapshotEntry[] = [];
  let at = h.snapshotsOffset;
  let problem: string | null = null;
  for (let i = 0; i < h.nbSnapshots && problem === null; i++) {
    at = Math.ceil(at / 8) * 8;
    if (at + 40 > fileSize) {
      problem = `entry ${i} lies past the end of the file`;
      break;
    }
    const head = await readAt(fh, at, 40, fileSize);
    const idSize = head.readUInt16BE(12);
    const nameSize = head.readUInt16BE(14);
    const extraSize = head.readUInt32BE(36);
    const restAt = at + 40 + extraSize;
    const end = restAt + idSize + nameSize;
    if (extraSize > MAX_SNAPSHOT_EXTRA) problem = `entry ${i} has ${extraSize} bytes of extra data`;
    else if (end > fileSize) problem = `entry ${i} lies past the end of the file`;
    else if (end - h.snapshotsOffset > MAX_SNAPSHOT_TABLE_BYTES) problem = 'it is larger than 64 MiB';
    if (problem !== null) break;
    const strings = await readAt(fh, restAt, idSize + nameSize, fileSize);
    const hi = head.readUInt32BE(0);
    const lo = head.readUInt32BE(4);
    snapshots.push({
      l1Offset: hi * 0x100000000 + lo,
      l1Size: head.readUInt32BE(8),
      id: strings.toString('utf8', 0, idSize),
      name: strings.toString('utf8', idSize, idSize + nameSize),
    });
    at = end;
  }
  return { snapshots, tableBytes: snapshots.length > 0 ? at - h.snapshotsOffset : 0, problem };
}

interface L2Use {
  /** References from all L1 tables (active and snapshots). */
  times: number;
  /** References from the active L1 table (for the allocation figures). */
  active: number;
}

export interface WalkResult {
  /** The active L1 table, as stored. */
  activeL1: Buffer;
  allocatedClusters: number;
  snapshots: SnapshotEntry[];
}

/**
 * Counts every reference the image makes: header, active and snapshot L1 tables, their L2 tables and data
 * clusters, the snapshot table, the refcount table, and bitmaps. Shared tables (a snapshot's L1 or L2 tables the
 * active layer still uses) are read once and counted with their multiplicity, so the work is bounded by the
 * file's size however many times a hostile image refers to one table.
 */
export class ReferenceWalk {
  /** Bytes of L1/L2/bitmap tables read so far; distinct tables of a sane image fit in the file. */
  private budget: number;
  private allocated = 0;

  constructor(
    private readonly fh: FileHandle,
    private readonly h: Header,
    private readonly layout: Layout,
    private readonly expected: ExpectedRefcounts,
    private readonly log: ProblemLog,
  ) {
    this.budget = layout.fileSize + 64 * 1024 * 1024;
  }

  private spend(bytes: number, what: string): boolean {
    if (bytes > this.budget) {
      this.log.corruption(`${what}: the image refers to more table data than the file holds; the rest was not checked`);
      this.log.markIncomplete('the image refers to more table data than the file holds');
      return false;
    }
    this.budget -= bytes;
    return true;
  }

  async run(): Promise<WalkResult> {
    const { h, layout, expected, log } = this;
    expected.add(0, layout.clusterSize, 1, 'header');

    const l2Uses = new Map<number, L2Use>();
    const activeL1 = await readAt(this.fh, h.l1TableOffset, h.l1Size * 8, layout.fileSize);
    this.budget -= activeL1.length;
    this.collectL1(activeL1, h.l1TableOffset, h.l1Size, 1, true, l2Uses);

    const { snapshots, tableBytes, problem } = await readSnapshotTable(this.fh, h, layout.fileSize);
    await this.validateSnapshotTable(problem);
    // Snapshots sharing one L1 table are read once and counted with their multiplicity.
    const l1Groups = new Map<string, { offset: number; size: number; times: number }>();
    for (const sn of snapshots) {
      const label = `snapshot ${sn.id} (${sn.name})`;
      if (sn.l1Offset % layout.clusterSize !== 0) {
        log.corruption(`${label}: its L1 table at ${hex(sn.l1Offset)} is not cluster aligned`);
        log.markIncomplete(`the L1 table of ${label} is not cluster aligned`);
        continue;
      }
      if (sn.l1Size > MAX_L1_ENTRIES) {
        log.corruption(`${label}: its L1 table size ${sn.l1Size} is too large`);
        log.markIncomplete(`the L1 table of ${label} is too large`);
        continue;
      }
      if (sn.l1Size === 0) continue;
      const key = `${sn.l1Offset}:${sn.l1Size}`;
      const group = l1Groups.get(key);
      if (group) group.times++;
      else l1Groups.set(key, { offset: sn.l1Offset, size: sn.l1Size, times: 1 });
    }
    for (const g of l1Groups.values()) {
      if (!this.spend(g.size * 8, `snapshot L1 table at ${hex(g.offset)}`)) break;
      const table = await readAt(this.fh, g.offset, g.size * 8, layout.fileSize);
      this.collectL1(table, g.offset, g.size, g.times, false, l2Uses);
    }

    for (const [l2Offset, use] of [...l2Uses].sort((a, b) => a[0] - b[0])) {
      if (!(await this.walkL2(l2Offset, use))) break;
    }

    expected.add(h.snapshotsOffset, tableBytes, 1, 'snapshot table');
    expected.add(h.refcountTableOffset, h.refcountTableClusters * layout.clusterSize, 1, 'refcount table');
    await this.walkBitmaps();
    return { activeL1, allocatedClusters: this.allocated, snapshots };
  }

  private collectL1(table: Buffer, l1Offset: number, l1Size: number, times: number, active: boolean, l2Uses: Map<number, L2Use>): void {
    const what = active ? 'active L1 table' : 'snapshot L1 table';
    if (l1Size === 0) return;
    this.expected.add(l1Offset, l1Size * 8, times, what);
    for (let i = 0; i < l1Size; i++) {
      const hi = table.readUInt32BE(i * 8);
      const lo = table.readUInt32BE(i * 8 + 4);
      if (hi === 0 && lo === 0) continue;
      if ((hi & 0x7f000000) !== 0 || (lo & 0x1ff) !== 0) {
        this.log.corruption(`${what} entry ${i} has reserved bits set`, times);
      }
      const l2Offset = entryOffset(hi, lo);
      if (l2Offset === 0) {
        // QEMU would read the header as an L2 table here; there is nothing sane to count.
        this.log.corruption(`${what} entry ${i} has flags but no L2 table offset`, times);
        continue;
      }
      const use = l2Uses.get(l2Offset);
      if (use) {
        use.times += times;
        if (active) use.active++;
      } else {
        l2Uses.set(l2Offset, { times, active: active ? 1 : 0 });
      }
    }
  }

  /**
   * The snapshot table as opening the image validates it: damage that makes every other command refuse the
   * image is a corruption here, which a repair does not claim to fix (qemu-img -r all drops entries; we keep them).
   */
  private async validateSnapshotTable(unreadable: string | null): Promise<void> {
    const { h, layout, log } = this;
    if (h.nbSnapshots === 0) return;
    let problem = unreadable;
    if (problem === null) {
      const length = Math.max(0, Math.min(MAX_SNAPSHOT_TABLE_BYTES, layout.fileSize - h.snapshotsOffset));
      const buf = await readAt(this.fh, h.snapshotsOffset, length, layout.fileSize);
      problem = parseSnapshotTable(buf, h.nbSnapshots, layout.clusterSize, h.size, layout.fileSize, false).problem;
    }
    if (problem === null) return;
    log.corruption(`the internal snapshot table is damaged: ${problem}`);
    log.markIncomplete('the internal snapshot table is damaged');
  }

  /** Counts one L2 table and what it refers to; false when the reading budget ran out. */
  private async walkL2(l2Offset: number, use: L2Use): Promise<boolean> {
    const { layout, expected, log } = this;
    const { clusterSize, clusterBits, extendedL2 } = layout;
    const times = use.times;
    expected.add(l2Offset, clusterSize, times, 'L2 table');
    if (l2Offset % clusterSize !== 0) log.corruption(`L2 table at ${hex(l2Offset)} is not cluster aligned`, times);
    if (l2Offset >= layout.fileSize) return true; // reads as zeros: nothing to count
    if (!this.spend(clusterSize, `L2 table at ${hex(l2Offset)}`)) return false;
    const table = await readAt(this.fh, l2Offset, clusterSize, layout.fileSize);
    const entryBytes = extendedL2 ? 16 : 8;
    const csizeShift = 62 - (clusterBits - 8);
    const coffsetHiMask = 2 ** (csizeShift - 32) - 1;
    const csizeMask = 2 ** (clusterBits - 8) - 1;
    for (let i = 0; i < layout.l2Entries; i++) {
      const at = i * entryBytes;
      const hi = table.readUInt32BE(at);
      const lo = table.readUInt32BE(at + 4);
      const zeroMap = extendedL2 ? table.readUInt32BE(at + 8) : 0;
      const allocMap = extendedL2 ? table.readUInt32BE(at + 12) : 0;
      if (hi === 0 && lo === 0 && zeroMap === 0 && allocMap === 0) continue;
      const where = `L2 table ${hex(l2Offset)} entry ${i}`;
      const compressed = (hi & 0x40000000) !== 0;
      if (!compressed && ((hi & 0x3f000000) !== 0 || (lo & 0x1fe) !== 0)) {
        log.corruption(`${where} has reserved bits set`, times);
      }
      if (compressed) {
        const coffset = (hi & coffsetHiMask) * 0x100000000 + (lo >>> 0);
        if (hi & 0x80000000) log.corruption(`${where}: a compressed cluster (${hex(coffset)}) has the COPIED flag set`, times);
        if (zeroMap !== 0 || allocMap !== 0) {
          log.corruption(`${where}: a compressed cluster has a non-zero subcluster bitmap`, times);
          continue;
        }
        const sectors = ((hi >>> (csizeShift - 32)) & csizeMask) + 1;
        const csize = sectors * 512 - (coffset % 512);
        expected.add(coffset, csize, times, `compressed cluster (${where})`);
        this.allocated += use.active;
        continue;
      }
      const offset = entryOffset(hi, lo);
      const zeroFlag = !extendedL2 && (lo & 1) !== 0;
      // Reading refuses such an entry (QEMU too, though its check misses it): the image is unusable.
      if (zeroFlag && this.h.version < 3) log.corruption(`${where}: the version 3 zero flag is set in a version 2 image`, times);
      if (offset === 0) {
        // Unallocated or plain zero; with subclusters an unallocated cluster must not claim allocated ones.
        if (extendedL2 && allocMap !== 0) log.corruption(`${where}: an unallocated cluster has allocated subclusters`, times);
        continue;
      }
      if (extendedL2 && (zeroMap & allocMap) !== 0) {
        log.corruption(`${where}: the subcluster bitmap of ${hex(offset)} marks subclusters both allocated and zero`, times);
      }
      if (offset % clusterSize !== 0) {
        log.corruption(`${where}: ${zeroFlag ? 'preallocated zero' : 'data'} cluster ${hex(offset)} is not cluster aligned`, times);
      }
      this.allocated += use.active;
      expected.add(offset, clusterSize, times, `data cluster (${where})`);
    }
    return true;
  }

  /** Bitmaps are counted only when the image says they are consistent (autoclear bit 0), as QEMU does. */
  private async walkBitmaps(): Promise<void> {
    const { h, layout, expected, log } = this;
    const ext = h.otherExtensions.find((e) => e.type === EXT_BITMAPS);
    if (!ext || (h.autoclearFeatures & 1n) === 0n) return;
    const broken = (why: string): void => {
      log.corruption(`bitmaps: ${why}`);
      log.markIncomplete(`the bitmap directory cannot be read (${why})`);
    };
    if (ext.data.length < 24) return broken('the bitmaps header extension is too short');
    const count = ext.data.readUInt32BE(0);
    const dirSize = Number(ext.data.readBigUInt64BE(8));
    const dirOffset = Number(ext.data.readBigUInt64BE(16));
    if (count === 0) return;
    if (count > MAX_BITMAPS || dirSize > MAX_BITMAP_DIRECTORY_BYTES || dirOffset % layout.clusterSize !== 0 || dirOffset + dirSize > layout.fileSize) {
      return broken('the bitmap directory is out of bounds');
    }
    expected.add(dirOffset, dirSize, 1, 'bitmap directory');
    const dir = await readAt(this.fh, dirOffset, dirSize, layout.fileSize);
    let at = 0;
    for (let i = 0; i < count; i++) {
      if (at + 24 > dir.length) return broken(`bitmap directory entry ${i} is truncated`);
      const tableOffset = Number(dir.readBigUInt64BE(at));
      const tableSize = dir.readUInt32BE(at + 8);
      const nameSize = dir.readUInt16BE(at + 18);
      const extraSize = dir.readUInt32BE(at + 20);
      at += Math.ceil((24 + extraSize + nameSize) / 8) * 8;
      if (at > dir.length) return broken(`bitmap directory entry ${i} is truncated`);
      if (tableSize > MAX_BITMAP_TABLE_ENTRIES || tableOffset % layout.clusterSize !== 0) {
        log.corruption(`bitmap ${i}: its table at ${hex(tableOffset)} (${tableSize} entries) is invalid`);
        log.markIncomplete(`the table of bitmap ${i} is invalid`);
        continue;
      }
      expected.add(tableOffset, tableSize * 8, 1, `bitmap ${i} table`);
      if (tableSize === 0 || tableOffset >= layout.fileSize) continue;
      if (!this.spend(tableSize * 8, `bitmap ${i} table`)) return;
      const table = await readAt(this.fh, tableOffset, tableSize * 8, layout.fileSize);
      for (let j = 0; j < tableSize; j++) {
        const hi = table.readUInt32BE(j * 8);
        const lo = table.readUInt32BE(j * 8 + 4);
        const offset = entryOffset(hi, lo);
        const reserved = (hi & 0xff000000) !== 0 || (lo & 0x1fe) !== 0;
        if (reserved || (offset !== 0 && ((lo & 1) !== 0 || offset % layout.clusterSize !== 0))) {
          log.corruption(`bitmap ${i} table entry ${j} is invalid`);
          continue;
        }
        if (offset !== 0) expected.add(offset, layout.clusterSize, 1, `bitmap ${i} data`);
      }
    }
  }
}

/**
 * Counts the refcount blocks themselves and checks each table entry, as QEMU's check_refblocks: a block must
 * be aligned, inside the file, and referenced exactly once. Blocks that fail are not written by a repair.
 */
export function countRefcountBlocks(stored: StoredRefcounts, expected: ExpectedRefcounts, layout: Layout, log: ProblemLog): void {
  for (let i = 0; i < stored.tableEntries; i++) {
    const state = stored.states[i];
    if (state === BlockState.Absent) continue;
    const label = stored.describe(i);
    if (state === BlockState.Reserved) {
      log.corruption(`refcount table entry ${i} has reserved bits set`);
      stored.distrust(i);
      continue;
    }
    if (state === BlockState.Unaligned) {
      log.corruption(`${label} is not cluster aligned`);
      continue;
    }
    if (state === BlockState.OutsideImage) {
      log.corruption(`${label} lies past the end of the file`);
      continue;
    }
    const offset = stored.blockOffsets[i]!;
    expected.add(offset, layout.clusterSize, 1, label);
    const refs = expected.get(Math.floor(offset / layout.clusterSize));
    if (refs !== 1) {
      log.corruption(`${label} is referenced ${refs} times (it must be used only as a refcount block)`);
      stored.distrust(i);
    }
  }
}
