// Machine folders: where a new one goes, making it atomically (staging folder, registry for outside folders),
// and removing one.
import { mkdir, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { isImageError } from '../qcow2';
import { fsyncDir } from '../os';
import { isMachineError } from './errors';
import { toMachineIoError } from './fsutil';
import { shortId } from './identity';
import { fromImageError } from './layer-files';
import { writeManifest, type Manifest } from './manifest';
import { folderSlug } from './names';
import { step } from './steps';
import { deletingFolder, stagingFolder, type Store } from './store';

/** `<slug>-<short id>` in the library, or in `dir` when given. */
export function machineFolderPath(store: Store, name: string, id: string, dir: string | undefined): string {
  const parent = dir === undefined ? store.dir : resolve(dir);
  return join(parent, `${folderSlug(name)}-${shortId(id)}`);
}

/**
 * Makes a machine folder atomically: everything is written in a staging folder next to the final one (same
 * depth, so relative backing paths stay right), which is renamed into place last. Outside folders (`dir`) are
 * registered in the library first, marked with our pid, so a crash is cleaned up on the next open.
 */
export async function makeMachineFolder(store: Store, final: string, fill: (staging: string) => Promise<Manifest>): Promise<string> {
  const parent = resolve(final, '..');
  const staging = stagingFolder(final);
  const outside = !store.isInside(final);
  if (outside) {
    await mkdir(parent, { recursive: true }).catch((e: unknown) => {
      throw toMachineIoError(e, `creating ${parent}`);
    });
    await store.updateRegistry((r) => r.machines.push({ path: final, pid: process.pid }));
  }
  try {
    await mkdir(staging).catch((e: unknown) => {
      throw toMachineIoError(e, `creating the folder ${staging}`);
    });
    step('new machine: staging folder made');
    const manifest = await fill(staging);
    await writeManifest(staging, manifest);
    step('new machine: manifest written');
    await rename(staging, final);
    await fsyncDir(parent);
    step('new machine: folder in place');
  } catch (e) {
    await rm(staging, { recursive: true, force: true }).catch(() => {});
    await store.forget(final).catch(() => {});
    throw isMachineError(e) ? e : isImageError(e) ? fromImageError(e, 'writing the new machine') : toMachineIoError(e, 'writing the new machine');
  }
  if (outside) {
    await store.updateRegistry((r) => {
      for (const m of r.machines) if (m.path === final) delete m.pid;
    });
  }
  return final;
}

/**
 * Removes a machine folder: renamed aside first (flushed), so an interruption leaves no half-deleted machine, only
 * a `.deleting-` folder the next open removes.
 */
export async function removeMachineFolder(store: Store, folder: string): Promise<void> {
  const aside = deletingFolder(folder);
  await rename(folder, aside);
  await fsyncDir(resolve(folder, '..'));
  step('delete machine: folder moved aside');
  await rm(aside, { recursive: true, force: true });
  step('delete machine: folder removed');
  await store.forget(folder);
}
