// What every library operation works with: the store of machine folders, how QEMU runs, and the machine lock.
import type { QemuOptions } from '../runtime';
import { recoverFolder } from './journal';
import { findMachine } from './lineage';
import { LOCK_FILE, MachineLock } from './lock';
import { isMachineError, MachineError } from './errors';
import { exists, imageWriters } from '../os';
import { runningPid } from '../runtime';
import { MANIFEST_FILE, readManifest, snapshotOwnFiles } from './manifest';
import { refuseSymlink } from './fsutil';
import { followTops } from './top-links';
import { join } from 'node:path';
import type { MachineEntry, Store } from './store';

/** Every file the manifest names in the machine folder, checked before an operation may change any of them. */
async function refuseLinkedFiles(e: MachineEntry): Promise<void> {
  const m = e.manifest;
  const files = [MANIFEST_FILE, ...m.disks.map((d) => d.top), ...m.snapshots.flatMap((s) => [...s.layers, ...snapshotOwnFiles(s)])];
  for (const f of files) await refuseSymlink(join(e.folder, f));
}

/**
 * A machine our QEMU does not run whose disk another program writes to (a QEMU started by hand or by libvirt on an
 * exported machine): any change to its layers would pull them from under that program, so nothing may start.
 */
async function refuseOtherWriters(e: MachineEntry): Promise<void> {
  if ((await runningPid(e.folder)) !== null) return;
  const m = e.manifest;
  const layers = [...m.disks.map((d) => d.top), ...m.snapshots.flatMap((s) => s.layers)].map((f) => join(e.folder, f));
  const [writer] = await imageWriters(layers);
  if (writer === undefined) return;
  const who = writer.pid === null ? 'another program' : `another program (pid ${writer.pid}${writer.command === null ? '' : `: ${writer.command}`})`;
  throw new MachineError('BUSY', `A disk of machine "${m.name}" is in use by ${who}, outside vmsnap: stop it there (a libvirt domain: virsh shutdown) and try again.`);
}

/** Waits while a writer holds the machine's lock; whether there was one (else a failed read is not a race). */
async function waitForWriter(folder: string): Promise<boolean> {
  const lockFile = join(folder, LOCK_FILE);
  if (!(await exists(lockFile))) return false;
  for (const until = Date.now() + WRITER_WAIT_MS; Date.now() < until && (await exists(lockFile)); ) {
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** How long a reader waits for a writer before it reports what it read (a full clone may hold the lock longer). */
const WRITER_WAIT_MS = 10_000;

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

  /**
   * Runs a read of the machine `ref` names without taking its lock. A writer may have a file out of place for a
   * moment: a read that fails while the machine's lock is held is tried again once the lock is released, so a
   * reader sees the state before or after a change, never an error made of half of one.
   */
  async read<T>(ref: string, fn: (e: MachineEntry, all: MachineEntry[]) => Promise<T>): Promise<T> {
    const first = await this.find(ref);
    try {
      return await fn(first.e, first.all);
    } catch (err) {
      if (!isMachineError(err) || !(await waitForWriter(first.e.folder))) throw err;
      const again = await this.find(ref);
      return await fn(again.e, again.all);
    }
  }

  /** Runs `fn` holding the machine's lock, on a fresh manifest, after finishing any interrupted operation. */
  async withMachine<T>(ref: string, operation: string, fn: (e: MachineEntry, all: MachineEntry[]) => Promise<T>): Promise<T> {
    const found = findMachine(await this.entries(), ref);
    const lock = await MachineLock.acquire(found.folder, found.manifest.name, operation);
    try {
      await recoverFolder(found.folder);
      const all = await this.entries();
      const e = all.find((x) => x.folder === found.folder) ?? { folder: found.folder, manifest: await readManifest(found.folder) };
      await refuseLinkedFiles(e);
      await refuseOtherWriters(e);
      await followTops(e.folder, e.manifest); // a process that died between a manifest write and the links
      return await fn(e, all);
    } finally {
      await lock.release();
    }
  }
}
