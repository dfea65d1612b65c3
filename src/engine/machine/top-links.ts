// Stable paths to a machine's current disks for programs that keep a path, such as the libvirt domain `vm export`
// defines: `current-diskN.qcow2` in the machine folder, a symbolic link to disk N's top layer. Every manifest write
// moves the links that exist, so such a program never opens a frozen snapshot layer for writing.
import { readlink, rename, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { temporaryNameFor } from '../os';
import type { Manifest } from './manifest';

export function topLinkName(diskIndex: number): string {
  return `current-disk${diskIndex}.qcow2`;
}

/** Makes (or moves) a link to every disk's top; their absolute paths, disk by disk. */
export async function linkTops(folder: string, m: Manifest): Promise<string[]> {
  const links: string[] = [];
  for (const [i, d] of m.disks.entries()) {
    const link = join(folder, topLinkName(i));
    await pointAt(link, d.top);
    links.push(link);
  }
  return links;
}

/** Moves the links a machine has to its current tops (links it does not have stay absent). */
export async function followTops(folder: string, m: Manifest): Promise<void> {
  for (const [i, d] of m.disks.entries()) {
    const link = join(folder, topLinkName(i));
    const now = await readlink(link).catch(() => null);
    if (now !== null && now !== d.top) await pointAt(link, d.top);
  }
}

/** A relative link in the same folder, so that the top's relative backing file names resolve as from the top. */
async function pointAt(link: string, top: string): Promise<void> {
  const temporary = temporaryNameFor(link);
  await symlink(top, temporary);
  await rename(temporary, link);
}
