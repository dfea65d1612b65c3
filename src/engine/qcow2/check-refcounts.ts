import type { FileHandle } from 'node:fs/promises';
import { hex, readAt, writeAt } from './check-io';

/** State of one refcount table entry. */
export const BlockState = {
  /** entry 0: every refcount in its range is 0 */
  Absent: 0,
  /** aligned, inside the file, no reserved bits */
  Valid: 1,
  /** reserved bits set (QEMU still reads the block, masked) */
  Reserved: 2,
  /** the refcounts in its range cannot be read */
  Unaligned: 3,
  /** the block lies past the end of the file: it reads as zeros */
  OutsideImage: 4,
} as const;

/** Largest number below 2^64 a refcount of `bits` bits can hold, as a (possibly rounded) number. */
export function refcountMax(order: number): number {
  return 2 ** (2 ** order) - 1;
}

/**
 * The refcount table and the refcount blocks of an image as stored on disk, held in memory (only the blocks that
 * cover the clusters being compared). Entries of 1 to 64 bits, packed as QEMU packs them: sub-byte widths
 * least-significant bits first, wider ones big-endian.
 */
export class StoredRefcounts {
  readonly entriesPerBlock: number;
  readonly tableEntries: number;
  /** Refcount block offset of each table entry (bits 9..63). */
  readonly blockOffsets: Float64Array;
  readonly states: Uint8Array;
  private readonly blocks = new Map<number, Buffer>();
  private readonly dirtyBlocks = new Set<number>();
  private readonly dirtyEntries = new Set<number>();
  /** Blocks that are valid on their own but shared with other data: never written. */
  private readonly distrusted = new Set<number>();

  private constructor(
    private readonly fh: FileHandle,
    readonly clusterBits: number,
    readonly order: number,
    private readonly tableOffset: number,
    table: Buffer,
    private readonly fileSize: number,
  ) {
    this.entriesPerBlock = 2 ** (clusterBits + 3 - order);
    this.tableEntries = table.length / 8;
    this.blockOffsets = new Float64Array(this.tableEntries);
    this.states = new Uint8Array(this.tableEntries);
    const clusterSize = 2 ** clusterBits;
    const nbClusters = Math.ceil(fileSize / clusterSize);
    for (let i = 0; i < this.tableEntries; i++) {
      const hi = table.readUInt32BE(i * 8);
      const lo = table.readUInt32BE(i * 8 + 4);
      const offset = hi * 0x100000000 + ((lo & 0xfffffe00) >>> 0);
      this.blockOffsets[i] = offset;
      if ((lo & 0x1ff) !== 0) this.states[i] = BlockState.Reserved;
      else if (offset === 0) this.states[i] = BlockState.Absent;
      else if (offset % clusterSize !== 0) this.states[i] = BlockState.Unaligned;
      else if (Math.floor(offset / clusterSize) >= nbClusters) this.states[i] = BlockState.OutsideImage;
      else this.states[i] = BlockState.Valid;
    }
  }

  /** Reads the refcount table, then every block that covers clusters [0, clusters). */
  static async load(
    fh: FileHandle,
    clusterBits: number,
    order: number,
    tableOffset: number,
    tableBytes: number,
    fileSize: number,
    clusters: number,
  ): Promise<StoredRefcounts> {
    const table = await readAt(fh, tableOffset, tableBytes, fileSize);
    const stored = new StoredRefcounts(fh, clusterBits, order, tableOffset, table, fileSize);
    const lastIndex = Math.min(stored.tableEntries, Math.ceil(clusters / stored.entriesPerBlock));
    for (let i = 0; i < lastIndex; i++) await stored.loadBlock(i);
    return stored;
  }

  /** Loads a block outside the compared range (a repair may need to set the refcount of a new cluster there). */
  async ensure(index: number): Promise<void> {
    if (index < this.tableEntries && !this.blocks.has(index)) await this.loadBlock(index);
  }

  distrust(index: number): void {
    this.distrusted.add(index);
  }

  private async loadBlock(index: number): Promise<void> {
    const state = this.states[index];
    if (state === BlockState.Valid || state === BlockState.Reserved || state === BlockState.OutsideImage) {
      const clusterSize = 2 ** this.clusterBits;
      this.blocks.set(index, await readAt(this.fh, this.blockOffsets[index]!, clusterSize, this.fileSize));
    }
  }

  /** The stored refcount of a cluster; 0 where no block covers it; -1 where its block cannot be read. */
  get(cluster: number): number {
    const index = Math.floor(cluster / this.entriesPerBlock);
    if (index >= this.tableEntries) return 0;
    const state = this.states[index];
    if (state === BlockState.Absent) return 0;
    if (state === BlockState.Unaligned) return -1;
    const block = this.blocks.get(index);
    if (!block) return -1; // not loaded: outside the range being checked
    return readEntry(block, cluster % this.entriesPerBlock, this.order);
  }

  /** Whether a refcount can be written in place: its block is valid and loaded. */
  writable(cluster: number): boolean {
    const index = Math.floor(cluster / this.entriesPerBlock);
    return index < this.tableEntries && this.states[index] === BlockState.Valid && this.blocks.has(index) && !this.distrusted.has(index);
  }

  set(cluster: number, value: number): void {
    const index = Math.floor(cluster / this.entriesPerBlock);
    const block = this.blocks.get(index);
    if (!block || this.states[index] !== BlockState.Valid || this.distrusted.has(index)) throw new Error(`refcount block ${index} is not writable`);
    writeEntry(block, cluster % this.entriesPerBlock, this.order, value);
    this.dirtyBlocks.add(index);
  }

  /** Adds a new, zeroed refcount block at `offset` for table entry `index` (written by flush). */
  addBlock(index: number, offset: number): void {
    this.blockOffsets[index] = offset;
    this.states[index] = BlockState.Valid;
    this.blocks.set(index, Buffer.alloc(2 ** this.clusterBits));
    this.dirtyBlocks.add(index);
    this.dirtyEntries.add(index);
  }

  describe(index: number): string {
    return `refcount block ${index} (${hex(this.blockOffsets[index] ?? 0)})`;
  }

  /**
   * Writes changed blocks, syncs, then points the table at new blocks and syncs again, so a crash in between
   * leaves at worst a leaked cluster, never a table entry pointing at an unwritten block.
   */
  async flush(): Promise<void> {
    if (this.dirtyBlocks.size === 0 && this.dirtyEntries.size === 0) return;
    for (const index of [...this.dirtyBlocks].sort((a, b) => a - b)) {
      await writeAt(this.fh, this.blocks.get(index)!, this.blockOffsets[index]!);
    }
    await this.fh.sync();
    if (this.dirtyEntries.size > 0) {
      for (const index of [...this.dirtyEntries].sort((a, b) => a - b)) {
        const entry = Buffer.alloc(8);
        entry.writeBigUInt64BE(BigInt(this.blockOffsets[index]!));
        await writeAt(this.fh, entry, this.tableOffset + index * 8);
      }
      await this.fh.sync();
    }
    this.dirtyBlocks.clear();
    this.dirtyEntries.clear();
  }
}

export function readEntry(block: Buffer, i: number, order: number): number {
  switch (order) {
    case 0:
      return (block[i >>> 3]! >>> (i & 7)) & 1;
    case 1:
      return (block[i >>> 2]! >>> (2 * (i & 3))) & 3;
    case 2:
      return (block[i >>> 1]! >>> (4 * (i & 1))) & 15;
    case 3:
      return block[i]!;
    case 4:
      return block.readUInt16BE(i * 2);
    case 5:
      return block.readUInt32BE(i * 4);
    default:
      return Number(block.readBigUInt64BE(i * 8));
  }
}

export function writeEntry(block: Buffer, i: number, order: number, value: number): void {
  switch (order) {
    case 0:
    case 1:
    case 2: {
      const bits = 2 ** order;
      const perByte = 8 / bits;
      const at = Math.floor(i / perByte);
      const shift = (i % perByte) * bits;
      const mask = ((1 << bits) - 1) << shift;
      block[at] = (block[at]! & ~mask) | ((value << shift) & mask);
      return;
    }
    case 3:
      block[i] = value;
      return;
    case 4:
      block.writeUInt16BE(value, i * 2);
      return;
    case 5:
      block.writeUInt32BE(value, i * 4);
      return;
    default:
      block.writeBigUInt64BE(BigInt(value), i * 8);
  }
}
