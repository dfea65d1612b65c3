import type { ByteRange } from './ranges';

const ZERO_BLOCK = Buffer.alloc(1024 * 1024);

/** True when every byte is zero (memcmp against a zero block, far faster than a loop in JS). */
export function isAllZero(buf: Buffer): boolean {
  for (let at = 0; at < buf.length; at += ZERO_BLOCK.length) {
    const n = Math.min(ZERO_BLOCK.length, buf.length - at);
    if (!buf.subarray(at, at + n).equals(ZERO_BLOCK.subarray(0, n))) return false;
  }
  return true;
}

/** Index of the first byte where `a` and `b` (same length) differ, or -1. */
export function firstDifferentByte(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  // Narrow down with memcmp on blocks, then look at single bytes of the one block that differs.
  const block = 4096;
  for (let at = 0; at < a.length; at += block) {
    const end = Math.min(a.length, at + block);
    if (a.subarray(at, end).equals(b.subarray(at, end))) continue;
    for (let i = at; i < end; i++) if (a[i] !== b[i]) return i;
  }
  return -1;
}

/** Index of the first non-zero byte, or -1. */
export function firstNonZeroByte(buf: Buffer): number {
  for (let at = 0; at < buf.length; at += ZERO_BLOCK.length) {
    const n = Math.min(ZERO_BLOCK.length, buf.length - at);
    const i = firstDifferentByte(buf.subarray(at, at + n), ZERO_BLOCK.subarray(0, n));
    if (i >= 0) return at + i;
  }
  return -1;
}

/**
 * The runs of bytes where `a` and `b` (same length) differ, as ranges starting at `base`, and how many bytes
 * differ in all. Equal 4 KiB blocks are skipped with memcmp; only differing blocks are looked at byte by byte.
 */
export function differingRuns(a: Buffer, b: Buffer, base: number): { ranges: ByteRange[]; bytes: number } {
  if (a.equals(b)) return { ranges: [], bytes: 0 };
  const ranges: ByteRange[] = [];
  let bytes = 0;
  let runStart = -1;
  const close = (at: number): void => {
    if (runStart >= 0) ranges.push({ offset: base + runStart, length: at - runStart });
    runStart = -1;
  };
  const block = 4096;
  for (let at = 0; at < a.length; at += block) {
    const end = Math.min(a.length, at + block);
    if (a.subarray(at, end).equals(b.subarray(at, end))) {
      close(at);
      continue;
    }
    for (let i = at; i < end; i++) {
      if (a[i] !== b[i]) {
        bytes++;
        if (runStart < 0) runStart = i;
      } else {
        close(i);
      }
    }
  }
  close(a.length);
  return { ranges, bytes };
}
