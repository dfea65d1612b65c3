import { resolve } from 'node:path';
import { openDisk } from '../chain';
import type { Disk, OperationOptions } from '../disk';
import { ImageError } from '../errors';
import { Qcow2Image } from '../image';
import { qcow2BytesAtRisk } from './at-risk';
import { chainLayers, chainRanges, closeQuietly, layerIdentity, layerRanges, readPadded } from './layers';
import { CHUNK_BYTES, pipelined } from './pipeline';
import { Progress } from './progress';
import { mergeRanges, splitRanges, subtractRanges, totalLength, type ByteRange } from './ranges';
import { restoreFromJournal, withUndoJournal } from './undo-journal';

export interface RebaseOptions extends OperationOptions {
  /** Format recorded for the new backing file; default: what it is. */
  backingFormat?: 'qcow2' | 'raw';
}

export interface RebaseResult {
  /** Bytes of the old chain copied into the top layer, because the new backing reads differently there. */
  copiedBytes: number;
  /** The new backing was a layer of the old chain (or none), so only the dropped layers' allocations were read. */
  fastPath: boolean;
}

/**
 * Points the top layer at a new backing file (or none) without changing what it reads, like
 * `qemu-img rebase -b`: wherever the top is unallocated and the old chain reads differently from the new one,
 * the old content is first copied into the top. When the new backing is a layer of the old chain (deleting
 * snapshots), only ranges the dropped layers allocate can differ, so the cost follows their data, not the
 * disk size. Backing files are only read. An abort or error (a full disk) puts the top's tables back from an
 * undo journal kept next to it (so it reads as before); a rebase killed halfway is rolled back the next time one starts on that
 * layer (or by `rollBackInterruptedRebase`).
 */
export async function rebase(topPath: string, newBacking: string | null, options: RebaseOptions = {}): Promise<RebaseResult> {
  const path = resolve(topPath);
  // A journal left by a rebase that was killed halfway: put the top back first, then rebase afresh.
  await restoreFromJournal(path);
  // Opened with its old chain: a write into part of a cluster copies the rest from there, which is the old content.
  // The undo journal, not the order of writes, makes a crash harmless, so the image flushes once, at the end.
  const top = await Qcow2Image.open(path, { writable: true, writeOrdering: 'on-flush' });
  let next: Disk | null = null;
  // Once the change below runs, it closes the top itself (before a failure puts the file back); until then (the
  // journal may fail to be made: a full disk), this function does.
  let handedOver = false;
  try {
    const newPath = newBacking === null ? null : resolve(newBacking);
    if (newPath !== null) next = await openDisk(newPath);
    const plan = await planRebase(top, next, options);
    // Only tables: the pieces are unallocated in the top (or its unallocated subclusters), and free clusters a
    // new allocation may take hold nothing the restored tables point at.
    const atRisk = await qcow2BytesAtRisk(path, plan.pieces, 'tables');
    const copiedBytes = await withUndoJournal(path, atRisk, () => plan.progress.checkAborted(), `Rebasing ${path}`, async () => {
      handedOver = true;
      try {
        const copied = await copyPieces(top, next, plan.pieces, plan.progress);
        await top.flush();
        await top.setBacking(newPath, newPath === null ? undefined : (options.backingFormat ?? next?.format));
        await top.close();
        return copied;
      } catch (e) {
        await closeQuietly(top);
        throw e;
      }
    });
    return { copiedBytes, fastPath: plan.fastPath };
  } finally {
    await closeQuietly(next);
    if (!handedOver) await closeQuietly(top);
  }
}

/** Restores a layer from the undo journal an interrupted rebase left next to it; true if it did. */
export async function rollBackInterruptedRebase(topPath: string): Promise<boolean> {
  return restoreFromJournal(resolve(topPath));
}

/** The ranges to copy into the top: where it is unallocated and the old and new chains may read differently. */
async function planRebase(top: Qcow2Image, next: Disk | null, options: OperationOptions): Promise<{ pieces: ByteRange[]; fastPath: boolean; progress: Progress }> {
  const old = top.backing;
  const oldLayers = old ? chainLayers(old) : [];
  const oldIds = await Promise.all(oldLayers.map(layerIdentity));
  const topId = await layerIdentity(top);
  if (next) {
    for (const layer of chainLayers(next)) {
      if ((await layerIdentity(layer)) === topId) {
        throw new ImageError('BACKING_LOOP', `${next.path} is ${top.path} or is backed by it; rebasing onto it would make a loop.`, top.path);
      }
    }
  }
  const keep = next === null ? oldLayers.length : oldIds.indexOf(await layerIdentity(next));
  const fastPath = keep >= 0;

  let candidates: ByteRange[];
  if (fastPath) {
    // Only what the dropped layers allocate can read differently; with no new backing, zeros read the same anyway.
    const kinds = next === null ? (['data'] as const) : (['data', 'zero'] as const);
    const dropped = oldLayers.slice(0, keep);
    candidates = mergeRanges((await Promise.all(dropped.map((l) => layerRanges(l, top.size, kinds)))).flat());
  } else {
    // Any range where either chain reads data; where both read zeros there is nothing to compare.
    const oldData = old ? await chainRanges(old, 0, top.size, ['data']) : [];
    const newData = next ? await chainRanges(next, 0, top.size, ['data']) : [];
    candidates = mergeRanges([...oldData, ...newData]);
  }
  const topAllocated = await layerRanges(top, top.size, ['data', 'zero']);
  // Never write where the top holds something: only its unallocated ranges read through the backing file.
  const pieces = splitRanges(subtractRanges(candidates, topAllocated), CHUNK_BYTES);
  return { pieces, fastPath, progress: new Progress(`Rebasing ${top.path}`, totalLength(pieces), options) };
}

/** Copies the old chain's content of `pieces` into the top, cluster runs that differ from the new chain only. */
async function copyPieces(top: Qcow2Image, next: Disk | null, pieces: ByteRange[], progress: Progress): Promise<number> {
  const old = top.backing;
  let copiedBytes = 0;
  const cs = top.clusterSize;
  await pipelined(
    pieces,
    async (buf, piece) => {
      const n = piece.length;
      await (old ? readPadded(old, buf.subarray(0, n), piece.offset) : buf.fill(0, 0, n));
      await (next ? readPadded(next, buf.subarray(n), piece.offset) : buf.fill(0, n));
    },
    async (buf, piece) => {
      const n = piece.length;
      const before = buf.subarray(0, n);
      const after = buf.subarray(n);
      // Compare cluster by cluster and copy runs of differing ones, so untouched clusters stay unallocated.
      let runStart = -1;
      const copy = async (end: number): Promise<void> => {
        if (runStart < 0) return;
        await top.write(before.subarray(runStart, end), piece.offset + runStart);
        copiedBytes += end - runStart;
        runStart = -1;
      };
      for (let at = 0; at < n; ) {
        const end = Math.min(n, (Math.floor((piece.offset + at) / cs) + 1) * cs - piece.offset);
        if (before.subarray(at, end).equals(after.subarray(at, end))) await copy(at);
        else if (runStart < 0) runStart = at;
        at = end;
      }
      await copy(n);
      progress.step(n);
    },
    // The reads go through the old and new backing chains, never through the top being written: the next piece
    // can be read while this one is written.
    { width: 2, readAhead: 1 },
  );
  progress.finish();
  return copiedBytes;
}
