import { ImageError } from './errors';
import type { ImageFile } from './file';
import { nextNonZeroEntry, offsetAt, u32At } from './layout';
import { MAX_REFCOUNT_TABLE_BYTES } from './header';

/** Refcount blocks kept in memory at most (write-through, so eviction is free). */
const BLOCK_CACHE_BYTES = 32 * 1024 * 1024;

/**
 * The refcount table and blocks of one image: how many references each host cluster has (0 = free).
 * Every change is written through to the file at once; callers order it against the references they add.
 */
export class Refcounts {
  private readonly blocks = new Map<number, Buffer>();
  private readonly maxCachedBlocks: number;
  readonly bits: number;
  readonly entriesPerBlock: number;
  private readonly maxValue: number;
  /** Lowest cluster index that may be free. */
  private freeHint = 0;

  private constructor(
    private readonly file: ImageFile,
    private readonly clusterSize: number,
    refcountOrder: number,
    private table: Buffer,
    public tableOffset: number,
    /** Flushes the file when the image writes with ordering (no-op otherwise). */
    private readonly barrier: () => Promise<void>,
  ) {
    this.bits = 2 ** refcountOrder;
    this.entriesPerBlock = (clusterSize * 8) / this.bits;
    this.maxValue = this.bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** this.bits - 1;
    this.maxCachedBlocks = Math.max(8, Math.floor(BLOCK_CACHE_BYTES / clusterSize));
  }

  static async load(
    file: ImageFile,
    clusterSize: number,
    refcountOrder: number,
    tableOffset: number,
    tableClusters: number,
    barrier: () => Promise<void>,
    /**
     * Whether refcounts will be used (the image is opened for writing). A read never looks at them, so, as in
     * QEMU, damage there does not stop a read-only open: `qemu-img convert` is how such an image is rescued.
     */
    forWriting = true,
  ): Promise<Refcounts> {
    const table = Buffer.alloc(tableClusters * clusterSize);
    await file.readExact(table, tableOffset, 'refcount table');
    const r = new Refcounts(file, clusterSize, refcountOrder, table, tableOffset, barrier);
    const n = forWriting ? r.tableEntries : 0;
    for (let i = nextNonZeroEntry(table, 0, n, 8); i < n; i = nextNonZeroEntry(table, i + 1, n, 8)) {
      // Number(raw & ~0x1ff): every bit above the low nine, as one rounding of the exact value.
      const hi = u32At(table, i * 8);
      const lo = u32At(table, i * 8 + 4);
      const off = hi * 0x1_0000_0000 + ((lo & 0xffff_fe00) >>> 0);
      if (lo & 0x1ff || off % clusterSize !== 0) {
        throw new ImageError('INVALID_IMAGE', `${file.path}: refcount table entry ${i} is not cluster aligned.`, file.path);
      }
      if (off < clusterSize || off + clusterSize > file.size) {
        throw new ImageError('INVALID_IMAGE', `${file.path}: refcount block ${i} at offset ${off} lies outside the file.`, file.path);
      }
    }
    return r;
  }

  get tableEntries(): number {
    return this.table.length / 8;
  }

  get tableClusters(): number {
    return this.table.length / this.clusterSize;
  }

  /** Host offsets of every refcount block (for overlap checks). */
  blockOffsets(): number[] {
    const out: number[] = [];
    for (let i = nextNonZeroEntry(this.table, 0, this.tableEntries, 8), n = this.tableEntries; i < n; i = nextNonZeroEntry(this.table, i + 1, n, 8)) {
      const off = offsetAt(this.table, i * 8);
      if (off !== 0) out.push(off);
    }
    return out;
  }

  private blockOffset(index: number): number {
    if (index >= this.tableEntries) return 0;
    return offsetAt(this.table, index * 8);
  }

  private async block(index: number): Promise<Buffer | null> {
    const off = this.blockOffset(index);
    if (off === 0) return null;
    let b = this.blocks.get(off);
    if (b) {
      // Refresh its place in the map's insertion order (least recently used goes first).
      this.blocks.delete(off);
      this.blocks.set(off, b);
      return b;
    }
    b = Buffer.alloc(this.clusterSize);
    await this.file.readExact(b, off, 'refcount block');
    if (this.blocks.size >= this.maxCachedBlocks) {
      const oldest = this.blocks.keys().next().value;
      if (oldest !== undefined) this.blocks.delete(oldest);
    }
    this.blocks.set(off, b);
    return b;
  }

  private getEntry(b: Buffer, i: number): number {
    switch (this.bits) {
      case 64:
        return Number(b.readBigUInt64BE(i * 8));
      case 32:
        return u32At(b, i * 4);
      case 16:
        return (b[i * 2]! << 8) | b[i * 2 + 1]!;
      case 8:
        return b[i]!;
      default: {
        const perByte = 8 / this.bits;
        return (b[Math.floor(i / perByte)]! >> ((i % perByte) * this.bits)) & (2 ** this.bits - 1);
      }
    }
  }

  private setEntry(b: Buffer, i: number, v: number): void {
    switch (this.bits) {
      case 64:
        b.writeBigUInt64BE(BigInt(v), i * 8);
        return;
      case 32:
        b.writeUInt32BE(v, i * 4);
        return;
      case 16:
        b.writeUInt16BE(v, i * 2);
        return;
      case 8:
        b[i] = v;
        return;
      default: {
        const perByte = 8 / this.bits;
        const byte = Math.floor(i / perByte);
        const shift = (i % perByte) * this.bits;
        const mask = (2 ** this.bits - 1) << shift;
        b[byte] = (b[byte]! & ~mask) | (v << shift);
      }
    }
  }

  /** Byte range of entries [from, to) inside a block, for writing them back. */
  private entryBytes(from: number, to: number): [number, number] {
    return [Math.floor((from * this.bits) / 8), Math.ceil((to * this.bits) / 8)];
  }

  async get(cluster: number): Promise<number> {
    const b = await this.block(Math.floor(cluster / this.entriesPerBlock));
    return b ? this.getEntry(b, cluster % this.entriesPerBlock) : 0;
  }

  /**
   * Adds `delta` to the refcount of each cluster in [first, first + count), writing each touched block once.
   * Blocks must exist for an increment (allocate() makes sure); decrements of clusters without a block are
   * corruption. `reusable` false: clusters that drop to 0 are not to be handed out again (the allocator avoids
   * them), so the search for free ones need not go back for them.
   */
  async update(first: number, count: number, delta: number, reusable = true): Promise<void> {
    let c = first;
    const end = first + count;
    while (c < end) {
      const bi = Math.floor(c / this.entriesPerBlock);
      const blockEnd = Math.min(end, (bi + 1) * this.entriesPerBlock);
      const b = await this.block(bi);
      if (!b) {
        throw new ImageError('INVALID_IMAGE', `${this.file.path}: cluster ${c} has no refcount block.`, this.file.path);
      }
      const from = c % this.entriesPerBlock;
      const to = from + (blockEnd - c);
      for (let i = from; i < to; i++) {
        const v = this.getEntry(b, i) + delta;
        if (v < 0 || v > this.maxValue) {
          throw new ImageError('INVALID_IMAGE', `${this.file.path}: refcount of cluster ${bi * this.entriesPerBlock + i} would become ${v}.`, this.file.path);
        }
        this.setEntry(b, i, v);
        if (v === 0 && reusable) this.freeHint = Math.min(this.freeHint, bi * this.entriesPerBlock + i);
      }
      const [s, e] = this.entryBytes(from, to);
      await this.file.write(b.subarray(s, e), this.blockOffset(bi) + s);
      c = blockEnd;
    }
  }

  /**
   * Finds `count` contiguous free clusters, marks them used (refcount 1) and returns the first one's index.
   * `avoid` says which clusters must not be used whatever their refcount (known metadata of a damaged image).
   */
  async allocate(count: number, avoid: (cluster: number) => boolean = () => false): Promise<number> {
    for (;;) {
      const first = await this.findFree(count, avoid);
      const lastBlock = Math.floor((first + count - 1) / this.entriesPerBlock);
      let missing = -1;
      for (let bi = Math.floor(first / this.entriesPerBlock); bi <= lastBlock; bi++) {
        if (this.blockOffset(bi) === 0) {
          missing = bi;
          break;
        }
      }
      if (missing < 0) {
        await this.update(first, count, 1);
        this.freeHint = first + count;
        return first;
      }
      await this.addBlock(missing, avoid);
    }
  }

  private async findFree(count: number, avoid: (cluster: number) => boolean): Promise<number> {
    let runStart = this.freeHint;
    let c = this.freeHint;
    // Clusters past both the end of the file and the blocks we have are free: stop scanning there.
    const limit = Math.max(Math.ceil(this.file.size / this.clusterSize), this.tableEntries * this.entriesPerBlock);
    while (c - runStart < count) {
      if (c >= limit) return runStart;
      const bi = Math.floor(c / this.entriesPerBlock);
      const b = await this.block(bi);
      if (!b) {
        if (avoid(c)) runStart = c + 1;
        c++;
        continue;
      }
      if (this.getEntry(b, c % this.entriesPerBlock) !== 0 || avoid(c)) runStart = c + 1;
      c++;
    }
    return runStart;
  }

  /** Creates refcount block `index`, placed inside the range it describes when it can be, so it counts itself. */
  private async addBlock(index: number, avoid: (cluster: number) => boolean): Promise<void> {
    if (index >= this.tableEntries) {
      await this.growTable(index + 1, avoid);
      if (this.blockOffset(index) !== 0) return;
    }
    const first = index * this.entriesPerBlock;
    let at = first;
    while (avoid(at)) at++;
    if (at >= first + this.entriesPerBlock) {
      throw new ImageError('INVALID_IMAGE', `${this.file.path}: no room for a new refcount block.`, this.file.path);
    }
    const block = Buffer.alloc(this.clusterSize);
    this.setEntry(block, at - first, 1);
    await this.file.write(block, at * this.clusterSize);
    await this.barrier();
    this.setTableEntry(index, at * this.clusterSize);
    await this.file.write(this.table.subarray(index * 8, index * 8 + 8), this.tableOffset + index * 8);
    await this.barrier();
  }

  private setTableEntry(index: number, offset: number): void {
    this.table.writeBigUInt64BE(BigInt(offset), index * 8);
  }

  /**
   * Moves the refcount table to a larger copy past the end of the file, with new blocks that count the new
   * table and themselves, then switches the header to it and frees the old table.
   */
  private async growTable(minEntries: number, avoid: (cluster: number) => boolean): Promise<void> {
    const cs = this.clusterSize;
    const E = this.entriesPerBlock;
    let entries = Math.max(minEntries, this.tableEntries * 2);
    let start = Math.max(Math.ceil(this.file.size / cs), 1);
    while (avoid(start)) start++;
    let tableClusters = 0;
    let newBlocks: number[] = [];
    // The table and the blocks it needs must cover themselves: iterate until the layout is stable.
    for (let round = 0; ; round++) {
      tableClusters = Math.ceil((entries * 8) / cs);
      const total = tableClusters + newBlocks.length;
      const needed: number[] = [];
      for (let bi = Math.floor(start / E); bi <= Math.floor((start + total - 1) / E); bi++) {
        if (this.blockOffset(bi) === 0) needed.push(bi);
      }
      const maxIndex = Math.max(minEntries - 1, ...needed);
      if (needed.length === newBlocks.length && maxIndex < entries) {
        newBlocks = needed;
        break;
      }
      newBlocks = needed;
      entries = Math.max(entries, maxIndex + 1);
      if (round > 64) throw new ImageError('INVALID_IMAGE', `${this.file.path}: cannot lay out a larger refcount table.`, this.file.path);
    }
    if (tableClusters * cs > MAX_REFCOUNT_TABLE_BYTES) {
      throw new ImageError('INVALID_ARGUMENT', `${this.file.path}: the image would need a refcount table larger than ${MAX_REFCOUNT_TABLE_BYTES} bytes; use a larger cluster size.`, this.file.path);
    }
    const blocksStart = start + tableClusters;
    const used = tableClusters + newBlocks.length;
    const table = Buffer.alloc(tableClusters * cs);
    this.table.copy(table);
    // New blocks first: each holds refcount 1 for the new clusters in its range.
    for (let k = 0; k < newBlocks.length; k++) {
      const bi = newBlocks[k]!;
      const block = Buffer.alloc(cs);
      for (let c = Math.max(start, bi * E); c < Math.min(start + used, (bi + 1) * E); c++) this.setEntry(block, c - bi * E, 1);
      const at = (blocksStart + k) * cs;
      await this.file.write(block, at);
      table.writeBigUInt64BE(BigInt(at), bi * 8);
    }
    await this.file.write(table, start * cs);
    const oldOffset = this.tableOffset;
    const oldClusters = this.tableClusters;
    const oldTable = this.table;
    this.table = table;
    this.tableOffset = start * cs;
    // New clusters inside ranges of blocks that already existed are counted there.
    for (let c = start; c < start + used; c++) {
      if (!newBlocks.includes(Math.floor(c / E))) await this.update(c, 1, 1);
    }
    await this.barrier();
    const head = Buffer.alloc(12);
    head.writeBigUInt64BE(BigInt(this.tableOffset), 0);
    head.writeUInt32BE(tableClusters, 8);
    try {
      await this.file.write(head, 48);
    } catch (e) {
      this.table = oldTable;
      this.tableOffset = oldOffset;
      throw e;
    }
    await this.barrier();
    await this.update(oldOffset / cs, oldClusters, -1);
  }
}
