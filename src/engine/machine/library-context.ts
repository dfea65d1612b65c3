// What every library operation works with: the store of machine folders, how QEMU runs, and the machine lock.
import type { QemuOptions } from '../runtime';
import { recoverFolder } from './journal';
import { findMachine } from './lineage';
import { MachineLock } from './lock';
import { readManifest } from './manifest';
import type { MachineEntry, Store } from './store';

export class LibraryContext {
  constructor(
    readonly store: Store,
    /** How QEMU is found and run (default: $VMSNAP_QEMU, $VMSNAP_QEMU_ACCEL, else qemu-system-x86_64 with kvm:tcg). */
    readonly qemu: QemuOptions,
  ) {}

  async entries(): Promise<MachineEntry[]> {
    return (await this.store.loadAll()).entries;
  }

  /** The machine `ref` names (id, exact name or unique id prefix), without a lock. */
  async find(ref: string): Promise<{ e: MachineEntry; all: MachineEntry[] }> {
    const all = await this.entries();
    return { e: findMachine(all, ref), all };
  }

  /** Runs `fn` holding the machine's lock, on a fresh manifest, after finishing any interrupted operation. */
  async withMachine<T>(ref: string, operation: string, fn: (e: MachineEntry, all: MachineEntry[]) => Promise<T>): Promise<T> {
    const found = findMachine(await this.entries(), ref);
    const lock = await MachineLock.acquire(found.folder, found.manifest.name, operation);
    try {
      await recoverFolder(found.folder);
      const all = await this.entries();
      const e = all.find((x) => x.folder === found.folder) ?? { folder: found.folder, manifest: await readManifest(found.folder) };
      return await fn(e, all);
    } finally {
      await lock.release();
    }
  }
}
