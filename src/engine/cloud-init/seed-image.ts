/**
 * Writes the NoCloud seed volume: an ISO 9660 image labelled `cidata`, written natively so no genisoimage,
 * cloud-localds or mkisofs is needed on Linux, macOS or Windows.
 *
 * Why ISO 9660 rather than FAT: a CD-ROM image is read-only by nature, which is what a seed is (the guest cannot
 * change what it booted from); it attaches the same way under every accelerator (KVM, HVF, WHPX, TCG) as an
 * `ide-cd`/`scsi-cd` or a read-only virtio disk; every distribution kernel reads it (isofs), as does cloudbase-init
 * on Windows guests; and it is what `cloud-localds` and the NoCloud documentation produce, so guests are tested
 * with it. FAT would need a cluster allocator, a FAT12/16 choice by size and long-file-name checksums for the same
 * four files. Rock Ridge + Joliet give the guest the real names (`meta-data`, not `META_DAT.`).
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SeedError, isSeedError } from './errors';
import { buildIso9660 } from './iso9660';

export interface SeedFile {
  /** `meta-data`, `user-data`, `vendor-data` or `network-config` for NoCloud; any portable name is accepted. */
  name: string;
  data: Buffer | string;
}

export interface SeedImageOptions {
  /** Volume label; NoCloud looks for `cidata` (or `CIDATA`). */
  label?: string;
  /** Time recorded in the image; defaults to now. A fixed time makes the image byte-for-byte reproducible. */
  modified?: Date;
}

export const SEED_LABEL = 'cidata';

/**
 * Writes `files` as a read-only (0444) ISO 9660 image at `path`, replacing any earlier seed there. The image is
 * written to a temporary file in the same folder, flushed, and renamed into place, so `path` is never half-written.
 */
export async function writeSeedImage(path: string, files: readonly SeedFile[], options: SeedImageOptions = {}): Promise<void> {
  const image = buildIso9660(
    files.map((f) => ({ name: f.name, data: typeof f.data === 'string' ? Buffer.from(f.data, 'utf8') : f.data })),
    { label: options.label ?? SEED_LABEL, modified: options.modified ?? new Date() },
  );
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await fh.writeFile(image);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await chmod(tmp, 0o444);
    await replace(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => {});
    throw toSeedIoError(e, `writing the cloud-init seed ${path}`);
  }
  if (process.platform !== 'win32') await syncFolder(dirname(path));
}

/** rename(2) replaces a read-only file on POSIX; Windows refuses to, so the old seed is made writable first there. */
async function replace(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'EACCES') throw e;
    try {
      await chmod(to, 0o644);
    } catch {
      throw e; // not a read-only target: the original error is the one to report
    }
    await rename(from, to);
  }
}

async function syncFolder(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } catch {
    // Some file systems refuse fsync on folders; the rename is still atomic there.
  } finally {
    await fh.close();
  }
}

function toSeedIoError(e: unknown, what: string): SeedError {
  if (isSeedError(e)) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOSPC' || err?.code === 'EDQUOT') {
    return new SeedError('NO_SPACE', `The disk is full while ${what}: free some space and try again.`, { cause: e });
  }
  return new SeedError('IO_ERROR', `${what}: ${err?.message ?? String(e)}`, { cause: e });
}
