import type { ByteRange } from './ranges';

/** Large enough to keep the disk busy, a multiple of every cluster size (up to 2 MiB) so writes fill whole clusters. */
export const CHUNK_BYTES = 4 * 1024 * 1024;

/** Reads in flight ahead of the piece being consumed: the host serves several requests at once much faster. */
const READ_AHEAD = 3;

export interface PipelineOptions {
  /** Buffer bytes per byte of a piece: 2 when a piece is read from two disks side by side (default 1). */
  width?: number;
  /**
   * Read the next piece while the current one is consumed (default true). Off when `consume` writes to an image
   * that the reads go through, so no read ever races a write of the same chain.
   */
  overlap?: boolean;
}

/** What `consume` returns to end the stream early (e.g. a comparison found its answer). */
export const STOP = 'stop';

type Consume<P> = (buf: Buffer, piece: P) => Promise<void | typeof STOP> | void | typeof STOP;

/**
 * Streams `pieces` (each at most CHUNK_BYTES) from `read` to `consume`: the reads of the next pieces run while
 * the current one is consumed, so reading one file and writing another overlap.
 */
export async function pipelined<P extends ByteRange>(
  pieces: readonly P[],
  read: (buf: Buffer, piece: P) => Promise<void>,
  consume: Consume<P>,
  options: PipelineOptions = {},
): Promise<void> {
  if (pieces.length === 0) return;
  const width = options.width ?? 1;
  let largest = 0;
  for (const p of pieces) largest = Math.max(largest, p.length);

  if (options.overlap === false) {
    const buf = Buffer.allocUnsafe(largest * width);
    for (const piece of pieces) {
      const view = buf.subarray(0, piece.length * width);
      await read(view, piece);
      if ((await consume(view, piece)) === STOP) return;
    }
    return;
  }

  // Reads run up to READ_AHEAD pieces ahead, each into its own buffer; pieces are consumed in order.
  const slots = Array.from({ length: Math.min(READ_AHEAD + 1, pieces.length) }, () => Buffer.allocUnsafe(largest * width));
  const bufferFor = (i: number): Buffer => slots[i % slots.length]!.subarray(0, pieces[i]!.length * width);
  const inFlight: Promise<void>[] = [];
  const start = (i: number): void => {
    const p = read(bufferFor(i), pieces[i]!);
    p.catch(() => {}); // rethrown where it is awaited; this only keeps Node from calling it unhandled
    inFlight[i] = p;
  };
  let started = 0;
  const settleAll = async (): Promise<void> => {
    await Promise.all(inFlight.slice(0, started).map((p) => p.catch(() => {})));
  };
  try {
    for (let i = 0; i < pieces.length; i++) {
      // Piece i's buffer was last used by piece i - slots.length, consumed already.
      while (started < pieces.length && started < i + slots.length) start(started++);
      await inFlight[i];
      delete inFlight[i];
      if ((await consume(bufferFor(i), pieces[i]!)) === STOP) break;
    }
  } finally {
    // Let reads still in flight finish before the caller closes the files under them.
    await settleAll();
  }
}
