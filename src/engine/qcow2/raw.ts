import type { Disk, Extent } from './disk';
import { ImageError } from './errors';
import { ImageFile } from './file';

/** A raw image file as a disk: every byte is data; its size is the file's size. */
export class RawDisk implements Disk {
  readonly format = 'raw' as const;
  readonly backing = null;

  private constructor(private readonly file: ImageFile) {}

  static async open(path: string, writable = false): Promise<RawDisk> {
    return new RawDisk(await ImageFile.open(path, writable));
  }

  get path(): string {
    return this.file.path;
  }

  get size(): number {
    return this.file.size;
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    checkRange(this, offset, buf.length);
    await this.file.readPadded(buf, offset);
  }

  async write(data: Buffer, offset: number): Promise<void> {
    checkRange(this, offset, data.length);
    await this.file.write(data, offset);
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    checkRange(this, offset, length);
    const chunk = Buffer.alloc(Math.min(length, 4 * 1024 * 1024));
    for (let at = offset; at < offset + length; at += chunk.length) {
      await this.file.write(chunk.subarray(0, Math.min(chunk.length, offset + length - at)), at);
    }
  }

  async layerMap(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    return length > 0 ? [{ offset, length, kind: 'data' }] : [];
  }

  async bytesOnDisk(): Promise<number> {
    return this.file.blocksOnDisk();
  }

  async flush(): Promise<void> {
    if (this.file.writable) await this.file.sync();
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

export function checkRange(disk: Disk, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > disk.size) {
    throw new ImageError('OUT_OF_RANGE', `${disk.path}: the range at offset ${offset} of ${length} bytes lies outside the ${disk.size}-byte disk.`, disk.path);
  }
}
