// Snapshot thumbnails as files of the machine: their names, the machine's last screen (shown by snapshots taken
// while it is off), and the copies clones and reverts make. Every copy is a file of its own, never a link, so
// deleting one snapshot or machine never takes another's picture with it.
import { constants } from 'node:fs';
import { copyFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { captureThumbnail, RUNTIME_FILES, type QemuOptions } from '../runtime';
import { exists } from '../os';
import type { SnapshotRecord } from './manifest';

/** The thumbnail a snapshot gets: next to its layers, named after the snapshot (like its state file). */
export function thumbnailFileName(snapshotId: string): string {
  return `thumb-${snapshotId}.png`;
}

/** The machine's last screen (a runtime file): what a snapshot of the machine while off shows. */
export function lastScreenPath(folder: string): string {
  return join(folder, RUNTIME_FILES.lastScreen);
}

export async function hasLastScreen(folder: string): Promise<boolean> {
  return exists(lastScreenPath(folder));
}

/** The absolute path of a snapshot's thumbnail, or null when it has none. */
export function thumbnailPath(folder: string, s: SnapshotRecord): string | null {
  return s.thumbnail === undefined ? null : join(folder, s.thumbnail);
}

/** Copies a picture as a new file of its own (never over an existing one: names are per snapshot). */
export async function copyPicture(from: string, to: string): Promise<void> {
  await copyFile(from, to, constants.COPYFILE_EXCL);
}

/**
 * Remembers the screen of a running machine about to be powered off. Best effort: a machine without a display
 * device, or one whose QEMU does not answer, keeps the last screen it had.
 */
export async function captureLastScreen(folder: string, qemu: QemuOptions): Promise<void> {
  await captureThumbnail(folder, lastScreenPath(folder), qemu).catch(() => false);
}

/**
 * After a revert the machine is in the snapshot's state: its last screen becomes the snapshot's thumbnail (or
 * none). Best effort, like every runtime file.
 */
export async function lastScreenFromSnapshot(folder: string, s: SnapshotRecord): Promise<void> {
  const last = lastScreenPath(folder);
  await rm(last, { force: true }).catch(() => {});
  const thumb = thumbnailPath(folder, s);
  if (thumb !== null) await copyPicture(thumb, last).catch(() => {});
}
