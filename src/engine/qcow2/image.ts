// STUB: the real implementation is being written; the signatures below are the contract.
import type { Disk, Extent } from './disk';
import type { Header } from './header';

export interface OpenOptions {
  /** Open for writing (default false). A dirty image opened for writing is repaired first. */
  writable?: boolean;
  /** Open the backing chain (default true). Without it, unallocated clusters read as zeros. */
  backing?: boolean;
  /** Most layers below this one (default 64). */
  maxBackingDepth?: number;
}

export interface CreateOptions {
  /** Virtual size in bytes; defaults to the backing file's size. */
  size?: number;
  /** Default 65536; a power of two from 512 to 2 MiB. */
  clusterSize?: number;
  /** The backing file as the caller names it; stored relative to the new image's folder. */
  backingFile?: string;
  /** Default: detected from the backing file ('qcow2' or 'raw'). */
  backingFormat?: 'qcow2' | 'raw';
  /** Default 3. */
  version?: 2 | 3;
  /** Extended L2 entries with subclusters (version 3 only). */
  extendedL2?: boolean;
}

export interface InternalSnapshot {
  id: string;
  name: string;
  date: Date;
  vmClockNs: number;
  vmStateSize: number;
  /** Virtual disk size when the snapshot was taken. */
  diskSize: number;
}

export class Qcow2Image implements Disk {
  readonly format = 'qcow2' as const;
  readonly path: string = '';
  readonly size: number = 0;
  readonly backing: Disk | null = null;
  readonly header!: Header;
  readonly clusterSize: number = 65536;
  readonly readOnly: boolean = true;
  /** The image was dirty when opened (refcounts may be stale). */
  readonly wasDirty: boolean = false;
  readonly snapshots: InternalSnapshot[] = [];

  static async open(_path: string, _options?: OpenOptions): Promise<Qcow2Image> {
    throw new Error('not implemented');
  }
  static async create(_path: string, _options: CreateOptions): Promise<void> {
    throw new Error('not implemented');
  }
  async read(_buf: Buffer, _offset: number): Promise<void> {}
  async layerMap(_offset: number, _length: number): Promise<Extent[]> {
    return [];
  }
  /** Writes bytes at a guest offset (copy-on-write from the backing chain and from internal snapshots). */
  async write(_data: Buffer, _offset: number): Promise<void> {}
  /** Makes a range read as zeros: zero clusters where the format allows, zero bytes elsewhere. */
  async writeZeroes(_offset: number, _length: number): Promise<void> {}
  /** Frees every cluster of this layer so it reads through to its backing file again (an empty overlay). */
  async makeEmpty(): Promise<void> {}
  /** Points this layer at another backing file (stored relative) or none, without touching data. */
  async setBacking(_backingFile: string | null, _format?: 'qcow2' | 'raw'): Promise<void> {}
  /** A read-only view of the disk as it was in an internal snapshot (by id or name). */
  async openSnapshot(_idOrName: string): Promise<Disk> {
    throw new Error('not implemented');
  }
  /** Bytes the file occupies on the host disk. */
  async bytesOnDisk(): Promise<number> {
    return 0;
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
