/** What one layer holds for a range of the virtual disk. */
export type ExtentKind = 'data' | 'zero' | 'unallocated';

export interface Extent {
  offset: number;
  length: number;
  /** data: this layer holds bytes; zero: reads as zeros here; unallocated: falls through to the backing layer. */
  kind: ExtentKind;
}

/** What the whole chain reads for a range, and which layer serves it (as `qemu-img map` reports). */
export interface ChainExtent {
  offset: number;
  length: number;
  /** data or zero from the layer at `depth`; unallocated: no layer has it, it reads as zeros. */
  kind: ExtentKind;
  /** 0 = top layer, 1 = its backing file, ...; for unallocated, the depth of the bottom layer (as qemu-img map says). */
  depth: number;
  /** The absolute path of the serving layer, or null for unallocated. */
  path: string | null;
}

/**
 * A virtual disk that can be read: a qcow2 layer with its backing chain, a raw file, or a read-only view of a
 * qcow2 internal snapshot. Offsets and sizes are byte counts (safe integers).
 */
export interface Disk {
  /** Absolute path of this layer's file. */
  readonly path: string;
  readonly format: 'qcow2' | 'raw';
  /** Virtual size in bytes. */
  readonly size: number;
  /** The next layer down, or null. */
  readonly backing: Disk | null;
  /** Fills `buf` with the virtual disk's bytes at `offset`, through the backing chain. The range must lie within `size`. */
  read(buf: Buffer, offset: number): Promise<void>;
  /** What this layer alone holds in [offset, offset + length), adjacent extents of one kind merged. */
  layerMap(offset: number, length: number): Promise<Extent[]>;
  /** Closes this layer and every layer below it. */
  close(): Promise<void>;
}

/** Progress and cancellation for long operations (one definition for the whole engine). */
export type { OperationOptions } from '../operation';
