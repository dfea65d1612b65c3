import { alignedBuffer } from './aligned-buffer';
import type { ByteRange } from './ranges';

/** Large enough to keep the disk busy, a multiple of every cluster size (up to 2 MiB) so writes fill whole clusters. */
export const CHUNK_BYTES = 4 * 1024 * 1024;


export interface PipelineOptions {
  /** Buffer bytes per byte of a piece: 2 when a piece is read from two disks side by side (default 1). */
  width?: number;
  /**
   * Pieces read while the current one is consumed (default 0: read, then consume). Measured on a loaded
   * 2-core VM with the data in the page cache, reading ahead made flatten and compare slower, not faster: the
   * bytes are then consumed after they have left the CPU cache, and more requests compete for the same cores.
   * Never more than 0 when `consume` writes to an image the reads go through.
   */
  readAhead?: number;
}

/** What `consume` returns to end the stream early (e.g. a comparison found its answer). */
export const STOP = 'stop';

type Consume<P> = (buf: Buffer, piece: P) => Promise<void | typeof STOP> | void | typeof STOP;

/** Streams `pieces` (each at most CHUNK_BYTES) from `read` to `consume`, in order, through reused aligned buffers. */
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

  const readAhead = options.readAhead ?? 0;
  if (readAhead === 0) {
    const buf = alignedBuffer(largest * width);
    for (const piece of pieces) {
      const view = buf.subarray(0, piece.length * width);
      await read(view, piece);
      if ((await consume(view, piece)) === STOP) return;
    }
    return;
  }

  // Reads run up to readAhead pieces ahead, each into its own buffer; pieces are consumed in order.
  const slots = Array.from({ length: Math.min(readAhead + 1, pieces.length) }, () => alignedBuffer(largest * width));
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
