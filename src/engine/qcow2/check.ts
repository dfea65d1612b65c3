// Consistency check and repair of a qcow2 image, read straight from the file (not through Qcow2Image), so it
// also works on images that cannot be opened for writing. It follows QEMU's `qemu-img check`: count every
// reference, compare with the stored refcounts, then check the COPIED flags of the active tables.
import { open, type FileHandle } from 'node:fs/promises';
import { ImageError, isImageError, toImageError } from './errors';
import { INCOMPAT_CORRUPT, INCOMPAT_DIRTY, INCOMPAT_EXTL2, parseHeader, type Header } from './header';
import { entryOffset, hex, ProblemLog, readAt, writeAt } from './check-io';
import { BlockState, refcountMax, StoredRefcounts } from './check-refcounts';
import { countRefcountBlocks, ExpectedRefcounts, type Layout, ReferenceWalk } from './check-references';

export interface CheckOptions {
  /** Fix leaks, refcounts that are too low, COPIED flags, and clear the dirty/corrupt bits when all is well. */
  repair?: boolean;
}

export interface CheckResult {
  /** Problems left after the call: refcounts below their references, malformed entries, wrong COPIED flags. */
  corruptions: number;
  /** Clusters left whose refcount is above their references (wasted space, harmless). */
  leaks: number;
  repairedLeaks: number;
  repairedCorruptions: number;
  /** One readable line per problem found (a repaired one starts with "repaired: "). */
  errors: string[];
  /** Data clusters the active layer maps (as qemu-img check's allocated-clusters). */
  allocatedClusters: number;
  /** Clusters of the virtual disk. */
  totalClusters: number;
  /** End of the last cluster that is referenced or has a refcount. */
  imageEndOffset: number;
  /** The dirty bit (lazy refcounts not written back) as the image has it after the call. */
  dirty: boolean;
  /** The corrupt bit as the image has it after the call. */
  markedCorrupt: boolean;
}

/** 2^25 clusters: the counters then take at most 128 MiB (a 2 TiB file at the default cluster size). */
const MAX_CLUSTERS = 2 ** 25;
/** The header cluster is read whole (extensions live there), but never more than the largest cluster. */
const MAX_HEADER_CLUSTER = 2 * 1024 * 1024;

/** The exit status of `qemu-img check`: 0 clean, 2 corruptions, 3 leaks only. */
export function checkExitStatus(result: CheckResult): 0 | 2 | 3 {
  if (result.corruptions > 0) return 2;
  if (result.leaks > 0) return 3;
  return 0;
}

/**
 * Checks an image's metadata; with `repair`, fixes what can be fixed in place and checks again, reporting what
 * remains. Never writes without `repair`. Throws an ImageError when the header cannot be parsed or the file
 * cannot be read.
 */
export async function check(path: string, options: CheckOptions = {}): Promise<CheckResult> {
  const repair = options.repair === true;
  let fh: FileHandle;
  try {
    fh = await open(path, repair ? 'r+' : 'r');
  } catch (e) {
    throw toImageError(e, path);
  }
  try {
    const first = await checkOnce(fh, path, repair);
    const errors = first.log.finish();
    let last = first;
    if (first.wrote) {
      // As qemu-img does: check the repaired image again, so the figures reported are the real ones.
      last = await checkOnce(fh, path, false);
      if (last.log.corruptions > 0 || last.log.leaks > 0) errors.push(...last.log.finish().map((l) => `after repair: ${l}`));
    }
    let { dirty, markedCorrupt } = last;
    if (repair && (dirty || markedCorrupt)) {
      if (last.log.corruptions === 0) {
        await clearHeaderBits(fh, last.header);
        dirty = false;
        markedCorrupt = false;
      } else {
        errors.push(`the ${dirty ? 'dirty' : 'corrupt'} bit stays set because ${last.log.corruptions} corruptions remain`);
      }
    }
    return {
      corruptions: last.log.corruptions,
      leaks: last.log.leaks,
      repairedLeaks: first.repairedLeaks,
      repairedCorruptions: first.repairedCorruptions,
      errors,
      allocatedClusters: last.allocatedClusters,
      totalClusters: last.totalClusters,
      imageEndOffset: last.imageEndOffset,
      dirty,
      markedCorrupt,
    };
  } catch (e) {
    throw toImageError(e, path);
  } finally {
    await fh.close();
  }
}

interface Pass {
  header: Header;
  log: ProblemLog;
  wrote: boolean;
  repairedLeaks: number;
  repairedCorruptions: number;
  allocatedClusters: number;
  totalClusters: number;
  imageEndOffset: number;
  dirty: boolean;
  markedCorrupt: boolean;
}

/** Parses the header; an image marked corrupt is still checked (that is how it gets repaired). */
function parseCheckedHeader(buf: Buffer, fileSize: number, path: string): { header: Header; markedCorrupt: boolean } {
  try {
    return { header: parseHeader(buf, fileSize, path, true), markedCorrupt: false };
  } catch (e) {
    if (!isImageError(e) || e.code !== 'MARKED_CORRUPT') throw e;
    const copy = Buffer.from(buf);
    copy.writeBigUInt64BE(copy.readBigUInt64BE(72) & ~INCOMPAT_CORRUPT, 72);
    return { header: parseHeader(copy, fileSize, path, true), markedCorrupt: true };
  }
}

async function checkOnce(fh: FileHandle, path: string, repair: boolean): Promise<Pass> {
  const fileSize = (await fh.stat()).size;
  const bits = (await readAt(fh, 0, 24, fileSize)).readUInt32BE(20);
  const headerBytes = bits >= 9 && bits <= 21 ? 2 ** bits : 512; // a bad cluster_bits is parseHeader's to report
  const probe = await readAt(fh, 0, Math.min(headerBytes, MAX_HEADER_CLUSTER, fileSize), fileSize);
  const { header: h, markedCorrupt } = parseCheckedHeader(probe, fileSize, path);
  const clusterSize = 2 ** h.clusterBits;
  const clusters = Math.ceil(fileSize / clusterSize);
  if (clusters > MAX_CLUSTERS) {
    throw new ImageError(
      'INVALID_IMAGE',
      `${path} spans ${clusters} clusters of ${clusterSize} bytes, more than the ${MAX_CLUSTERS} this check can hold in memory; check it with "qemu-img check".`,
      path,
    );
  }
  const extendedL2 = (h.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
  const layout: Layout = {
    clusterBits: h.clusterBits,
    clusterSize,
    fileSize,
    clusters,
    extendedL2,
    l2Entries: clusterSize / (extendedL2 ? 16 : 8),
    refcountMax: refcountMax(h.refcountOrder),
  };
  const log = new ProblemLog();
  const expected = new ExpectedRefcounts(layout, log);
  const stored = await StoredRefcounts.load(
    fh,
    h.clusterBits,
    h.refcountOrder,
    h.refcountTableOffset,
    h.refcountTableClusters * clusterSize,
    fileSize,
    expected.length,
  );
  const walk = await new ReferenceWalk(fh, h, layout, expected, log).run();
  countRefcountBlocks(stored, expected, layout, log);

  const fixed = { leaks: 0, corruptions: 0 };
  const { highest, missing } = compareRefcounts(stored, expected, layout, log, repair, fixed);
  if (missing.length > 0) await addMissingBlocks(stored, expected, layout, log, missing, fixed);
  const refcountsChanged = fixed.leaks + fixed.corruptions > 0;
  await stored.flush();
  const copied = await checkCopiedFlags(fh, h, layout, stored, expected, walk.activeL1, log, repair);
  fixed.corruptions += copied.fixed;

  return {
    header: h,
    log,
    wrote: refcountsChanged || copied.fixed > 0,
    repairedLeaks: fixed.leaks,
    repairedCorruptions: fixed.corruptions,
    allocatedClusters: walk.allocatedClusters,
    totalClusters: Math.ceil((Math.floor(h.size / 512) * 512) / clusterSize),
    imageEndOffset: (highest + 1) * clusterSize,
    dirty: (h.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n,
    markedCorrupt,
  };
}

/**
 * Compares stored and expected refcounts cluster by cluster (QEMU's compare_refcounts). With `repair`, fixes in
 * place what its refcount block allows; clusters whose block is missing are returned for addMissingBlocks.
 */
function compareRefcounts(
  stored: StoredRefcounts,
  expected: ExpectedRefcounts,
  layout: Layout,
  log: ProblemLog,
  repair: boolean,
  fixed: { leaks: number; corruptions: number },
): { highest: number; missing: number[] } {
  const { clusterSize } = layout;
  const end = Math.max(layout.clusters, expected.highest + 1);
  const fixLeaks = repair && log.incomplete.length === 0;
  if (repair && !fixLeaks) log.line(`leaks are not repaired: ${log.incomplete.join('; ')}`);
  const unreadable = new Set<number>();
  const missing: number[] = [];
  let highest = 0;
  for (let k = 0; k < end; k++) {
    const have = stored.get(k);
    const want = expected.get(k);
    if (have < 0) {
      const block = Math.floor(k / stored.entriesPerBlock);
      if (!unreadable.has(block)) {
        unreadable.add(block);
        log.line(`the refcounts of the clusters ${stored.describe(block)} covers cannot be read`);
      }
      continue;
    }
    if (have > 0 || want > 0) highest = k;
    if (have === want) continue;
    const line = `cluster ${hex(k * clusterSize)} refcount ${have}, referenced ${want}`;
    if (have > want) {
      if (fixLeaks && stored.writable(k)) {
        stored.set(k, want);
        fixed.leaks++;
        log.line(`repaired: ${line} (leaked)`);
      } else {
        log.leaks++;
        log.line(`${line} (leaked)`);
      }
    } else if (repair && stored.writable(k)) {
      stored.set(k, want);
      fixed.corruptions++;
      log.line(`repaired: ${line}`);
    } else if (repair && isAbsent(stored, k)) {
      missing.push(k);
    } else {
      log.corruption(line);
    }
  }
  return { highest, missing };
}

function isAbsent(stored: StoredRefcounts, cluster: number): boolean {
  const index = Math.floor(cluster / stored.entriesPerBlock);
  return index >= stored.tableEntries || stored.states[index] === BlockState.Absent;
}

/**
 * Gives clusters whose refcount block is missing a new block at the end of the file (each new block counts
 * itself, and may need a block of its own). Refused, and reported, when the refcount table has no room.
 */
async function addMissingBlocks(
  stored: StoredRefcounts,
  expected: ExpectedRefcounts,
  layout: Layout,
  log: ProblemLog,
  missing: number[],
  fixed: { leaks: number; corruptions: number },
): Promise<void> {
  const perBlock = stored.entriesPerBlock;
  const line = (k: number): string => `cluster ${hex(k * layout.clusterSize)} refcount 0, referenced ${expected.get(k)}`;
  const unfixable = (k: number, why: string): void => log.corruption(`${line(k)} (not repairable: ${why})`);
  const wanted = [...new Set(missing.map((k) => Math.floor(k / perBlock)))];
  const blocks = new Map<number, number>(); // table index -> cluster of its new block
  let next = Math.max(layout.clusters, expected.highest + 1);
  let failure: string | null = null;
  const queue = wanted.filter((i) => i < stored.tableEntries);
  while (queue.length > 0 && failure === null) {
    const index = queue.shift()!;
    if (blocks.has(index)) continue;
    const cluster = next++;
    blocks.set(index, cluster);
    const home = Math.floor(cluster / perBlock);
    if (blocks.has(home)) continue;
    if (home >= stored.tableEntries) failure = 'the refcount table is full';
    else if (stored.states[home] === BlockState.Absent) queue.push(home);
    else {
      await stored.ensure(home);
      if (!stored.writable(cluster)) failure = `${stored.describe(home)} cannot be written`;
    }
  }
  for (const k of missing) {
    const index = Math.floor(k / perBlock);
    if (index >= stored.tableEntries) unfixable(k, 'the refcount table has no entry for it; rebuild with "qemu-img check -r all"');
    else if (failure !== null) unfixable(k, `a new refcount block cannot be added: ${failure}`);
  }
  if (failure !== null || blocks.size === 0) return;
  for (const [index, cluster] of blocks) stored.addBlock(index, cluster * layout.clusterSize);
  for (const index of blocks.keys()) {
    const first = index * perBlock;
    const last = Math.min(first + perBlock, expected.length);
    for (let k = first; k < last; k++) {
      const want = expected.get(k);
      if (want > 0) stored.set(k, want);
    }
  }
  for (const cluster of blocks.values()) stored.set(cluster, 1);
  for (const k of missing) {
    if (Math.floor(k / perBlock) >= stored.tableEntries) continue;
    fixed.corruptions++;
    const block = blocks.get(Math.floor(k / perBlock))!;
    log.line(`repaired: ${line(k)} (new refcount block at ${hex(block * layout.clusterSize)})`);
  }
}

/**
 * QEMU's check_oflag_copied: bit 63 of active L1 and L2 entries must be set exactly when the refcount is 1.
 * A repair flips a flag only where the refcount agrees with the references, so it never marks a shared cluster
 * as writable in place.
 */
async function checkCopiedFlags(
  fh: FileHandle,
  h: Header,
  layout: Layout,
  stored: StoredRefcounts,
  expected: ExpectedRefcounts,
  activeL1: Buffer,
  log: ProblemLog,
  repair: boolean,
): Promise<{ fixed: number }> {
  const { clusterSize, fileSize, extendedL2 } = layout;
  const entryBytes = extendedL2 ? 16 : 8;
  const trusted = (cluster: number, refcount: number): boolean => cluster < expected.length && expected.get(cluster) === refcount;
  let fixed = 0;
  const visited = new Set<number>();
  let budget = fileSize + 64 * 1024 * 1024; // distinct L2 tables of a sane image fit in the file
  for (let i = 0; i < h.l1Size; i++) {
    const hi = activeL1.readUInt32BE(i * 8);
    const lo = activeL1.readUInt32BE(i * 8 + 4);
    const l2Offset = entryOffset(hi, lo);
    if (l2Offset === 0) continue;
    const l2Cluster = Math.floor(l2Offset / clusterSize);
    const l2Refcount = stored.get(l2Cluster);
    if (l2Refcount >= 0) {
      const copied = (hi & 0x80000000) !== 0;
      if ((l2Refcount === 1) !== copied) {
        const line = `active L1 entry ${i} (L2 table ${hex(l2Offset)}): COPIED flag ${copied ? 'set' : 'clear'} but refcount ${l2Refcount}`;
        if (repair && trusted(l2Cluster, l2Refcount)) {
          activeL1.writeUInt32BE(copied ? (hi & 0x7fffffff) >>> 0 : (hi | 0x80000000) >>> 0, i * 8);
          await writeAt(fh, activeL1.subarray(i * 8, i * 8 + 8), h.l1TableOffset + i * 8);
          fixed++;
          log.line(`repaired: ${line}`);
        } else {
          log.corruption(line);
        }
      }
    }
    if (l2Offset >= fileSize || visited.has(l2Offset)) continue;
    visited.add(l2Offset);
    budget -= clusterSize;
    if (budget < 0) {
      log.line('the COPIED flags of the remaining L2 tables were not checked: the active L1 table refers to more tables than the file holds');
      break;
    }
    const table = await readAt(fh, l2Offset, clusterSize, fileSize);
    const l2Writable = l2Offset % clusterSize === 0 && l2Offset + clusterSize <= fileSize && l2Refcount === 1 && trusted(l2Cluster, 1);
    let changed = 0;
    for (let j = 0; j < layout.l2Entries; j++) {
      const at = j * entryBytes;
      const ehi = table.readUInt32BE(at);
      const elo = table.readUInt32BE(at + 4);
      if (ehi & 0x40000000) continue; // compressed: checked by the walk
      const offset = entryOffset(ehi, elo);
      if (offset === 0) continue; // unallocated or plain zero
      const cluster = Math.floor(offset / clusterSize);
      const refcount = stored.get(cluster);
      if (refcount < 0) continue;
      const copied = (ehi & 0x80000000) !== 0;
      if ((refcount === 1) === copied) continue;
      const line = `data cluster ${hex(offset)} (L2 table ${hex(l2Offset)} entry ${j}): COPIED flag ${copied ? 'set' : 'clear'} but refcount ${refcount}`;
      if (repair && l2Writable && trusted(cluster, refcount)) {
        table.writeUInt32BE(copied ? (ehi & 0x7fffffff) >>> 0 : (ehi | 0x80000000) >>> 0, at);
        changed++;
        log.line(`repaired: ${line}`);
      } else {
        log.corruption(line);
      }
    }
    if (changed > 0) {
      await writeAt(fh, table, l2Offset);
      fixed += changed;
    }
  }
  if (fixed > 0) await fh.sync();
  return { fixed };
}

/** Clears the dirty and corrupt bits; called only after the refcounts are on disk (and synced). */
async function clearHeaderBits(fh: FileHandle, h: Header): Promise<void> {
  if (h.version !== 3) return;
  const field = Buffer.alloc(8);
  const stat = await fh.stat();
  const current = await readAt(fh, 72, 8, stat.size);
  field.writeBigUInt64BE(current.readBigUInt64BE(0) & ~(INCOMPAT_DIRTY | INCOMPAT_CORRUPT));
  await writeAt(fh, field, 72);
  await fh.sync();
}
