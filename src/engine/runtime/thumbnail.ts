// Thumbnails of a running machine's screen: a raw screendump while the guest stands still (cheap: QEMU copies its
// framebuffer into a PPM file), turned into a small PNG afterwards, when the guest runs again.
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { writeAtomically } from '../os';
import type { QemuOptions } from './qemu';
import type { QmpClient } from './qmp';
import { MAX_SCREEN_FILE_BYTES, thumbnailPng } from './screen-image';
import { screendump } from './screendump';

/**
 * Where the raw screendump for `thumbnail` waits until it is scaled: a hidden `.partial` name, which recovery
 * removes as a killed process's temporary file.
 */
export function rawScreenFile(thumbnail: string): string {
  return join(dirname(thumbnail), `.${basename(thumbnail)}.screen.partial`);
}

/** QMP screendump as binary PPM (no PNG encoding inside QEMU, so the guest's stop stays short). */
export async function dumpRawScreen(qmp: QmpClient, file: string): Promise<void> {
  await qmp.execute('screendump', { filename: file, format: 'ppm' });
}

/**
 * Turns the raw screendump for `thumbnail` into the thumbnail PNG (written atomically) and removes the raw file;
 * false (and no thumbnail) when there is none or it cannot be read: a snapshot never fails for its picture.
 */
export async function finishThumbnail(thumbnail: string): Promise<boolean> {
  const raw = rawScreenFile(thumbnail);
  try {
    // A guest can set a huge mode: such a dump is not even read.
    if ((await stat(raw)).size > MAX_SCREEN_FILE_BYTES) return false;
    const png = thumbnailPng(await readFile(raw));
    // Not flushed: a thumbnail lost to a power cut only shows as a placeholder.
    await writeAtomically(thumbnail, (tmp) => writeFile(tmp, png, { flag: 'wx', mode: 0o644 }), { durable: false });
    return true;
  } catch {
    return false;
  } finally {
    await rm(raw, { force: true });
  }
}

/** A thumbnail of the running machine's screen now; false when it has no screen to dump (no display device). */
export async function captureThumbnail(folder: string, thumbnail: string, options: QemuOptions = {}): Promise<boolean> {
  try {
    await screendump(folder, rawScreenFile(thumbnail), 'ppm', options.qmp);
  } catch {
    await rm(rawScreenFile(thumbnail), { force: true });
    return false;
  }
  return finishThumbnail(thumbnail);
}
