// Whole machines: create one, import an image as one, edit its settings, delete it (and its linked clones).
import { join, resolve } from 'node:path';
import { killMachine, removeRuntimeFiles } from '../runtime';
import { applyForwardChanges, checkForwardChanges, checkIso } from './devices';
import { MachineError } from './errors';
import { machineFolderPath, makeMachineFolder, removeMachineFolder } from './folders';
import { newId, newMacAddress } from './identity';
import { importImage } from './importer';
import { createLayer, newLayerName } from './layer-files';
import type { LibraryContext } from './library-context';
import { findMachine, linkedDescendants } from './lineage';
import { checkExportedDomains, exportedDomainsOf, undefineExportedDomains } from './libvirt-exports';
import { details } from './machine-info';
import { cloneManifest, MANIFEST_FORMAT, MANIFEST_VERSION, writeManifest, type Manifest } from './manifest';
import { validateDescription, validateName } from './names';
import { refuseMachineIdLikeName } from './resolve-ref';
import { checkDisplay } from './screen';
import { runtimeCall } from './power';
import { DEFAULT_AUTO_POLICY, DEFAULT_CPUS, DEFAULT_DISK_SIZE, DEFAULT_MEMORY_MIB, validateAutoPolicy, validateDiskSize, validateSettings } from './settings';
import { step } from './steps';
import type { MachineEntry } from './store';
import type {
  CreateMachineOptions,
  DeleteMachineOptions,
  DeleteMachineResult,
  EditMachineOptions,
  ImportMachineOptions,
  ImportResult,
  MachineDetails,
} from './types';

export async function createMachine(ctx: LibraryContext, name: string, options: CreateMachineOptions): Promise<MachineDetails> {
  const displayName = validateName(name, 'machine name');
  const size = validateDiskSize(options.diskSize ?? DEFAULT_DISK_SIZE);
  validateSettings(options);
  const iso = options.iso === undefined ? undefined : await checkIso(options.iso);
  const all = await ctx.entries();
  refuseMachineIdLikeName(displayName, all);
  const id = newId();
  const top = newLayerName(0);
  const manifest = newManifest(id, displayName, all, options, [{ virtualSize: size, top }]);
  if (iso !== undefined) manifest.cdrom = iso;
  const folder = await makeMachineFolder(ctx.store, machineFolderPath(ctx.store, displayName, id, options.dir), async (staging) => {
    await createLayer(join(staging, top), size, null);
    step('create machine: disk created');
    return manifest;
  });
  return details({ folder, manifest }, await ctx.entries());
}

export async function importMachine(ctx: LibraryContext, name: string, imagePath: string, options: ImportMachineOptions): Promise<ImportResult> {
  const displayName = validateName(name, 'machine name');
  validateSettings(options);
  const all = await ctx.entries();
  refuseMachineIdLikeName(displayName, all);
  const id = newId();
  let listed: ImportResult['internalSnapshots'] = [];
  let converted = false;
  const folder = await makeMachineFolder(ctx.store, machineFolderPath(ctx.store, displayName, id, undefined), async (staging) => {
    const r = await importImage(resolve(imagePath), staging, options);
    listed = r.internalSnapshots;
    converted = r.snapshots.length > 0;
    step('import: layers written');
    const m = newManifest(id, displayName, all, options, [{ virtualSize: r.virtualSize, top: r.top }]);
    m.snapshots = r.snapshots;
    m.current = r.snapshots.length > 0 ? r.snapshots[r.snapshots.length - 1]!.id : null;
    return m;
  });
  const entries = await ctx.entries();
  const e = entries.find((x) => x.folder === folder)!;
  return { machine: await details(e, entries), internalSnapshots: listed, convertedSnapshots: converted };
}

export async function editMachine(ctx: LibraryContext, ref: string, changes: EditMachineOptions): Promise<MachineDetails> {
  const name = changes.name === undefined ? undefined : validateName(changes.name, 'machine name');
  const note = changes.note === undefined ? undefined : validateDescription(changes.note);
  validateSettings(changes);
  if (changes.forwards !== undefined) checkForwardChanges(changes.forwards);
  // Checked before the lock with the defaults filled in; the fields left out are taken from the manifest under it.
  if (changes.autoCheckpoints) validateAutoPolicy({ ...DEFAULT_AUTO_POLICY, ...changes.autoCheckpoints });
  const iso = typeof changes.iso === 'string' ? await checkIso(changes.iso) : changes.iso;
  const display = changes.display === undefined ? undefined : checkDisplay(changes.display);
  return ctx.withMachine(ref, 'edit', async (e, all) => {
    const m = cloneManifest(e.manifest);
    if (name !== undefined) refuseMachineIdLikeName(name, all);
    if (name !== undefined) m.name = name;
    if (note !== undefined) m.note = note;
    if (changes.cpus !== undefined) m.cpus = changes.cpus;
    if (changes.memoryMiB !== undefined) m.memoryMiB = changes.memoryMiB;
    // The CD drive and forwards take effect at the next start; a running QEMU keeps what it started with.
    if (iso === null) delete m.cdrom;
    else if (iso !== undefined) m.cdrom = iso;
    if (changes.forwards !== undefined) applyForwardChanges(m, changes.forwards);
    if (changes.autoCheckpoints === null) delete m.autoCheckpoints;
    else if (changes.autoCheckpoints !== undefined) m.autoCheckpoints = validateAutoPolicy({ ...DEFAULT_AUTO_POLICY, ...m.autoCheckpoints, ...changes.autoCheckpoints });
    // The display too: a running QEMU keeps its devices (a memory state loads only into them).
    if (display !== undefined) m.display = display;
    m.revision++;
    await writeManifest(e.folder, m);
    step('edit machine: manifest written');
    return details({ folder: e.folder, manifest: m }, all);
  });
}

export async function deleteMachine(ctx: LibraryContext, ref: string, options: DeleteMachineOptions): Promise<DeleteMachineResult> {
  const all = await ctx.entries();
  const target = findMachine(all, ref);
  const dependants = linkedDescendants(all, target.manifest.id);
  if (dependants.length > 0 && !options.withClones) {
    throw new MachineError(
      'LOCKED_BY_CLONES',
      `Machine "${target.manifest.name}" cannot be deleted: linked clones depend on it (${dependants.map((d) => `"${d.manifest.name}"`).join(', ')}); delete or promote them first, or delete with the clones.`,
      dependants.map((d) => `${d.manifest.name} (id ${d.manifest.id})`),
    );
  }
  const order = [...dependants.reverse(), target];
  // Before anything goes: a libvirt domain still reading one of these folders is undefined or left knowingly.
  await checkExportedDomains(order, options);
  const keptDomains = options.libvirtDomains === 'keep' ? await exportedDomainsOf(order).catch(() => []) : [];
  const deleted: DeleteMachineResult['deleted'] = [];
  const undefinedDomains: DeleteMachineResult['undefinedDomains'] = [];
  // Deepest clones first.
  for (const e of order) {
    await ctx.withMachine(e.manifest.id, 'delete', async (fresh, now) => {
      const still = linkedDescendants(now, fresh.manifest.id).filter((d) => !deleted.some((x) => x.id === d.manifest.id));
      if (still.length > 0) {
        throw new MachineError('LOCKED_BY_CLONES', `Machine "${fresh.manifest.name}" got new linked clones meanwhile: ${still.map((d) => `"${d.manifest.name}"`).join(', ')}.`);
      }
      undefinedDomains.push(...(await undefineExportedDomains(fresh, options)));
      // A running machine is ended first: its QEMU must not outlive its folder.
      await runtimeCall(() => killMachine(fresh.folder, ctx.qemu));
      await runtimeCall(() => removeRuntimeFiles(fresh.folder));
      await removeMachineFolder(ctx.store, fresh.folder);
      deleted.push({ id: fresh.manifest.id, name: fresh.manifest.name });
    });
  }
  return { deleted, undefinedDomains, keptDomains: keptDomains.map((d) => ({ connection: d.connection, domain: d.domain })) };
}

/** The manifest of a new machine (settings already validated): a new MAC unique in the library, no snapshots. */
export function newManifest(
  id: string,
  name: string,
  all: MachineEntry[],
  options: { cpus?: number; memoryMiB?: number; note?: string },
  disks: Manifest['disks'],
): Manifest {
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    revision: 1,
    id,
    name,
    macAddress: newMacAddress(new Set(all.map((e) => e.manifest.macAddress.toLowerCase()))),
    cpus: options.cpus ?? DEFAULT_CPUS,
    memoryMiB: options.memoryMiB ?? DEFAULT_MEMORY_MIB,
    powerState: 'off',
    createdAt: new Date().toISOString(),
    note: options.note === undefined ? '' : validateDescription(options.note),
    disks,
    snapshots: [],
    current: null,
    clonedFrom: null,
  };
}
