// Pure helpers for table entries (qcow2.txt, "Cluster mapping"). Offsets are numbers: host files stay far
// below 2^53 bytes, and every entry is validated before use.

/** Bits 9..55: the host offset of an L2 table, a data cluster or a refcount block. */
export const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;
export const COPIED = 1n << 63n;
export const COMPRESSED = 1n << 62n;
export const ZERO_FLAG = 1n;
/** L1 entry bits that must be zero. */
export const L1_RESERVED = 0x7f00_0000_0000_01ffn;
/** Standard L2 entry bits that must be zero (bits 1..8 and 56..61). */
export const L2_RESERVED = 0x3f00_0000_0000_01fen;

export type L2Entry =
  | { kind: 'unallocated' }
  | { kind: 'zero'; host: number } // host may be 0 (plain zero) or a preallocated cluster
  | { kind: 'data'; host: number }
  | { kind: 'compressed'; host: number; bytes: number };

/** Decodes a standard (first-word) L2 entry. `raw` is the 64-bit value. */
export function decodeL2(raw: bigint, clusterBits: number, extendedL2: boolean): L2Entry | 'reserved' {
  if (raw & COMPRESSED) {
    // Bits 0..x-1: host byte offset; bits x..61: additional 512-byte sectors.
    const x = 62n - BigInt(clusterBits - 8);
    const host = Number(raw & ((1n << x) - 1n));
    const sectors = Number((raw >> x) & ((1n << (62n - x)) - 1n));
    return { kind: 'compressed', host, bytes: (sectors + 1) * 512 - (host & 511) };
  }
  if (raw & L2_RESERVED) return 'reserved';
  const host = Number(raw & OFFSET_MASK);
  if (!extendedL2 && raw & ZERO_FLAG) return { kind: 'zero', host };
  if (extendedL2 && raw & ZERO_FLAG) return 'reserved';
  return host === 0 ? { kind: 'unallocated' } : { kind: 'data', host };
}

/**
 * decodeL2 of the entry at byte `at` of an L2 table, without BigInt for the common entries (unallocated, zero,
 * data): reading a whole table through BigInts was a good part of opening a large image.
 */
export function decodeL2At(table: Buffer, at: number, clusterBits: number, extendedL2: boolean): L2Entry | 'reserved' {
  const hi = u32At(table, at);
  const lo = u32At(table, at + 4);
  if (hi === 0 && lo === 0) return UNALLOCATED;
  // Bit 62 (compressed) is bit 30 of the high word: those go the exact way.
  if (hi & 0x4000_0000) return decodeL2(table.readBigUInt64BE(at), clusterBits, extendedL2);
  if (hi & 0x3f00_0000 || lo & 0x1fe) return 'reserved';
  const host = (hi & 0x00ff_ffff) * 0x1_0000_0000 + ((lo & 0xffff_fe00) >>> 0);
  if (lo & 1) return extendedL2 ? 'reserved' : { kind: 'zero', host };
  return host === 0 ? UNALLOCATED : { kind: 'data', host };
}

const UNALLOCATED: L2Entry = Object.freeze({ kind: 'unallocated' });

/**
 * The big-endian 32-bit word at byte `at`, from the bytes themselves. Table scans run once per process, before
 * V8 has optimised anything: there Buffer's readUInt32BE and readBigUInt64BE (JavaScript with argument checks,
 * the latter making a BigInt) cost several times these plain element reads.
 */
export function u32At(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

/** Whether the 64-bit table entry at byte `at` is all zeros. */
export function isZeroEntry(buf: Uint8Array, at: number): boolean {
  return (buf[at]! | buf[at + 1]! | buf[at + 2]! | buf[at + 3]! | buf[at + 4]! | buf[at + 5]! | buf[at + 6]! | buf[at + 7]!) === 0;
}

/**
 * The index of the first entry in [from, to) of a table of `entryBytes`-byte entries (8 or 16) with a byte other
 * than zero, else `to`: one tight loop over 32-bit words instead of a call per entry, as most entries of a
 * sparse layer's tables are zero.
 */
export function nextNonZeroEntry(table: Uint8Array, from: number, to: number, entryBytes: number): number {
  if (table.byteOffset % 4 !== 0) {
    for (let i = from; i < to; i++) if (!isZeroEntry(table, i * entryBytes) || (entryBytes === 16 && !isZeroEntry(table, i * 16 + 8))) return i;
    return to;
  }
  const words = new Int32Array(table.buffer, table.byteOffset, table.byteLength >> 2);
  const per = entryBytes >> 2;
  for (let i = from; i < to; i++) {
    const w = i * per;
    if ((words[w]! | words[w + 1]!) !== 0 || (per === 4 && (words[w + 2]! | words[w + 3]!) !== 0)) return i;
  }
  return to;
}

/** Number(entry & OFFSET_MASK) of the big-endian 64-bit entry at byte `at`, without a BigInt. */
export function offsetAt(buf: Uint8Array, at: number): number {
  return (u32At(buf, at) & 0x00ff_ffff) * 0x1_0000_0000 + ((u32At(buf, at + 4) & 0xffff_fe00) >>> 0);
}

export function l2Raw(host: number, copied: boolean, zero = false): bigint {
  return BigInt(host) | (copied ? COPIED : 0n) | (zero ? ZERO_FLAG : 0n);
}

/** Extended L2 bitmap: bits 0..31 allocated, 32..63 reads as zero. */
export function subclusterBits(bitmap: bigint, index: number): { allocated: boolean; zero: boolean } {
  return { allocated: ((bitmap >> BigInt(index)) & 1n) === 1n, zero: ((bitmap >> BigInt(32 + index)) & 1n) === 1n };
}

export function alignDown(n: number, align: number): number {
  return n - (n % align);
}

