// Bringing a source's bytes into a new file of the cache (`<random>.partial`), hashing them on the way:
// a download over http(s), or a copy of a local file (a reflink where the file system can, else a plain copy).
// Progress is reported as bytes done of the total; the AbortSignal stops it. The caller removes the file on failure.
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, open, rm, statfs, type FileHandle } from 'node:fs/promises';
import { HEAD_BYTES, sniff, withFileName } from './detect';
import { cacheIoError, ImageFetchError } from './errors';
import { download, type DownloadStart } from './http-download';

const CHUNK = 1024 * 1024;
/** Progress is reported at most once per this many bytes (and at the start and end). */
const PROGRESS_STEP = 256 * 1024;

export type ProgressCallback = (done: number, total: number | null) => void;

export interface TransferOptions {
  cacheDir: string;
  /** The source as it is shown (a redacted URL, an absolute path). */
  label: string;
  onProgress?: ProgressCallback | undefined;
  signal?: AbortSignal | undefined;
  idleTimeoutMs?: number | undefined;
}

export interface Transferred {
  sha256: string;
  size: number;
}

function reporter(callback: ProgressCallback | undefined): (done: number, total: number | null, force?: boolean) => void {
  let last = -Infinity;
  return (done, total, force = false) => {
    if (callback === undefined || (!force && done - last < PROGRESS_STEP)) return;
    last = done;
    callback(done, total);
  };
}

function cancelled(label: string): ImageFetchError {
  return new ImageFetchError('CANCELLED', `Fetching ${label} was cancelled.`, { source: label });
}

/** Refuses up front when the file cannot fit: better than failing after most of a gigabyte. */
export async function ensureSpace(cacheDir: string, bytes: number, label: string): Promise<void> {
  let free: number;
  try {
    const fs = await statfs(cacheDir);
    free = fs.bavail * fs.bsize;
  } catch {
    return; // not knowable here: the write itself will say ENOSPC
  }
  if (free < bytes) {
    const mib = (n: number): string => `${Math.ceil(n / (1024 * 1024))} MiB`;
    throw new ImageFetchError('NO_SPACE', `${label} needs ${mib(bytes)} but the disk holding the image cache (${cacheDir}) has ${mib(free)} free: free some space and try again.`, { source: label });
  }
}

/** Appends to the partial file in large writes, turning a full disk into NO_SPACE. */
class PartialWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private offset = 0;

  constructor(
    private readonly fh: FileHandle,
    private readonly cacheDir: string,
    private readonly label: string,
  ) {}

  async append(chunk: Buffer): Promise<void> {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= CHUNK) await this.drain();
  }

  async finish(): Promise<void> {
    await this.drain();
    try {
      await this.fh.sync();
    } catch (e) {
      throw cacheIoError(e, this.cacheDir, this.label);
    }
  }

  private async drain(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    try {
      for (let done = 0; done < buf.length; ) {
        const { bytesWritten } = await this.fh.write(buf, done, buf.length - done, this.offset + done);
        done += bytesWritten;
      }
    } catch (e) {
      throw cacheIoError(e, this.cacheDir, this.label);
    }
    this.offset += buf.length;
  }
}

/** Downloads `url` into `partial` (created here), refusing early when the first bytes are not a disk image. */
export async function downloadToFile(url: URL, partial: string, options: TransferOptions): Promise<Transferred & { start: DownloadStart }> {
  const { cacheDir, label } = options;
  const report = reporter(options.onProgress);
  const hash = createHash('sha256');
  let fh: FileHandle;
  try {
    fh = await open(partial, 'wx', 0o644);
  } catch (e) {
    throw cacheIoError(e, cacheDir, label);
  }
  try {
    const writer = new PartialWriter(fh, cacheDir, label);
    let total: number | null = null;
    let done = 0;
    let head: Buffer[] | null = [];
    const start = await download(url, {
      signal: options.signal,
      idleTimeoutMs: options.idleTimeoutMs,
      onStart: async (s) => {
        total = s.total;
        if (total !== null) await ensureSpace(cacheDir, total, label);
        report(0, total, true);
      },
      onChunk: async (chunk) => {
        if (head !== null) {
          // A login page or a .xz is known from its first bytes: no need to fetch the rest.
          head.push(chunk);
          const bytes = Buffer.concat(head);
          if (bytes.length >= HEAD_BYTES) {
            head = null;
            const verdict = sniff({ head: bytes, tail: null, size: null, fromUrl: true });
            if (verdict.kind === 'refused') throw new ImageFetchError(verdict.code, `${label} ${withFileName(verdict.reason, label, true)}.`, { source: label });
          }
        }
        hash.update(chunk);
        await writer.append(chunk);
        done += chunk.length;
        report(done, total);
      },
    });
    await writer.finish();
    report(done, total ?? done, true);
    return { sha256: hash.digest('hex'), size: done, start };
  } finally {
    await fh.close().catch(() => {});
  }
}

/** Copies the local file `source` (`size` bytes) into `partial`, as a reflink when possible. */
export async function copyToFile(source: string, size: number, partial: string, options: TransferOptions): Promise<Transferred> {
  const { cacheDir, label, signal } = options;
  if (signal?.aborted) throw cancelled(label);
  try {
    // A reflink shares the blocks (btrfs, xfs, APFS): instant and free until one side is written.
    await copyFile(source, partial, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE_FORCE);
    return { sha256: await hashFile(partial, size, options), size };
  } catch (e) {
    if (e instanceof ImageFetchError) throw e;
    await rm(partial, { force: true }).catch(() => {});
  }
  await ensureSpace(cacheDir, size, label);
  const report = reporter(options.onProgress);
  const hash = createHash('sha256');
  let src: FileHandle;
  try {
    src = await open(source, 'r');
  } catch (e) {
    throw sourceError(e, label);
  }
  let dst: FileHandle | null = null;
  try {
    dst = await open(partial, 'wx', 0o644).catch((e: unknown) => {
      throw cacheIoError(e, cacheDir, label);
    });
    const writer = new PartialWriter(dst, cacheDir, label);
    const buf = Buffer.alloc(CHUNK);
    let done = 0;
    report(0, size, true);
    for (;;) {
      if (signal?.aborted) throw cancelled(label);
      const { bytesRead } = await src.read(buf, 0, CHUNK, done).catch((e: unknown) => {
        throw sourceError(e, label);
      });
      if (bytesRead === 0) break;
      // The writer keeps the buffer until it drains: give it a copy.
      const chunk = Buffer.from(buf.subarray(0, bytesRead));
      hash.update(chunk);
      await writer.append(chunk);
      done += bytesRead;
      report(done, size);
    }
    await writer.finish();
    report(done, done, true);
    return { sha256: hash.digest('hex'), size: done };
  } finally {
    await src.close().catch(() => {});
    await dst?.close().catch(() => {});
  }
}

/** Hashes a file already in the cache (a reflinked copy), with progress and cancellation. */
async function hashFile(path: string, size: number, options: TransferOptions): Promise<string> {
  const report = reporter(options.onProgress);
  const hash = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(CHUNK);
    let done = 0;
    report(0, size, true);
    for (;;) {
      if (options.signal?.aborted) throw cancelled(options.label);
      const { bytesRead } = await fh.read(buf, 0, CHUNK, done);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      done += bytesRead;
      report(done, size);
    }
    // The reflinked copy must be on disk before it is renamed into place, like a written one.
    await fh.sync();
    report(done, done, true);
    return hash.digest('hex');
  } catch (e) {
    throw cacheIoError(e, options.cacheDir, options.label);
  } finally {
    await fh.close();
  }
}

export function sourceError(e: unknown, label: string): ImageFetchError {
  if (e instanceof ImageFetchError) return e;
  const err = e as NodeJS.ErrnoException;
  switch (err?.code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new ImageFetchError('NOT_FOUND', `${label} does not exist: check the path.`, { source: label, cause: e });
    case 'EACCES':
    case 'EPERM':
      return new ImageFetchError('IO_ERROR', `${label} cannot be read: permission denied.`, { source: label, cause: e });
    case 'EISDIR':
      return new ImageFetchError('NOT_AN_IMAGE', `${label} is a folder, not a disk image: give the image file inside it.`, { source: label, cause: e });
    default:
      return new ImageFetchError('IO_ERROR', `${label} cannot be read: ${err?.message ?? String(e)}.`, { source: label, cause: e });
  }
}
