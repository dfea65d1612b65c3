import { chainMap } from '../chain';
import type { ChainExtent, Disk, OperationOptions } from '../disk';
import { firstDifferentByte, firstNonZeroByte } from './bytes';
import { chainRanges, openSource, type DiskSource } from './layers';
import { CHUNK_BYTES, pipelined, STOP } from './pipeline';
import { Progress } from './progress';
import { splitRanges, totalLength, type ByteRange } from './ranges';

export interface CompareResult {
  identical: boolean;
  /** Guest offset of the first byte that reads differently, or null when identical. */
  firstDifference: number | null;
}

/** Which side has to be read in a range: both, only one (the other reads zeros there), or neither. */
type Reads = 'both' | 'a' | 'b';

interface Piece extends ByteRange {
  reads: Reads;
}

/**
 * Whether two disks read the same, like `qemu-img compare`: disks of different sizes are identical when the
 * larger one's extra part reads as zeros. Ranges both chains map as zero or unallocated are not read; where
 * only one side has data, only that side is read and must be all zeros.
 */
export async function compare(a: DiskSource, b: DiskSource, options: OperationOptions = {}): Promise<CompareResult> {
  const left = await openSource(a);
  try {
    const right = await openSource(b);
    try {
      return await compareDisks(left.disk, right.disk, options);
    } finally {
      await right.release();
    }
  } finally {
    await left.release();
  }
}

async function compareDisks(a: Disk, b: Disk, options: OperationOptions): Promise<CompareResult> {
  const common = Math.min(a.size, b.size);
  const plan: Piece[] = [];
  if (common > 0) {
    const [mapA, mapB] = await Promise.all([chainMap(a, 0, common), chainMap(b, 0, common)]);
    for (const r of readPlan(mapA, mapB)) for (const p of splitRanges([r], CHUNK_BYTES)) plan.push({ ...p, reads: r.reads });
  }
  // The larger disk's extra part must read as zeros.
  const larger = a.size > b.size ? a : b;
  if (larger.size > common) {
    const extra = await chainRanges(larger, common, larger.size - common, ['data']);
    for (const p of splitRanges(extra, CHUNK_BYTES)) plan.push({ ...p, reads: larger === a ? 'a' : 'b' });
  }

  const progress = new Progress(`Comparing ${a.path} with ${b.path}`, totalLength(plan), options);
  let firstDifference: number | null = null;
  await pipelined(
      plan,
      async (buf, piece) => {
        const n = piece.length;
        await Promise.all([
          piece.reads !== 'b' ? a.read(buf.subarray(0, n), piece.offset) : null,
          piece.reads !== 'a' ? b.read(buf.subarray(n), piece.offset) : null,
        ]);
      },
      (buf, piece) => {
        const n = piece.length;
        const at =
          piece.reads === 'both'
            ? firstDifferentByte(buf.subarray(0, n), buf.subarray(n))
            : firstNonZeroByte(piece.reads === 'a' ? buf.subarray(0, n) : buf.subarray(n));
        if (at >= 0) {
          firstDifference = piece.offset + at;
          return STOP;
        }
        progress.step(n);
        return undefined;
      },
      { width: 2 },
    );
  if (firstDifference === null) progress.finish();
  return { identical: firstDifference === null, firstDifference };
}

/** Walks both maps together and says, range by range, which sides must be read. */
function readPlan(mapA: readonly ChainExtent[], mapB: readonly ChainExtent[]): (ByteRange & { reads: Reads })[] {
  const out: (ByteRange & { reads: Reads })[] = [];
  let i = 0;
  let j = 0;
  let at = Math.max(mapA[0]?.offset ?? 0, mapB[0]?.offset ?? 0);
  while (i < mapA.length && j < mapB.length) {
    const ea = mapA[i]!;
    const eb = mapB[j]!;
    const end = Math.min(ea.offset + ea.length, eb.offset + eb.length);
    if (end > at) {
      const dataA = ea.kind === 'data';
      const dataB = eb.kind === 'data';
      if (dataA || dataB) {
        const reads: Reads = dataA && dataB ? 'both' : dataA ? 'a' : 'b';
        const last = out[out.length - 1];
        if (last && last.reads === reads && last.offset + last.length === at) last.length += end - at;
        else out.push({ offset: at, length: end - at, reads });
      }
      at = end;
    }
    if (ea.offset + ea.length <= at) i++;
    if (eb.offset + eb.length <= at) j++;
  }
  return out;
}
