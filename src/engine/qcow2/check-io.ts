import type { FileHandle } from 'node:fs/promises';

/**
 * Reads `length` bytes at `offset`; bytes past the end of the file read as zeros, as QEMU's file driver does,
 * so a table that runs past EOF is checked the way `qemu-img check` checks it.
 */
export async function readAt(fh: FileHandle, offset: number, length: number, fileSize: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  if (offset >= fileSize || length === 0) return buf;
  const wanted = Math.min(length, fileSize - offset);
  let done = 0;
  while (done < wanted) {
    const { bytesRead } = await fh.read(buf, done, wanted - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buf;
}

/** Writes all of `buf` at `offset`. */
export async function writeAt(fh: FileHandle, buf: Buffer, offset: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, offset + done);
    done += bytesWritten;
  }
}

/**
 * A 64-bit table entry split into two 32-bit halves, so hot loops over L2 tables avoid BigInt.
 * `offset` keeps bits 9..55 (the host offset of L1/L2 entries); above 2^53 it is approximate, which only
 * matters for offsets far past any real file, and those are rejected as past the end of the file anyway.
 */
export function entryOffset(hi: number, lo: number): number {
  return (hi & 0x00ffffff) * 0x100000000 + ((lo & 0xfffffe00) >>> 0);
}

export const hex = (n: number): string => `0x${n.toString(16)}`;

/** Problems found so far; bounded so a hostile image cannot make the list grow without end. */
export class ProblemLog {
  static readonly MAX_LINES = 1000;
  corruptions = 0;
  leaks = 0;
  readonly lines: string[] = [];
  private unlisted = 0;
  /** Why some references could not be walked; leaks are then not repaired (they may be in use). */
  readonly incomplete: string[] = [];

  corruption(message: string, times = 1): void {
    this.corruptions += times;
    this.line(times > 1 ? `${message} (x${times})` : message);
  }

  line(message: string): void {
    if (this.lines.length < ProblemLog.MAX_LINES) this.lines.push(message);
    else this.unlisted++;
  }

  markIncomplete(reason: string): void {
    this.incomplete.push(reason);
  }

  finish(): string[] {
    return this.unlisted > 0 ? [...this.lines, `... and ${this.unlisted} more problems not listed`] : [...this.lines];
  }
}
