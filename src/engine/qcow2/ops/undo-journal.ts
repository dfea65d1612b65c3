import { open, rm, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ImageError, isImageError, toImageError } from '../errors';
import { alignedBuffer } from './aligned-buffer';
import { fsyncPath } from './atomic-file';
import type { ByteRange } from './ranges';

// Layout: MAGIC, u64 file length, u64 entry count, entries {u64 offset, u64 length, bytes}, then SEALED and the
// count again. A journal without its seal was cut short before the file was touched, and is simply dropped.
const MAGIC = Buffer.from('VMSNAPU1', 'latin1');
const SEALED = Buffer.from('VMSNAPOK', 'latin1');
const COPY_BYTES = 4 * 1024 * 1024;
/** Restores compare in blocks of the host's page size. */
const BLOCK = 4096;

/** Where the undo journal of a file lives: next to it, so it is on the same file system. */
export function undoJournalPath(file: string): string {
  return `${file}.vmsnap-undo`;
}

/**
 * Saves the current bytes of `ranges` of `file` and its length, durably, before the file is changed in place,
 * so `restore` can put it back byte for byte.
 */
export class UndoJournal {
  private constructor(
    readonly file: string,
    readonly path: string,
  ) {}

  static async create(file: string, fileLength: number, ranges: readonly ByteRange[], checkAborted: () => void): Promise<UndoJournal> {
    const path = undoJournalPath(file);
    const journal = new UndoJournal(file, path);
    let out: FileHandle | null = null;
    let source: FileHandle | null = null;
    try {
      out = await open(path, 'wx');
      source = await open(file, 'r');
      const head = Buffer.alloc(24);
      MAGIC.copy(head, 0);
      head.writeBigUInt64BE(BigInt(fileLength), 8);
      head.writeBigUInt64BE(BigInt(ranges.length), 16);
      let at = 0;
      const append = async (buf: Buffer): Promise<void> => {
        await out!.write(buf, 0, buf.length, at);
        at += buf.length;
      };
      await append(head);
      // Two buffers: the next block is read from the file while the last one is appended to the journal.
      const bufs = [alignedBuffer(COPY_BYTES), alignedBuffer(COPY_BYTES)];
      let writing: Promise<void> = Promise.resolve();
      let k = 0;
      try {
        for (const r of ranges) {
          const entry = Buffer.alloc(16);
          entry.writeBigUInt64BE(BigInt(r.offset), 0);
          entry.writeBigUInt64BE(BigInt(r.length), 8);
          await writing;
          await append(entry);
          for (let done = 0; done < r.length; ) {
            checkAborted();
            const n = Math.min(COPY_BYTES, r.length - done);
            const buf = bufs[k++ % 2]!;
            const { bytesRead } = await source.read(buf, 0, n, r.offset + done);
            if (bytesRead !== n) throw new ImageError('IO_ERROR', `${file} changed while its undo journal was being written.`, file);
            // The other buffer's append has finished before this one starts, so appends stay in order.
            await writing;
            writing = append(buf.subarray(0, n));
            writing.catch(() => {}); // awaited (and rethrown) before the next append; this only marks it handled
            done += n;
          }
        }
      } finally {
        await writing.catch(() => {}); // a failed append is rethrown below
      }
      await writing;
      const tail = Buffer.alloc(16);
      SEALED.copy(tail, 0);
      tail.writeBigUInt64BE(BigInt(ranges.length), 8);
      await append(tail);
      await out.sync();
      await out.close();
      out = null;
      await fsyncPath(dirname(path), 'r').catch(() => {});
    } catch (e) {
      await out?.close().catch(() => {});
      await rm(path, { force: true }).catch(() => {});
      throw toImageError(e, path);
    } finally {
      await source?.close().catch(() => {});
    }
    return journal;
  }

  /** Puts the file back as it was when the journal was made, then deletes the journal. */
  async restore(): Promise<void> {
    await restoreFromJournal(this.file, this.path);
  }

  /** The change is complete and durable: the journal is no longer needed. */
  async discard(): Promise<void> {
    await rm(this.path, { force: true });
    await fsyncPath(dirname(this.path), 'r').catch(() => {});
  }
}

/**
 * Runs `change`, which changes `file` in place only within `atRisk` (and past its length), under an undo journal:
 * on any error or abort the file is put back byte for byte and the error goes on; if even that fails, the journal
 * is kept (the next restoreFromJournal finishes it) and the error says so. `what` names the change for that
 * message ("Committing a.qcow2 into b.qcow2").
 */
export async function withUndoJournal<T>(
  file: string,
  atRisk: { fileLength: number; ranges: readonly ByteRange[] },
  checkAborted: () => void,
  what: string,
  change: () => Promise<T>,
): Promise<T> {
  const journal = await UndoJournal.create(file, atRisk.fileLength, atRisk.ranges, checkAborted);
  let result: T;
  try {
    result = await change();
  } catch (e) {
    try {
      await journal.restore();
    } catch (undoError) {
      const why = isImageError(undoError) ? undoError.message : String(undoError);
      throw new ImageError('IO_ERROR', `${what} failed and ${file} could not be put back (${why}); its undo journal ${journal.path} is kept: run it again once the cause is fixed.`, file);
    }
    throw e;
  }
  await journal.discard();
  return result;
}

/**
 * Undoes an interrupted change to `file` if an undo journal was left next to it (the process was killed
 * halfway). Returns true when the file was restored. A journal cut short is dropped: the file was not yet touched.
 */
export async function restoreFromJournal(file: string, path = undoJournalPath(file)): Promise<boolean> {
  let journal: FileHandle;
  try {
    journal = await open(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw toImageError(e, path);
  }
  let restored = false;
  try {
    const size = (await journal.stat()).size;
    const readAt = async (offset: number, length: number): Promise<Buffer> => {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await journal.read(buf, 0, length, offset);
      return buf.subarray(0, bytesRead);
    };
    const head = await readAt(0, 24);
    const tail = size >= 40 ? await readAt(size - 16, 16) : Buffer.alloc(0);
    const sealed =
      head.length === 24 && head.subarray(0, 8).equals(MAGIC) && tail.length === 16 && tail.subarray(0, 8).equals(SEALED) &&
      tail.readBigUInt64BE(8) === head.readBigUInt64BE(16);
    if (sealed) {
      const fileLength = Number(head.readBigUInt64BE(8));
      const count = Number(head.readBigUInt64BE(16));
      const target = await open(file, 'r+').catch((e: unknown) => {
        throw toImageError(e, file);
      });
      try {
        // Cut what the change appended first: that frees space for the blocks below, should any need it.
        await target.truncate(fileLength);
        let at = 24;
        for (let i = 0; i < count; i++) {
          const entry = await readAt(at, 16);
          if (entry.length !== 16) throw new ImageError('IO_ERROR', `The undo journal ${path} is damaged.`, path);
          const offset = Number(entry.readBigUInt64BE(0));
          const length = Number(entry.readBigUInt64BE(8));
          at += 16;
          for (let done = 0; done < length; ) {
            const n = Math.min(COPY_BYTES, length - done);
            const chunk = await readAt(at, n);
            if (chunk.length !== n || at + n > size - 16) throw new ImageError('IO_ERROR', `The undo journal ${path} is damaged.`, path);
            await writeBack(target, chunk, offset + done);
            at += n;
            done += n;
          }
        }
        await target.sync();
      } finally {
        await target.close();
      }
      restored = true;
    }
  } finally {
    await journal.close();
  }
  await rm(path, { force: true });
  await fsyncPath(dirname(path), 'r').catch(() => {});
  return restored;
}

/**
 * Writes `saved` back at `offset`, only the blocks that differ from what the file holds now: a block the change
 * never touched may be a hole, and writing it again would need space that a full disk (the usual reason to undo)
 * does not have. A block the change wrote is allocated already, so putting it back needs none.
 */
async function writeBack(target: FileHandle, saved: Buffer, offset: number): Promise<void> {
  const now = Buffer.alloc(saved.length);
  const { bytesRead } = await target.read(now, 0, saved.length, offset);
  const differs = (at: number): boolean => {
    const end = Math.min(saved.length, at + BLOCK);
    return end > bytesRead || !now.subarray(at, end).equals(saved.subarray(at, end));
  };
  for (let at = 0; at < saved.length; ) {
    if (!differs(at)) {
      at += BLOCK;
      continue;
    }
    let end = at + BLOCK;
    while (end < saved.length && differs(end)) end += BLOCK;
    end = Math.min(end, saved.length);
    // write() may write less than asked (the disk filled up): the rest is retried, and then fails with the reason.
    for (let done = at; done < end; ) {
      const { bytesWritten } = await target.write(saved, done, end - done, offset + done);
      done += bytesWritten;
    }
    at = end;
  }
}
