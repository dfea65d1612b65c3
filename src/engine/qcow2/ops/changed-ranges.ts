import type { Disk, OperationOptions } from '../disk';
import { differingRuns } from './bytes';
import { chainLayers, chainRanges, layerIdentity, layerRanges, openSource, readPadded, type DiskSource } from './layers';
import { CHUNK_BYTES, pipelined } from './pipeline';
import { Progress } from './progress';
import { mergeRanges, splitRanges, totalLength, type ByteRange } from './ranges';

export interface ChangedRangesOptions extends OperationOptions {
  /** Read the candidate ranges in both disks and keep only the bytes that really differ (default false). */
  exact?: boolean;
}

export interface ChangedRanges {
  /** Bytes in `ranges`. */
  bytes: number;
  /** Sorted, disjoint ranges of the guest disk where the two states differ (or, unless exact, may differ). */
  ranges: ByteRange[];
  /** The highest layer both chains share (its real path), or null when they share none. */
  sharedLayer: string | null;
}

/**
 * What changed between two states of a disk, e.g. two snapshots: for chains that share a layer, the union of
 * what the layers above it on either side allocate (data or zeros), from allocation maps alone, without reading
 * data. Chains that share no layer fall back to everything either chain allocates. With `exact`, those ranges
 * are read in both and narrowed to the bytes that really differ.
 */
export async function changedRanges(a: DiskSource, b: DiskSource, options: ChangedRangesOptions = {}): Promise<ChangedRanges> {
  const left = await openSource(a);
  try {
    const right = await openSource(b);
    try {
      return await changedBetween(left.disk, right.disk, options);
    } finally {
      await right.release();
    }
  } finally {
    await left.release();
  }
}

async function changedBetween(a: Disk, b: Disk, options: ChangedRangesOptions): Promise<ChangedRanges> {
  const size = Math.max(a.size, b.size);
  const common = Math.min(a.size, b.size);
  const layersA = chainLayers(a);
  const layersB = chainLayers(b);
  const idsA = await Promise.all(layersA.map(layerIdentity));
  const idsB = await Promise.all(layersB.map(layerIdentity));
  const sharedA = idsA.findIndex((id) => idsB.includes(id));
  const sharedLayer = sharedA >= 0 ? idsA[sharedA]! : null;

  let candidates: ByteRange[];
  if (sharedLayer !== null) {
    const sharedB = idsB.indexOf(sharedLayer);
    const own = [...layersA.slice(0, sharedA), ...layersB.slice(0, sharedB)];
    const parts = await Promise.all(own.map((layer) => layerRanges(layer, common, ['data', 'zero'])));
    candidates = parts.flat();
  } else {
    const [allocA, allocB] = await Promise.all([
      chainRanges(a, 0, common, ['data', 'zero']),
      chainRanges(b, 0, common, ['data', 'zero']),
    ]);
    candidates = [...allocA, ...allocB];
  }
  // Past the smaller disk's end, whatever the larger one holds counts against the zeros the smaller one reads.
  const larger = a.size > b.size ? a : b;
  if (size > common) candidates.push(...(await chainRanges(larger, common, size - common, ['data'])));
  const ranges = mergeRanges(candidates);
  if (options.exact !== true) return { bytes: totalLength(ranges), ranges, sharedLayer };

  const pieces = splitRanges(ranges, CHUNK_BYTES);
  const progress = new Progress(`Comparing ${a.path} with ${b.path}`, totalLength(pieces), options);
  const differing: ByteRange[] = [];
  let bytes = 0;
  await pipelined(
    pieces,
    async (buf, piece) => {
      const n = piece.length;
      await Promise.all([readPadded(a, buf.subarray(0, n), piece.offset), readPadded(b, buf.subarray(n), piece.offset)]);
    },
    (buf, piece) => {
      const n = piece.length;
      const runs = differingRuns(buf.subarray(0, n), buf.subarray(n), piece.offset);
      differing.push(...runs.ranges);
      bytes += runs.bytes;
      progress.step(n);
    },
    { width: 2 },
  );
  progress.finish();
  return { bytes, ranges: mergeRanges(differing), sharedLayer };
}
