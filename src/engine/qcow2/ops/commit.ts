import { dirname, isAbsolute, resolve } from 'node:path';
import type { OperationOptions } from '../disk';
import { ImageError } from '../errors';
import { probeFormat } from '../chain';
import { Qcow2Image } from '../image';
import { RawDisk } from '../raw';
import { qcow2BytesAtRisk } from './at-risk';
import { closeQuietly } from './layers';
import { CHUNK_BYTES, pipelined } from './pipeline';
import { Progress } from './progress';
import { mergeRanges, splitRanges, totalLength, type ByteRange } from './ranges';
import { restoreFromJournal, withUndoJournal } from './undo-journal';

export interface CommitOptions extends OperationOptions {
  /** Leave the top layer as it is instead of emptying it (like `qemu-img commit -d`). */
  keepTop?: boolean;
}

export interface CommitResult {
  /** Absolute path of the backing image that received the top layer's data. */
  base: string;
  dataBytes: number;
  zeroBytes: number;
}

/** Zeroing is metadata-only for qcow2, so it goes in bigger steps than copied data; still small enough to cancel. */
const ZERO_STEP = 64 * 1024 * 1024;

/**
 * Merges the top layer of a chain into its backing image, like `qemu-img commit`: every range the top holds
 * (data or zeros) is written into the backing image, then the top is emptied (unless keepTop). The chain reads
 * the same before and after. An abort or error puts the backing image back from an undo journal kept next to
 * it (its tables, for qcow2: the data goes to new clusters; every byte, for raw); a commit killed halfway is rolled back the next time one starts on that backing image (or
 * by `rollBackInterruptedCommit`), and can simply be run again.
 */
export async function commit(topPath: string, options: CommitOptions = {}): Promise<CommitResult> {
  const keepTop = options.keepTop === true;
  const top = await Qcow2Image.open(resolve(topPath), { writable: !keepTop, backing: false });
  let ok = false;
  try {
    if (!keepTop && top.snapshots.length > 0) {
      // Checked first: finding out after the base was written would leave the commit half done.
      throw new ImageError(
        'INVALID_ARGUMENT',
        `${top.path} has internal snapshots, which emptying it would lose: delete them first, or commit keeping the top layer.`,
        top.path,
      );
    }
    const result = await commitLayer(top, options);
    if (!keepTop) await top.makeEmpty();
    ok = true;
    return result;
  } finally {
    if (ok) await top.close();
    else await closeQuietly(top);
  }
}

/** Restores a backing image from the undo journal an interrupted commit left next to it; true if it did. */
export async function rollBackInterruptedCommit(basePath: string): Promise<boolean> {
  return restoreFromJournal(resolve(basePath));
}

async function commitLayer(top: Qcow2Image, options: OperationOptions): Promise<CommitResult> {
  const name = top.header.backingFile;
  if (name === null) {
    throw new ImageError('INVALID_ARGUMENT', `${top.path} has no backing file, so there is nothing to commit it into.`, top.path);
  }
  // Relative backing names are relative to the overlay's folder, as QEMU reads them.
  const basePath = isAbsolute(name) ? name : resolve(dirname(top.path), name);
  const progressLabel = `Committing ${top.path} into ${basePath}`;

  // A journal left by a commit that was killed halfway: put the base back first, then commit afresh.
  await restoreFromJournal(basePath);

  const declared = top.header.backingFormat;
  const baseFormat = declared === 'qcow2' || declared === 'raw' ? declared : await probeFormat(basePath);
  const probe = baseFormat === 'qcow2' ? await Qcow2Image.open(basePath, { backing: false }) : await RawDisk.open(basePath);
  const baseSize = probe.size;
  await closeQuietly(probe);
  if (top.size > baseSize) {
    throw new ImageError(
      'INVALID_ARGUMENT',
      `${top.path} (${top.size} bytes) is larger than its backing image ${basePath} (${baseSize} bytes); resize the backing image first.`,
      top.path,
    );
  }

  const extents = await top.layerMap(0, top.size);
  const data = mergeRanges(extents.filter((e) => e.kind === 'data'));
  const zero = mergeRanges(extents.filter((e) => e.kind === 'zero'));
  const dataPieces = splitRanges(data, CHUNK_BYTES);
  const zeroPieces = splitRanges(zero, ZERO_STEP);
  const progress = new Progress(progressLabel, totalLength(data) + totalLength(zero), options);

  const touched = mergeRanges([...data, ...zero]);
  // A qcow2 base takes the data in new clusters (copyOnWrite), so its undo journal keeps only its tables: the
  // clusters the top replaces are freed, not overwritten, and later writes into the base reuse them.
  const atRisk = baseFormat === 'qcow2' ? await qcow2BytesAtRisk(basePath, touched, 'tables') : rawBytesAtRisk(baseSize, touched);
  await withUndoJournal(basePath, atRisk, () => progress.checkAborted(), progressLabel, async () => {
    // With its own chain: a write into part of a cluster copies the rest from below. The undo journal makes a
    // crash recoverable, so the base needs no flushes between its own writes until the end.
    const base =
      baseFormat === 'qcow2'
        ? await Qcow2Image.open(basePath, { writable: true, writeOrdering: 'on-flush', copyOnWrite: true })
        : await RawDisk.open(basePath, true);
    try {
      await pipelined(
        dataPieces,
        (buf, piece) => top.read(buf, piece.offset),
        async (buf, piece) => {
          await base.write(buf, piece.offset);
          progress.step(piece.length);
        },
        // The top is read alone (no backing), so reading the next piece while this one is written is safe.
        { readAhead: 1 },
      );
      for (const piece of zeroPieces) {
        await base.writeZeroes(piece.offset, piece.length);
        progress.step(piece.length);
      }
      await base.flush();
    } catch (e) {
      await closeQuietly(base);
      throw e;
    }
    await base.close();
  });
  // The base now holds everything the top does: from here on the commit is done even if emptying the top fails.
  progress.finish();
  return { base: basePath, dataBytes: totalLength(data), zeroBytes: totalLength(zero) };
}

/** A raw file is changed exactly where the guest writes go. */
function rawBytesAtRisk(fileLength: number, guest: readonly ByteRange[]): { fileLength: number; ranges: ByteRange[] } {
  const ranges = guest
    .map((r) => ({ offset: r.offset, length: Math.min(r.offset + r.length, fileLength) - r.offset }))
    .filter((r) => r.length > 0);
  return { fileLength, ranges };
}
