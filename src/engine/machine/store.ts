// The library folder on disk: its machine folders, the registry of folders kept outside it, leftover cleanup.
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { MachineError, isMachineError } from './errors';
import { atomicWriteJson, exists, isProcessAlive } from '../os';
import { hasTemporaryFiles, JOURNAL_FILE, recoverFolder } from './journal';
import { LOCK_FILE, MachineLock } from './lock';
import { MANIFEST_FILE, readManifest, type Manifest } from './manifest';

export interface MachineEntry {
  folder: string;
  manifest: Manifest;
}

export interface BrokenMachine {
  folder: string;
  message: string;
}

const REGISTRY_FILE = 'library.json';
const LIBRARY_LOCK = 'library.lock';

/** Machines kept outside the library folder (clones made with `dir`): the library remembers where they are. */
interface Registry {
  format: 'vmsnap-library';
  version: 1;
  /** Absolute folder paths; `pid` is set while the folder is being made (cleaned up if that process died). */
  machines: { path: string; pid?: number }[];
}

/** Folders whose name starts with these are a process's work in progress: `.staging-<pid>-<name>`. */
export const STAGING = '.staging-';
export const DELETING = '.deleting-';

export function stagingFolder(finalFolder: string): string {
  return join(dirname(finalFolder), `${STAGING}${process.pid}-${basename(finalFolder)}`);
}

export function deletingFolder(finalFolder: string): string {
  return join(dirname(finalFolder), `${DELETING}${process.pid}-${basename(finalFolder)}`);
}

function workPid(name: string): number | null {
  const m = /^\.(?:staging|deleting)-(\d+)-/.exec(name);
  return m ? Number(m[1]) : null;
}

/** The library folder: enumerates machine folders, keeps the registry of outside folders, cleans leftovers. */
export class Store {
  constructor(readonly dir: string) {}

  async ensure(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true });
    } catch (e) {
      throw new MachineError('IO_ERROR', `The library folder ${this.dir} cannot be created: ${(e as Error).message}`, [], { cause: e });
    }
  }

  private async readRegistry(): Promise<Registry> {
    try {
      const r = JSON.parse(await readFile(join(this.dir, REGISTRY_FILE), 'utf8')) as Partial<Registry>;
      if (r.format !== 'vmsnap-library' || r.version !== 1 || !Array.isArray(r.machines)) {
        throw new MachineError('INVALID_MANIFEST', `${join(this.dir, REGISTRY_FILE)}: field "format"/"version" is not a vmsnap library this version reads.`);
      }
      return { format: 'vmsnap-library', version: 1, machines: r.machines.filter((m) => typeof m?.path === 'string') };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { format: 'vmsnap-library', version: 1, machines: [] };
      if (isMachineError(e)) throw e;
      throw new MachineError('INVALID_MANIFEST', `${join(this.dir, REGISTRY_FILE)} is not valid JSON; restore it or remove it (machines outside the library are then forgotten).`);
    }
  }

  /** Changes the registry under the library lock. */
  async updateRegistry(change: (r: Registry) => void): Promise<void> {
    const lock = await MachineLock.acquire(this.dir, 'library', 'update library', { file: LIBRARY_LOCK });
    try {
      const r = await this.readRegistry();
      change(r);
      await atomicWriteJson(join(this.dir, REGISTRY_FILE), r);
    } finally {
      await lock.release();
    }
  }

  /** Removes an outside folder from the registry (a folder inside the library is not registered). */
  async forget(folder: string): Promise<void> {
    if (this.isInside(folder)) return;
    await this.updateRegistry((r) => (r.machines = r.machines.filter((m) => m.path !== folder)));
  }

  isInside(folder: string): boolean {
    return resolve(dirname(folder)) === resolve(this.dir);
  }

  async folders(): Promise<string[]> {
    return (await this.scanFolders()).folders;
  }

  /** Machine folders, and symbolic links in the library folder (never followed: they are reported, not hidden). */
  private async scanFolders(): Promise<{ folders: string[]; links: string[] }> {
    const names = await readdir(this.dir, { withFileTypes: true });
    const inside = names.filter((d) => d.isDirectory() && !d.name.startsWith('.')).map((d) => join(this.dir, d.name));
    const links = names.filter((d) => d.isSymbolicLink() && !d.name.startsWith('.')).map((d) => join(this.dir, d.name));
    const outside = (await this.readRegistry()).machines.filter((m) => m.pid === undefined).map((m) => m.path);
    return { folders: [...inside, ...outside], links };
  }

  /** Every machine's manifest; folders without machine.json are not machines and are ignored. */
  async loadAll(): Promise<{ entries: MachineEntry[]; broken: BrokenMachine[] }> {
    const { folders, links } = await this.scanFolders();
    const entries: MachineEntry[] = [];
    const broken: BrokenMachine[] = links.map((folder) => ({
      folder,
      message: `${folder} is a symbolic link: vmsnap does not follow links in the library folder (a machine's files could be changed outside it); move the machine folder itself into the library, or clone it with a folder of its own.`,
    }));
    await Promise.all(
      folders.map(async (folder) => {
        try {
          const manifest = await readManifest(folder);
          checkBaseLayers(folder, manifest, folders);
          entries.push({ folder, manifest });
        } catch (e) {
          if (isMachineError(e) && e.code === 'NOT_FOUND') return;
          broken.push({ folder, message: e instanceof Error ? e.message : String(e) });
        }
      }),
    );
    entries.sort((a, b) => a.manifest.createdAt.localeCompare(b.manifest.createdAt) || a.folder.localeCompare(b.folder));
    broken.sort((a, b) => a.folder.localeCompare(b.folder));
    return { entries, broken };
  }

  /**
   * Cleans what killed processes left: staging and deleting folders, registry entries of unfinished outside
   * folders, and interrupted operations in machine folders (rolled forward or back under the machine's lock;
   * a machine another live process is working on is left alone).
   */
  async recover(): Promise<void> {
    for (const d of await readdir(this.dir, { withFileTypes: true })) {
      const pid = workPid(d.name);
      if (d.isDirectory() && pid !== null && !isProcessAlive(pid)) await rm(join(this.dir, d.name), { recursive: true, force: true });
    }
    const registry = await this.readRegistry();
    const keep: Registry['machines'] = [];
    let changed = false;
    for (const m of registry.machines) {
      const made = await exists(join(m.path, MANIFEST_FILE));
      if (m.pid !== undefined) {
        if (isProcessAlive(m.pid)) {
          keep.push(m);
          continue;
        }
        changed = true;
        if (made) keep.push({ path: m.path }); // the process died after the folder got its final name
        else await rm(join(dirname(m.path), `${STAGING}${m.pid}-${basename(m.path)}`), { recursive: true, force: true });
      } else if (made) {
        keep.push(m);
      } else {
        changed = true; // deleted (or moved away by the user): forget it, and finish a deletion a dead process began
        await removeDeadWork(dirname(m.path), `${DELETING}`, basename(m.path));
      }
    }
    if (changed) {
      await this.updateRegistry((r) => {
        const paths = new Set(keep.map((k) => k.path));
        // Entries another process added meanwhile stay.
        r.machines = [...keep, ...r.machines.filter((m) => !paths.has(m.path) && m.pid !== undefined && isProcessAlive(m.pid))];
      });
    }
    for (const folder of await this.folders()) {
      // A lock left by a dead process is taken over and released, so a killed operation leaves no trace.
      if ((await exists(join(folder, JOURNAL_FILE))) || (await exists(join(folder, LOCK_FILE))) || (await hasTemporaryFiles(folder))) await recoverMachine(folder);
    }
  }
}

/**
 * A linked clone's base layers must be layer files of the library's machine folders: a hand-edited (or damaged)
 * manifest must not make the library read, or a later merge write, a file anywhere else.
 */
function checkBaseLayers(folder: string, m: Manifest, folders: readonly string[]): void {
  const known = new Set(folders.map((f) => resolve(f)));
  (m.clonedFrom?.baseLayers ?? []).forEach((b, i) => {
    const at = resolve(folder, b);
    if (!known.has(dirname(at)) || dirname(at) === resolve(folder) || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(basename(at))) {
      throw new MachineError(
        'INVALID_MANIFEST',
        `${join(folder, MANIFEST_FILE)}: field "clonedFrom.baseLayers[${i}]" names ${at}, which is not a layer of another machine of this library; restore the file from a backup or fix that field.`,
      );
    }
  });
}

async function removeDeadWork(parent: string, prefix: string, name: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(parent);
  } catch {
    return;
  }
  for (const n of names) {
    const pid = workPid(n);
    if (n.startsWith(prefix) && n.endsWith(`-${name}`) && pid !== null && !isProcessAlive(pid)) {
      await rm(join(parent, n), { recursive: true, force: true });
    }
  }
}

/** Recovers one machine folder if no live process is working on it. */
export async function recoverMachine(folder: string): Promise<void> {
  let lock: MachineLock;
  try {
    // A live holder is working, not interrupted: opening a library does not wait for it.
    lock = await MachineLock.acquire(folder, basename(folder), 'recover an interrupted operation', { waitMs: 0 });
  } catch (e) {
    if (isMachineError(e) && e.code === 'BUSY') return;
    throw e;
  }
  try {
    await recoverFolder(folder);
  } finally {
    await lock.release();
  }
}
