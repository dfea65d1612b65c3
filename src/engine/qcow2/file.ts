import { open, stat, type FileHandle } from 'node:fs/promises';
import { ImageError, toImageError } from './errors';

/** An image file opened for positional I/O. Short reads of metadata are errors, never garbage. */
export class ImageFile {
  private constructor(
    readonly path: string,
    private fh: FileHandle,
    /** Bytes in the file; kept up to date by our own writes. */
    public size: number,
    readonly writable: boolean,
  ) {}

  static async open(path: string, writable: boolean): Promise<ImageFile> {
    try {
      // Look before opening: opening a FIFO would wait for a writer forever.
      const before = await stat(path);
      if (!before.isFile() && !before.isBlockDevice()) {
        throw new ImageError('INVALID_ARGUMENT', `${path} is not a regular file.`, path);
      }
      const fh = await open(path, writable ? 'r+' : 'r');
      const st = await fh.stat();
      if (!st.isFile() && !st.isBlockDevice()) {
        await fh.close();
        throw new ImageError('INVALID_ARGUMENT', `${path} is not a regular file.`, path);
      }
      return new ImageFile(path, fh, st.size, writable);
    } catch (e) {
      throw toImageError(e, path);
    }
  }

  /** Reads exactly buf.length bytes at `offset`; a range past the end of the file is a damaged image. */
  async readExact(buf: Buffer, offset: number, what: string): Promise<void> {
    if (offset < 0 || offset + buf.length > this.size) {
      throw new ImageError('INVALID_IMAGE', `${this.path}: the ${what} at offset ${offset} (${buf.length} bytes) lies past the end of the file.`, this.path);
    }
    await this.readInto(buf, offset);
  }

  /** Reads what the file has at `offset`, zero-filling past its end. */
  async readPadded(buf: Buffer, offset: number): Promise<void> {
    const avail = Math.max(0, Math.min(buf.length, this.size - offset));
    if (avail < buf.length) buf.fill(0, avail);
    if (avail > 0) await this.readInto(buf.subarray(0, avail), offset);
  }

  private async readInto(buf: Buffer, offset: number): Promise<void> {
    let done = 0;
    try {
      while (done < buf.length) {
        const { bytesRead } = await this.fh.read(buf, done, buf.length - done, offset + done);
        if (bytesRead === 0) throw new ImageError('INVALID_IMAGE', `${this.path}: unexpected end of file at offset ${offset + done}.`, this.path);
        done += bytesRead;
      }
    } catch (e) {
      throw toImageError(e, this.path);
    }
  }

  async write(buf: Buffer, offset: number): Promise<void> {
    if (!this.writable) throw new ImageError('READ_ONLY', `${this.path} is open read-only.`, this.path);
    let done = 0;
    try {
      while (done < buf.length) {
        const { bytesWritten } = await this.fh.write(buf, done, buf.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (e) {
      throw toImageError(e, this.path);
    }
    this.size = Math.max(this.size, offset + buf.length);
  }

  async truncate(length: number): Promise<void> {
    try {
      await this.fh.truncate(length);
    } catch (e) {
      throw toImageError(e, this.path);
    }
    this.size = length;
  }

  async sync(): Promise<void> {
    try {
      await this.fh.datasync();
    } catch (e) {
      throw toImageError(e, this.path);
    }
  }

  async blocksOnDisk(): Promise<number> {
    const st = await this.fh.stat();
    return st.blocks * 512;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
