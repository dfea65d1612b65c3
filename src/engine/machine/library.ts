import { mkdir, rename, rm, statfs } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import type { Socket } from 'node:net';
import type { OperationOptions } from '../qcow2/disk';
import {
  isQemuError,
  killMachine,
  machineStatus as runtimeStatus,
  openConsole as runtimeConsole,
  pauseMachine as runtimePause,
  removeRuntimeFiles,
  resumeMachine as runtimeResume,
  runningPid,
  snapshotRunning,
  startFromState,
  startMachine as runtimeStart,
  stopMachine as runtimeStop,
  type QemuOptions,
  type RuntimeStatus,
} from '../runtime';
import { isImageError } from '../qcow2/errors';
import { changedRanges, flatten } from '../qcow2/ops';
import { MachineError, isMachineError } from './errors';
import { fsyncDir } from '../os';
import { bytesOnDisk, setReadOnly, toMachineIoError } from './fsutil';
import { newId, newMacAddress, shortId } from './identity';
import { importImage } from './importer';
import { recoverFolder, Transaction, type MergeStep } from './journal';
import { createLayer, fromImageError, layerAllocatedBytes, newLayerName } from './layerFiles';
import { defaultLibraryDir } from './libraryDir';
import { MachineLock } from './lock';
import { cloneManifest, MANIFEST_FORMAT, MANIFEST_VERSION, readManifest, writeManifest, type Manifest, type SnapshotRecord } from './manifest';
import { folderSlug, validateDescription, validateName } from './names';
import { machineConfig, runtimeCall, stateConfig, stateFileName } from './power';
import { step } from './steps';
import { deletingFolder, stagingFolder, Store, type BrokenMachine, type MachineEntry } from './store';
import { ancestry, childrenOf, resolveSnapshot, snapshotById, subtreeIds } from './tree';
import type {
  CloneOptions,
  CloneResult,
  CompareRow,
  CreateMachineOptions,
  DeleteMachineOptions,
  DeleteMachineResult,
  DeleteSnapshotOptions,
  DeleteSnapshotResult,
  DiskInfo,
  EditMachineOptions,
  EditSnapshotOptions,
  ImportMachineOptions,
  ImportResult,
  MachineDetails,
  MachineSizes,
  MachineStatus,
  MachineSummary,
  PowerState,
  RevertOptions,
  RevertResult,
  SnapshotInfo,
  SnapshotTree,
  SnapshotTreeNode,
  StateDiff,
  StateRef,
  StopMachineOptions,
  StopMachineResult,
  TakeSnapshotOptions,
} from './types';

const GiB = 1024 * 1024 * 1024;
const DEFAULT_DISK_SIZE = 16 * GiB;
const MAX_DISK_SIZE = 64 * 1024 * GiB;

/** The library's machines and the folders whose manifest cannot be read, from one read (Library.scan). */
export interface LibraryScan {
  machines: MachineSummary[];
  broken: BrokenMachine[];
}

/**
 * A library of machines: a folder holding one folder per machine (`<slug>-<short id>/machine.json` plus its qcow2
 * layers). Every mutating method takes the machine's cross-process lock, journals its intent in the machine's
 * `operation.json`, creates new layers before the manifest refers to them, writes the manifest atomically (the
 * commit point) and removes old files only after; `Library.open` finishes or undoes what a killed process left.
 *
 * Layout of a machine: each snapshot is a frozen (read-only) qcow2 layer holding what changed since its parent;
 * each disk's current state is a top layer backed by the layer of the snapshot it descends from. A linked clone's
 * lowest layers are backed, by a relative path, by the source snapshot's layers in the source's folder.
 */
export class Library {
  private constructor(
    private readonly store: Store,
    /** How QEMU is found and run (default: $VMSNAP_QEMU, $VMSNAP_QEMU_ACCEL, else qemu-system-x86_64 with kvm:tcg). */
    private readonly qemu: QemuOptions,
  ) {}

  /**
   * Opens (and creates if needed) the library in `dir`; without it, VMSNAP_LIBRARY or the platform's per-user
   * data folder (see defaultLibraryDir). Recovers operations killed halfway and removes their leftovers.
   */
  static async open(dir?: string, options: { qemu?: QemuOptions } = {}): Promise<Library> {
    const store = new Store(resolve(dir ?? defaultLibraryDir()));
    await store.ensure();
    await store.recover();
    return new Library(store, options.qemu ?? {});
  }

  /** Absolute path of the library folder. */
  get dir(): string {
    return this.store.dir;
  }

  // ---------------------------------------------------------------- reading

  /** All machines, oldest first. Reads manifests only (no image is opened), so it stays fast for big libraries. */
  async list(): Promise<MachineSummary[]> {
    return (await this.scan()).machines;
  }

  /** What list() and broken() give, from one read of the library (the extension's tree shows both). */
  async scan(): Promise<LibraryScan> {
    const { entries, broken } = await this.store.loadAll();
    // One pidfile look per machine, all at once: a big library lists in the time of a few file reads.
    const machines = await Promise.all(entries.map(async (e) => ({ ...summary(e), powerState: await livePower(e) })));
    return { machines, broken };
  }

  /** Machine folders whose manifest could not be read, with the reason (list() leaves them out). */
  async broken(): Promise<BrokenMachine[]> {
    return (await this.store.loadAll()).broken;
  }

  /** Everything about one machine, with measured sizes. `ref`: id, exact name, or unique id prefix (6+ chars). */
  async show(ref: string): Promise<MachineDetails> {
    const all = await this.entries();
    const e = findMachine(all, ref);
    return { ...(await details(e, all)), powerState: await livePower(e) };
  }

  /** Absolute path of a disk's current top layer: writing into it (QEMU, qemu-io) changes the current state. */
  async diskPath(ref: string, diskIndex = 0): Promise<string> {
    const e = findMachine(await this.entries(), ref);
    const disk = e.manifest.disks[diskIndex];
    if (!disk) {
      throw new MachineError('NOT_FOUND', `Machine "${e.manifest.name}" has no disk ${diskIndex} (it has ${e.manifest.disks.length}, counted from 0).`);
    }
    return join(e.folder, disk.top);
  }

  /** The snapshot tree in creation order, with a 'current' node ("You are here") under the snapshot it descends from. */
  async snapshotTree(ref: string): Promise<SnapshotTree> {
    const all = await this.entries();
    const e = findMachine(all, ref);
    const m = e.manifest;
    const build = (parentId: string | null): SnapshotTreeNode[] => {
      const nodes: SnapshotTreeNode[] = childrenOf(m, parentId).map((s) => ({
        kind: 'snapshot',
        id: s.id,
        name: s.name,
        description: s.description,
        createdAt: s.createdAt,
        isCurrentParent: m.current === s.id,
        takenWhileRunning: s.takenWhileRunning,
        hasMemory: s.stateFile !== null,
        lockedBy: directClones(all, m.id, s.id).map((c) => c.manifest.id),
        children: build(s.id),
      }));
      if (m.current === parentId) {
        nodes.push({ kind: 'current', id: 'current', name: 'You are here', description: '', createdAt: '', isCurrentParent: false, takenWhileRunning: false, hasMemory: false, lockedBy: [], children: [] });
      }
      return nodes;
    };
    return { machineId: m.id, machineName: m.name, roots: build(null) };
  }

  /** Each snapshot's own layer size on disk, and how many bytes the current state changed since its snapshot. */
  async sizes(ref: string): Promise<MachineSizes> {
    const all = await this.entries();
    const e = findMachine(all, ref);
    const d = await details(e, all);
    const snapshots = d.snapshots.map((s) => ({ id: s.id, name: s.name, sizeBytes: s.sizeBytes }));
    return {
      machineId: d.id,
      snapshots,
      current: { changedBytes: d.currentChangedBytes, sizeBytes: d.currentSizeBytes, parentId: d.current },
      totalBytes: snapshots.reduce((n, s) => n + s.sizeBytes, d.currentSizeBytes),
    };
  }

  /**
   * How many bytes differ between two states of a machine (snapshot references or 'current') and where, per disk.
   * From the layers' allocation maps (fast; may count ranges rewritten with the same data); `exact` reads them.
   */
  async diff(ref: string, a: StateRef, b: StateRef, options: { exact?: boolean } & OperationOptions = {}): Promise<StateDiff> {
    const e = findMachine(await this.entries(), ref);
    const state = (r: StateRef): { snapshotId: string | null; layers: string[] } => {
      if (r.trim() === 'current') return { snapshotId: null, layers: e.manifest.disks.map((d) => join(e.folder, d.top)) };
      const s = resolveSnapshot(e.manifest, r);
      return { snapshotId: s.id, layers: s.layers.map((f) => join(e.folder, f)) };
    };
    const sa = state(a);
    const sb = state(b);
    const disks: StateDiff['disks'] = [];
    for (let i = 0; i < e.manifest.disks.length; i++) {
      try {
        const r = await changedRanges(sa.layers[i]!, sb.layers[i]!, options);
        disks.push({ index: i, bytes: r.bytes, ranges: r.ranges.map((x) => ({ offset: x.offset, length: x.length })) });
      } catch (err) {
        throw fromImageError(err, 'comparing two states');
      }
    }
    return {
      a: { ref: a, snapshotId: sa.snapshotId },
      b: { ref: b, snapshotId: sb.snapshotId },
      bytes: disks.reduce((n, d) => n + d.bytes, 0),
      disks,
      exact: options.exact === true,
    };
  }

  /**
   * The rows of the seed's comparison table for the machine's family: the original machine (found by following
   * `clonedFrom` up), its snapshots, its clones and theirs, with measured sizes.
   */
  async compare(ref: string): Promise<CompareRow[]> {
    const all = await this.entries();
    let root = findMachine(all, ref);
    for (const seen = new Set<string>(); root.manifest.clonedFrom && !seen.has(root.manifest.id); ) {
      seen.add(root.manifest.id);
      const up = all.find((x) => x.manifest.id === root.manifest.clonedFrom?.machineId);
      if (!up) break;
      root = up;
    }
    const rows: CompareRow[] = [];
    const visit = async (e: MachineEntry, depth: number, seen: Set<string>): Promise<void> => {
      if (seen.has(e.manifest.id)) return;
      seen.add(e.manifest.id);
      const m = e.manifest;
      const src = m.clonedFrom ? all.find((x) => x.manifest.id === m.clonedFrom?.machineId) : undefined;
      const srcSnap = src && m.clonedFrom?.snapshotId ? snapshotById(src.manifest, m.clonedFrom.snapshotId) : undefined;
      const kind: CompareRow['kind'] = !m.clonedFrom ? 'machine' : m.clonedFrom.kind === 'linked' ? 'linked clone' : 'full clone';
      const ownBytes = await machineBytes(e);
      rows.push({
        kind,
        id: m.id,
        name: m.name,
        machineId: m.id,
        createdAt: m.createdAt,
        sizeBytes: ownBytes,
        dependsOn:
          kind === 'linked clone'
            ? `snapshot "${srcSnap?.name ?? m.clonedFrom?.snapshotId ?? '?'}" of "${src?.manifest.name ?? m.clonedFrom?.machineId ?? '?'}"`
            : 'nothing',
        canRunAlongsideSource: true,
        uuid: m.id,
        macAddress: m.macAddress,
        description: m.note,
        depth,
      });
      for (const s of m.snapshots) {
        const parent = s.parentId ? snapshotById(m, s.parentId) : undefined;
        rows.push({
          kind: 'snapshot',
          id: s.id,
          name: s.name,
          machineId: m.id,
          createdAt: s.createdAt,
          sizeBytes: await sumBytes(s.layers.map((f) => join(e.folder, f))),
          dependsOn: parent
            ? `snapshot "${parent.name}" of "${m.name}"`
            : m.clonedFrom?.kind === 'linked'
              ? `snapshot "${srcSnap?.name ?? '?'}" of "${src?.manifest.name ?? '?'}"`
              : `machine "${m.name}"`,
          canRunAlongsideSource: false,
          uuid: m.id,
          macAddress: m.macAddress,
          description: s.description,
          depth: depth + 1 + ancestry(m, s.parentId).length,
        });
      }
      for (const c of all.filter((x) => x.manifest.clonedFrom?.machineId === m.id)) await visit(c, depth + 1, seen);
    };
    await visit(root, 0, new Set());
    return rows;
  }

  // ---------------------------------------------------------------- machines

  /** A new machine with one empty disk (default 16 GiB virtual, sparse), a new UUID and a unique MAC. */
  async createMachine(name: string, options: CreateMachineOptions = {}): Promise<MachineDetails> {
    const displayName = validateName(name, 'machine name');
    const size = options.diskSize ?? DEFAULT_DISK_SIZE;
    if (!Number.isSafeInteger(size) || size < 1024 * 1024 || size > MAX_DISK_SIZE || size % 512 !== 0) {
      throw new MachineError('INVALID_ARGUMENT', `The disk size ${size} is not a multiple of 512 bytes from 1 MiB to 64 TiB.`);
    }
    const all = await this.entries();
    const id = newId();
    const top = newLayerName(0);
    const manifest = newManifest(id, displayName, all, options, [{ virtualSize: size, top }]);
    const folder = await this.makeMachineFolder(this.machineFolderPath(displayName, id, options.dir), async (staging) => {
      await createLayer(join(staging, top), size, null);
      step('create machine: disk created');
      return manifest;
    });
    return details({ folder, manifest }, await this.entries());
  }

  /**
   * Copies a qcow2 or raw image in as a new machine. The image itself is only read. Its internal snapshots are
   * listed in the result and, with internalSnapshots: 'convert', become snapshots of the new machine.
   */
  async importMachine(name: string, imagePath: string, options: ImportMachineOptions = {}): Promise<ImportResult> {
    const displayName = validateName(name, 'machine name');
    const all = await this.entries();
    const id = newId();
    let listed: ImportResult['internalSnapshots'] = [];
    let converted = false;
    const folder = await this.makeMachineFolder(this.machineFolderPath(displayName, id, undefined), async (staging) => {
      const r = await importImage(resolve(imagePath), staging, options);
      listed = r.internalSnapshots;
      converted = r.snapshots.length > 0;
      step('import: layers written');
      const m = newManifest(id, displayName, all, options, [{ virtualSize: r.virtualSize, top: r.top }]);
      m.snapshots = r.snapshots;
      m.current = r.snapshots.length > 0 ? r.snapshots[r.snapshots.length - 1]!.id : null;
      return m;
    });
    const entries = await this.entries();
    const e = entries.find((x) => x.folder === folder)!;
    return { machine: await details(e, entries), internalSnapshots: listed, convertedSnapshots: converted };
  }

  /** Renames the machine, edits its note, cpus or memory. The folder keeps its name (clones point into it). */
  async editMachine(ref: string, changes: EditMachineOptions): Promise<MachineDetails> {
    const name = changes.name === undefined ? undefined : validateName(changes.name, 'machine name');
    const note = changes.note === undefined ? undefined : validateDescription(changes.note);
    if (changes.cpus !== undefined && (!Number.isInteger(changes.cpus) || changes.cpus < 1 || changes.cpus > 1024)) {
      throw new MachineError('INVALID_ARGUMENT', `${changes.cpus} is not a CPU count from 1 to 1024.`);
    }
    if (changes.memoryMiB !== undefined && (!Number.isInteger(changes.memoryMiB) || changes.memoryMiB < 1)) {
      throw new MachineError('INVALID_ARGUMENT', `${changes.memoryMiB} is not a memory size in MiB.`);
    }
    return this.withMachine(ref, 'edit', async (e, all) => {
      const m = cloneManifest(e.manifest);
      if (name !== undefined) m.name = name;
      if (note !== undefined) m.note = note;
      if (changes.cpus !== undefined) m.cpus = changes.cpus;
      if (changes.memoryMiB !== undefined) m.memoryMiB = changes.memoryMiB;
      m.revision++;
      await writeManifest(e.folder, m);
      step('edit machine: manifest written');
      return details({ folder: e.folder, manifest: m }, all);
    });
  }

  /** Shorthand for editMachine(ref, { name }). */
  async renameMachine(ref: string, newName: string): Promise<MachineDetails> {
    return this.editMachine(ref, { name: newName });
  }

  /**
   * Deletes a machine and its folder. Refused (LOCKED_BY_CLONES, naming them) while linked clones depend on it,
   * unless withClones: then they (and their own linked clones) are deleted first, each atomically, so an
   * interruption never leaves a clone without its source. Full clones are independent and stay.
   */
  async deleteMachine(ref: string, options: DeleteMachineOptions = {}): Promise<DeleteMachineResult> {
    const all = await this.entries();
    const target = findMachine(all, ref);
    const dependants = linkedDescendants(all, target.manifest.id);
    if (dependants.length > 0 && !options.withClones) {
      throw new MachineError(
        'LOCKED_BY_CLONES',
        `Machine "${target.manifest.name}" cannot be deleted: linked clones depend on it (${dependants.map((d) => `"${d.manifest.name}"`).join(', ')}); delete or promote them first, or delete with the clones.`,
        dependants.map((d) => `${d.manifest.name} (id ${d.manifest.id})`),
      );
    }
    const deleted: DeleteMachineResult['deleted'] = [];
    // Deepest clones first.
    for (const e of [...dependants.reverse(), target]) {
      await this.withMachine(e.manifest.id, 'delete', async (fresh, now) => {
        const still = linkedDescendants(now, fresh.manifest.id).filter((d) => !deleted.some((x) => x.id === d.manifest.id));
        if (still.length > 0) {
          throw new MachineError('LOCKED_BY_CLONES', `Machine "${fresh.manifest.name}" got new linked clones meanwhile: ${still.map((d) => `"${d.manifest.name}"`).join(', ')}.`);
        }
        // A running machine is ended first: its QEMU must not outlive its folder.
        await runtimeCall(() => killMachine(fresh.folder, this.qemu));
        await runtimeCall(() => removeRuntimeFiles(fresh.folder));
        const aside = deletingFolder(fresh.folder);
        await rename(fresh.folder, aside);
        await fsyncDir(resolve(fresh.folder, '..'));
        step('delete machine: folder moved aside');
        await rm(aside, { recursive: true, force: true });
        step('delete machine: folder removed');
        if (!this.store.isInside(fresh.folder)) {
          await this.store.updateRegistry((r) => (r.machines = r.machines.filter((x) => x.path !== fresh.folder)));
        }
        deleted.push({ id: fresh.manifest.id, name: fresh.manifest.name });
      });
    }
    return { deleted };
  }

  // ---------------------------------------------------------------- power

  /** Powers the machine on (QEMU runs detached and outlives this process). ALREADY_RUNNING when it runs. */
  async startMachine(ref: string): Promise<MachineStatus> {
    return this.withMachine(ref, 'start', async (e) => {
      const r = await runtimeCall(() => runtimeStart(machineConfig(e), this.qemu));
      await setPower(e, 'running');
      return statusOf(r);
    });
  }

  /** ACPI power button, then QEMU quit, then kill after the time-out; force: quit at once. */
  async stopMachine(ref: string, options: StopMachineOptions = {}): Promise<StopMachineResult> {
    return this.withMachine(ref, 'stop', async (e) => {
      const r = await runtimeCall(() =>
        runtimeStop(e.folder, {
          ...this.qemu,
          force: options.force === true,
          powerdownTimeoutMs: options.powerdownTimeoutMs ?? 60000,
        }),
      );
      await setPower(e, 'off');
      return { method: r.method, ms: r.ms };
    });
  }

  async pauseMachine(ref: string): Promise<MachineStatus> {
    return this.withMachine(ref, 'pause', async (e) => {
      const r = await runtimeCall(() => runtimePause(e.folder, this.qemu));
      await setPower(e, r.powerState);
      return statusOf(r);
    });
  }

  async resumeMachine(ref: string): Promise<MachineStatus> {
    return this.withMachine(ref, 'resume', async (e) => {
      const r = await runtimeCall(() => runtimeResume(e.folder, this.qemu));
      await setPower(e, r.powerState);
      return statusOf(r);
    });
  }

  /** The real power state from QEMU (pidfile, process, QMP); the manifest is corrected when it differs. */
  async machineStatus(ref: string): Promise<MachineStatus> {
    return this.withMachine(ref, 'status', async (e) => {
      const r = await runtimeCall(() => runtimeStatus(e.folder, this.qemu));
      await setPower(e, r.powerState);
      return statusOf(r);
    });
  }

  /** A connection to the machine's serial port (one client at a time; a second waits). No lock: nothing changes. */
  async openConsole(ref: string): Promise<Socket> {
    const e = findMachine(await this.entries(), ref);
    return runtimeCall(() => runtimeConsole(e.folder));
  }

  // ---------------------------------------------------------------- snapshots

  /**
   * Takes a snapshot of the current state, in constant time whatever the disk size: each top layer is frozen
   * (it becomes the snapshot's read-only layer) and a new empty top layer backed by it starts the current state.
   */
  async takeSnapshot(ref: string, name: string, options: TakeSnapshotOptions = {}): Promise<SnapshotInfo> {
    const snapName = validateName(name, 'snapshot name');
    const description = validateDescription(options.description ?? '');
    return this.withMachine(ref, 'take snapshot', async (e, all) => {
      const { entry, snapshot } =
        (await runningPid(e.folder)) === null
          ? await takeLocked(e, snapName, description)
          : await takeRunningLocked(e, snapName, description, options.diskOnly === true, this.qemu);
      return snapshotInfo(entry, snapshot, all);
    });
  }

  /**
   * Makes the current state exactly the snapshot's state: a new empty top layer on the snapshot's layer. The
   * current state's unsaved changes are lost, so one option is required: discardCurrent, or saveCurrentAs
   * (a snapshot of the current state is taken first). Without either: NEEDS_CONFIRMATION.
   */
  async revert(ref: string, snapshotRef: string, options: RevertOptions = {}): Promise<RevertResult> {
    if (options.discardCurrent && options.saveCurrentAs !== undefined) {
      throw new MachineError('INVALID_ARGUMENT', 'Choose either to discard the current state or to save it as a snapshot, not both.');
    }
    if (!options.discardCurrent && options.saveCurrentAs === undefined) {
      throw new MachineError(
        'NEEDS_CONFIRMATION',
        'Reverting throws away the current state: confirm with --discard-current, or keep it with --save-current NAME.',
      );
    }
    const saveName = options.saveCurrentAs === undefined ? undefined : validateName(options.saveCurrentAs, 'snapshot name');
    return this.withMachine(ref, 'revert', async (found, all) => {
      let e = found;
      const target = resolveSnapshot(e.manifest, snapshotRef);
      let savedRunning: SnapshotRecord | null = null;
      if ((await runningPid(e.folder)) !== null) {
        // A running machine's current state is saved with its memory (when asked) before QEMU is ended.
        if (saveName !== undefined) {
          const t = await takeRunningLocked(e, saveName, '', false, this.qemu);
          e = t.entry;
          savedRunning = t.snapshot;
        }
        await runtimeCall(() => runtimeStop(e.folder, { ...this.qemu, force: true }));
      }
      const m = e.manifest;
      const oldTops = m.disks.map((d) => d.top);
      const discardedBytes = saveName === undefined ? await sumAllocated(oldTops.map((f) => join(e.folder, f))) : 0;
      const saved: SnapshotRecord | null =
        saveName === undefined || savedRunning !== null
          ? null
          : { id: newId(), name: saveName, description: '', parentId: m.current, createdAt: new Date().toISOString(), takenWhileRunning: false, layers: oldTops, stateFile: null, vm: null };
      const newTops = m.disks.map((_, i) => newLayerName(i));
      const after = cloneManifest(m);
      after.revision++;
      if (saved) after.snapshots.push(saved);
      after.current = target.id;
      after.powerState = 'off';
      after.disks = m.disks.map((d, i) => ({ ...d, top: newTops[i]! }));
      const tx = await Transaction.begin(e.folder, {
        operation: 'revert',
        after,
        created: newTops,
        obsolete: saved ? [] : oldTops,
        freeze: saved ? oldTops : [],
        thawed: [],
        merge: [],
      });
      await createLayers(tx, e.folder, m, newTops, (i) => join(e.folder, target.layers[i]!), 'revert');
      let committed = await tx.commit();
      let poweredOn = false;
      let stateLoadError: string | null = null;
      if (target.stateFile !== null && target.vm !== null) {
        // The snapshot holds the memory: the machine comes back running where it was.
        const stateFile = join(e.folder, target.stateFile);
        const config = stateConfig({ folder: e.folder, manifest: committed }, target, newTops);
        try {
          await startFromState(config, stateFile, { ...this.qemu, accel: target.vm.accel });
          committed = await setPower({ folder: e.folder, manifest: committed }, 'running');
          poweredOn = true;
        } catch (err) {
          if (!isQemuError(err)) throw err;
          stateLoadError = `reverted the disks; the memory state could not be loaded: ${err.message} Start the machine to boot it.`;
        }
      }
      const entry = { folder: e.folder, manifest: committed };
      const savedRecord = savedRunning ?? saved;
      return {
        snapshot: await snapshotInfo(entry, target, all),
        saved: savedRecord ? await snapshotInfo(entry, savedRecord, all) : null,
        discardedBytes,
        poweredOn,
        stateLoadError,
      };
    });
  }

  /** Renames a snapshot or changes its description (names need not be unique: ids tell them apart). */
  async editSnapshot(ref: string, snapshotRef: string, changes: EditSnapshotOptions): Promise<SnapshotInfo> {
    const name = changes.name === undefined ? undefined : validateName(changes.name, 'snapshot name');
    const description = changes.description === undefined ? undefined : validateDescription(changes.description);
    return this.withMachine(ref, 'edit snapshot', async (e, all) => {
      const m = cloneManifest(e.manifest);
      const s = resolveSnapshot(m, snapshotRef);
      if (name !== undefined) s.name = name;
      if (description !== undefined) s.description = description;
      m.revision++;
      await writeManifest(e.folder, m);
      step('edit snapshot: manifest written');
      return snapshotInfo({ folder: e.folder, manifest: m }, s, all);
    });
  }

  /**
   * Deletes a snapshot (with children: its whole subtree) so that every other state reads exactly as before:
   * its layer's data is merged into what depends on it. One dependant: the cheaper of committing the dependant
   * into the snapshot's layer (which then takes the dependant's place) and rebasing the dependant onto the
   * layer below. Several: each is rebased. Nothing depends on it: the file is removed. Refused with
   * LOCKED_BY_CLONES when a linked clone hangs on the snapshot or on one below it.
   */
  async deleteSnapshot(ref: string, snapshotRef: string, options: DeleteSnapshotOptions = {}): Promise<DeleteSnapshotResult> {
    return this.withMachine(ref, 'delete snapshot', async (e, all) => {
      const target = resolveSnapshot(e.manifest, snapshotRef);
      if ((await runningPid(e.folder)) !== null && ancestry(e.manifest, e.manifest.current).some((s) => s.id === target.id)) {
        throw new MachineError(
          'POWERED_ON',
          `Snapshot "${target.name}" cannot be deleted while "${e.manifest.name}" runs: QEMU reads its layer for the current state (merging it live is not supported); power the machine off first.`,
        );
      }
      return deleteSnapshotLocked(e, all, target, options.children === true, options);
    });
  }

  // ---------------------------------------------------------------- clones

  /**
   * Clones a machine (its current state, or `from` a snapshot) into a new machine with a new UUID and MAC.
   * linked: constant time; the clone's top layers are backed by the source snapshot's layers (a linked clone of
   * the current state first takes a snapshot of the source, reported as takenSnapshot). full: the chain is
   * flattened into standalone sparse layers, with progress and cancellation; a cancelled or failed clone leaves
   * nothing behind. Refused (POWERED_ON) while the source runs.
   */
  async clone(ref: string, newName: string, options: CloneOptions): Promise<CloneResult> {
    const displayName = validateName(newName, 'clone name');
    if (options.kind !== 'linked' && options.kind !== 'full') {
      throw new MachineError('INVALID_ARGUMENT', 'Choose a linked or a full clone.');
    }
    return this.withMachine(ref, `${options.kind} clone`, async (src, all) => {
      if ((await runningPid(src.folder)) !== null) {
        throw new MachineError('POWERED_ON', `Machine "${src.manifest.name}" is running: power it off before cloning it (a clone is made only from a powered-off machine).`);
      }
      const fromCurrent = options.from === undefined || options.from.trim() === 'current';
      const id = newId();
      const final = this.machineFolderPath(displayName, id, options.dir);
      let snap: SnapshotRecord | null = fromCurrent ? null : resolveSnapshot(src.manifest, options.from!);
      // A linked clone of the current state takes a snapshot of the source; the clone folder appearing commits both.
      let taking: Transaction | null = null;
      if (options.kind === 'linked' && snap === null) {
        const t = await beginTake(src, `Linked clone "${displayName}"`, `Taken to make the linked clone "${displayName}".`, relative(src.folder, final));
        taking = t.tx;
        snap = t.snapshot;
      }
      const m = src.manifest;
      const tops = m.disks.map((_, i) => newLayerName(i));
      try {
        await this.makeMachineFolder(final, async (staging) => {
          const manifest = newManifest(id, displayName, all, { cpus: m.cpus, memoryMiB: m.memoryMiB }, m.disks.map((d, i) => ({ virtualSize: d.virtualSize, top: tops[i]! })));
          if (options.kind === 'linked') {
            const bases = snap!.layers.map((f) => join(src.folder, f));
            for (let i = 0; i < tops.length; i++) {
              await createLayer(join(staging, tops[i]!), m.disks[i]!.virtualSize, bases[i]!);
              step('linked clone: layer created');
            }
            manifest.clonedFrom = { machineId: m.id, snapshotId: snap!.id, kind: 'linked', baseLayers: bases.map((b) => relative(final, b)) };
          } else {
            const chains = snap ? snap.layers.map((f) => join(src.folder, f)) : m.disks.map((d) => join(src.folder, d.top));
            await flattenAll(chains, tops.map((t) => join(staging, t)), options, 'making the full clone');
            step('full clone: layers written');
            manifest.clonedFrom = { machineId: m.id, snapshotId: snap?.id ?? null, kind: 'full', baseLayers: null };
          }
          return manifest;
        });
      } catch (err) {
        await taking?.rollBack();
        throw err;
      }
      let source = src;
      if (taking) {
        try {
          source = { folder: src.folder, manifest: await taking.commit() };
        } catch (err) {
          // The source's manifest could not be written (a full disk): the clone folder, whose presence would
          // commit the snapshot on recovery, is moved aside first, so that both are undone now.
          const aside = deletingFolder(final);
          await rename(final, aside);
          await taking.rollBack();
          await rm(aside, { recursive: true, force: true });
          if (!this.store.isInside(final)) await this.store.updateRegistry((r) => (r.machines = r.machines.filter((x) => x.path !== final))).catch(() => {});
          throw err;
        }
      }
      const entries = await this.entries();
      const e = entries.find((x) => x.folder === final)!;
      return { machine: await details(e, entries), takenSnapshot: taking ? await snapshotInfo(source, snap!, entries) : null };
    });
  }

  /**
   * Turns a linked clone into a full one: the source's data it reads is copied into its own lowest layers, which
   * then stand alone. Its snapshots stay. Unlocks the source snapshot. With progress and cancellation (a
   * cancelled promotion changes nothing anyone can read).
   */
  async promote(ref: string, options: OperationOptions = {}): Promise<MachineDetails> {
    return this.withMachine(ref, 'promote', async (e, all) => {
      const m = e.manifest;
      const cf = m.clonedFrom;
      if (!cf || cf.kind !== 'linked' || cf.baseLayers === null) {
        throw new MachineError('INVALID_ARGUMENT', `Machine "${m.name}" is not a linked clone: it already stands alone.`);
      }
      await requireOff(e, 'promote');
      const merge: MergeStep[] = [];
      const thawed: string[] = [];
      for (let i = 0; i < m.disks.length; i++) {
        for (const s of childrenOf(m, null)) {
          merge.push({ kind: 'rebase', layer: s.layers[i]!, from: cf.baseLayers[i]!, onto: null, frozen: true });
          thawed.push(s.layers[i]!);
        }
        if (m.current === null) merge.push({ kind: 'rebase', layer: m.disks[i]!.top, from: cf.baseLayers[i]!, onto: null, frozen: false });
      }
      const need = (await sumBytes(cf.baseLayers.map((b) => resolve(e.folder, b)))) * Math.max(1, merge.length / m.disks.length);
      await requireSpace(e.folder, need, 'promoting the clone');
      const after = cloneManifest(m);
      after.revision++;
      after.clonedFrom = { ...cf, kind: 'full', baseLayers: null };
      const tx = await Transaction.begin(e.folder, { operation: 'promote', after, created: [], obsolete: [], freeze: thawed, thawed, merge });
      try {
        await tx.merge(options);
      } catch (err) {
        throw fromImageError(err, 'promoting the clone');
      }
      const committed = await tx.commit();
      return details({ folder: e.folder, manifest: committed }, all);
    });
  }

  // ---------------------------------------------------------------- plumbing

  private async entries(): Promise<MachineEntry[]> {
    return (await this.store.loadAll()).entries;
  }

  /** Runs `fn` holding the machine's lock, on a fresh manifest, after finishing any interrupted operation. */
  private async withMachine<T>(ref: string, operation: string, fn: (e: MachineEntry, all: MachineEntry[]) => Promise<T>): Promise<T> {
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

  /**
   * Makes a machine folder atomically: everything is written in a staging folder next to the final one (same
   * depth, so relative backing paths stay right), which is renamed into place last. Outside folders (`dir`) are
   * registered in the library first, marked with our pid, so a crash is cleaned up on the next open.
   */
  private machineFolderPath(name: string, id: string, dir: string | undefined): string {
    const parent = dir === undefined ? this.store.dir : resolve(dir);
    return join(parent, `${folderSlug(name)}-${shortId(id)}`);
  }

  private async makeMachineFolder(final: string, fill: (staging: string) => Promise<Manifest>): Promise<string> {
    const parent = resolve(final, '..');
    const staging = stagingFolder(final);
    const outside = !this.store.isInside(final);
    if (outside) {
      await mkdir(parent, { recursive: true }).catch((e: unknown) => {
        throw toMachineIoError(e, `creating ${parent}`);
      });
      await this.store.updateRegistry((r) => r.machines.push({ path: final, pid: process.pid }));
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
      if (outside) await this.store.updateRegistry((r) => (r.machines = r.machines.filter((m) => m.path !== final))).catch(() => {});
      throw isMachineError(e) ? e : isImageError(e) ? fromImageError(e, 'writing the new machine') : toMachineIoError(e, 'writing the new machine');
    }
    if (outside) {
      await this.store.updateRegistry((r) => {
        for (const m of r.machines) if (m.path === final) delete m.pid;
      });
    }
    return final;
  }
}

// ------------------------------------------------------------------ operations under a held lock

async function takeLocked(e: MachineEntry, name: string, description: string): Promise<{ entry: MachineEntry; snapshot: SnapshotRecord }> {
  const { tx, snapshot } = await beginTake(e, name, description);
  return { entry: { folder: e.folder, manifest: await tx.commit() }, snapshot };
}

/**
 * A snapshot of a running (or paused) machine: the runtime creates the new top layers, switches QEMU to them in
 * one transaction and saves the memory (unless diskOnly) at the same instant. Errors before the switch change
 * nothing; a memory save failing after it still commits the disks (QEMU writes into the new tops).
 */
async function takeRunningLocked(
  e: MachineEntry,
  name: string,
  description: string,
  diskOnly: boolean,
  qemu: QemuOptions,
): Promise<{ entry: MachineEntry; snapshot: SnapshotRecord }> {
  const m = e.manifest;
  const { snapshot, newTops, after } = planTake(m, name, description, { memory: !diskOnly });
  const stateFile = snapshot.stateFile;
  // Durable: once QEMU writes into the new tops, recovery must find this journal to keep them.
  const tx = await Transaction.begin(e.folder, {
    operation: 'take snapshot',
    after,
    created: stateFile === null ? newTops : [...newTops, stateFile],
    obsolete: [],
    freeze: snapshot.layers,
    thawed: [],
    merge: [],
    durable: true,
  });
  const record = tx.after.snapshots[tx.after.snapshots.length - 1]!;
  try {
    const r = await snapshotRunning(
      e.folder,
      { newTops: newTops.map((t) => join(e.folder, t)), stateFile: stateFile === null ? null : join(e.folder, stateFile) },
      qemu,
    );
    if (r.stateFile !== null) {
      record.vm = { cpus: m.cpus, memoryMiB: m.memoryMiB, macAddress: m.macAddress, machineType: r.machineType, accel: r.accel, qemuVersion: r.qemuVersion };
    }
    after.powerState = r.resumed ? 'running' : 'paused';
  } catch (err) {
    if (isQemuError(err) && err.code === 'STATE_SAVE_FAILED' && err.switched !== null) {
      // QEMU already writes into the new tops: never delete them; the snapshot keeps the disks only.
      record.stateFile = null;
      await tx.commit();
      throw new MachineError('RUNTIME_ERROR', `Snapshot "${name}" holds the disks only: ${err.message}`, [], { cause: err });
    }
    await tx.rollBack();
    throw err;
  }
  // Past the switch, a failure must not roll back (QEMU writes into the new tops): recovery rolls forward.
  step('take snapshot: disks switched');
  return { entry: { folder: e.folder, manifest: await tx.commit() }, snapshot: record };
}

/**
 * The first half of taking a snapshot: journal, new empty top layers on the frozen ones. The caller commits the
 * transaction (or rolls it back); with `companion`, the appearance of that folder also commits it.
 */
async function beginTake(e: MachineEntry, name: string, description: string, companion?: string): Promise<{ tx: Transaction; snapshot: SnapshotRecord }> {
  const m = e.manifest;
  const { snapshot, newTops, after } = planTake(m, name, description, null);
  const tx = await Transaction.begin(e.folder, {
    operation: 'take snapshot',
    after,
    created: newTops,
    obsolete: [],
    freeze: snapshot.layers,
    thawed: [],
    merge: [],
    ...(companion === undefined ? {} : { companion }),
  });
  await createLayers(tx, e.folder, m, newTops, (i) => join(e.folder, m.disks[i]!.top), 'taking the snapshot');
  return { tx, snapshot };
}

/**
 * The manifest after a snapshot of the current state: each top layer freezes into the snapshot and a new empty
 * top (named here) starts on it. `running` marks a snapshot of a running machine, with or without its memory.
 */
function planTake(m: Manifest, name: string, description: string, running: { memory: boolean } | null): { snapshot: SnapshotRecord; newTops: string[]; after: Manifest } {
  const id = newId();
  const snapshot: SnapshotRecord = {
    id,
    name,
    description,
    parentId: m.current,
    createdAt: new Date().toISOString(),
    takenWhileRunning: running !== null,
    layers: m.disks.map((d) => d.top),
    stateFile: running?.memory ? stateFileName(id) : null,
    vm: null,
  };
  const newTops = m.disks.map((_, i) => newLayerName(i));
  const after = cloneManifest(m);
  after.revision++;
  after.snapshots.push(snapshot);
  after.current = snapshot.id;
  after.disks = m.disks.map((d, i) => ({ ...d, top: newTops[i]! }));
  return { snapshot, newTops, after };
}

async function createLayers(tx: Transaction, folder: string, m: Manifest, names: string[], backing: (i: number) => string, what: string): Promise<void> {
  try {
    for (let i = 0; i < names.length; i++) {
      await createLayer(join(folder, names[i]!), m.disks[i]!.virtualSize, backing(i));
      step(`${what}: layer created`);
    }
  } catch (err) {
    await tx.rollBack();
    throw isImageError(err) ? fromImageError(err, what) : toMachineIoError(err, what);
  }
}

async function deleteSnapshotLocked(
  e: MachineEntry,
  all: MachineEntry[],
  target: SnapshotRecord,
  children: boolean,
  options: OperationOptions,
): Promise<DeleteSnapshotResult> {
  const m = e.manifest;
  const doomed = children ? subtreeIds(m, target.id) : new Set([target.id]);
  // A linked clone reads the layer it hangs on and every layer below it.
  const hanging = all.filter((c) => c.manifest.clonedFrom?.kind === 'linked' && c.manifest.clonedFrom.machineId === m.id && subtreeIds(m, target.id).has(c.manifest.clonedFrom.snapshotId ?? ''));
  if (hanging.length > 0) {
    throw new MachineError(
      'LOCKED_BY_CLONES',
      `Snapshot "${target.name}" is locked: the linked clone${hanging.length > 1 ? 's' : ''} ${hanging.map((c) => `"${c.manifest.name}"`).join(', ')} depend${hanging.length > 1 ? '' : 's'} on it; delete or promote ${hanging.length > 1 ? 'them' : 'it'} first.`,
      hanging.map((c) => `${c.manifest.name} (id ${c.manifest.id})`),
    );
  }
  const parentLayer = (i: number): string | null =>
    target.parentId !== null ? snapshotById(m, target.parentId)!.layers[i]! : m.clonedFrom?.kind === 'linked' && m.clonedFrom.baseLayers ? m.clonedFrom.baseLayers[i]! : null;
  const bytesBefore = await machineBytes(e);
  const stateFiles = m.snapshots.filter((s) => doomed.has(s.id) && s.stateFile !== null).map((s) => s.stateFile!);

  const merge: MergeStep[] = [];
  const obsolete: string[] = [];
  const thawed: string[] = [];
  const freeze: string[] = [];
  const merges: DeleteSnapshotResult['merges'] = [];
  /** Disks whose empty top is dropped and whose snapshot layer becomes the top again. */
  const reclaimed = new Map<number, string>();
  let needSpace = 0;
  if (children) {
    for (const id of doomed) obsolete.push(...snapshotById(m, id)!.layers);
    const currentDoomed = m.current !== null && doomed.has(m.current);
    if (currentDoomed) {
      // The current state keeps its content: the doomed layers it reads through are copied into its top.
      for (let i = 0; i < m.disks.length; i++) {
        merge.push({ kind: 'rebase', layer: m.disks[i]!.top, from: snapshotById(m, m.current!)!.layers[i]!, onto: parentLayer(i), frozen: false });
      }
      needSpace += await sumBytes(ancestry(m, m.current).filter((s) => doomed.has(s.id)).flatMap((s) => s.layers.map((f) => join(e.folder, f))));
    }
    merges.push({ snapshotId: target.id, strategy: currentDoomed ? 'rebase' : 'none', dependants: currentDoomed ? 1 : 0 });
  } else {
    const deps: { files: string[]; frozen: boolean }[] = childrenOf(m, target.id).map((c) => ({ files: c.layers, frozen: true }));
    if (m.current === target.id) deps.push({ files: m.disks.map((d) => d.top), frozen: false });
    let strategy: 'none' | 'commit' | 'rebase' = 'none';
    const commits: MergeStep[] = [];
    for (let i = 0; i < m.disks.length; i++) {
      const own = target.layers[i]!;
      if (deps.length === 0) {
        obsolete.push(own);
        continue;
      }
      const ownBytes = await bytesOnDisk(join(e.folder, own));
      if (deps.length === 1 && !deps[0]!.frozen && (await layerAllocatedBytes(join(e.folder, deps[0]!.files[i]!))) === 0) {
        // The current state changed nothing since this snapshot: the snapshot's layer becomes the top again,
        // with no data to move (constant time, the common "delete the snapshot I just took").
        reclaimed.set(i, own);
        thawed.push(own);
        obsolete.push(deps[0]!.files[i]!);
        strategy = 'commit';
        continue;
      }
      if (deps.length === 1) {
        const dep = deps[0]!;
        const depBytes = await bytesOnDisk(join(e.folder, dep.files[i]!));
        if (depBytes <= ownBytes) {
          // Cheaper to merge the dependant into this layer, which then takes the dependant's file name.
          commits.push({ kind: 'commit', from: dep.files[i]!, into: own, frozen: dep.frozen });
          thawed.push(own);
          if (dep.frozen) freeze.push(dep.files[i]!);
          needSpace += 2 * depBytes; // the data, and the undo copy of what it overwrites
          strategy = 'commit';
          continue;
        }
      }
      for (const dep of deps) {
        merge.push({ kind: 'rebase', layer: dep.files[i]!, from: own, onto: parentLayer(i), frozen: dep.frozen });
        if (dep.frozen) {
          thawed.push(dep.files[i]!);
          freeze.push(dep.files[i]!);
        }
        needSpace += ownBytes;
      }
      obsolete.push(own);
      if (strategy === 'none') strategy = 'rebase';
    }
    // Reversible rebases first; the first commit is the point of no return.
    merge.push(...commits);
    merges.push({ snapshotId: target.id, strategy, dependants: deps.length });
  }
  await requireSpace(e.folder, needSpace, 'deleting the snapshot');

  const after = cloneManifest(m);
  after.revision++;
  after.snapshots = m.snapshots.filter((s) => !doomed.has(s.id)).map((s) => (s.parentId === target.id ? { ...s, parentId: target.parentId } : s));
  if (m.current !== null && doomed.has(m.current)) after.current = target.parentId;
  for (const [i, own] of reclaimed) after.disks[i] = { ...after.disks[i]!, top: own };
  const tx = await Transaction.begin(e.folder, { operation: 'delete snapshot', after, created: [], obsolete: [...obsolete, ...stateFiles], freeze, thawed, merge });
  try {
    for (const own of reclaimed.values()) await setReadOnly(join(e.folder, own), false);
    await tx.merge(options);
  } catch (err) {
    throw isImageError(err) ? fromImageError(err, 'deleting the snapshot') : err;
  }
  const committed = await tx.commit();
  const bytesAfter = await machineBytes({ folder: e.folder, manifest: committed });
  return {
    deleted: m.snapshots.filter((s) => doomed.has(s.id)).map((s) => ({ id: s.id, name: s.name })),
    merges,
    freedBytes: Math.max(0, bytesBefore - bytesAfter),
  };
}

async function flattenAll(sources: string[], targets: string[], options: OperationOptions, what: string): Promise<void> {
  const totals = new Array<number>(sources.length).fill(0);
  const dones = new Array<number>(sources.length).fill(0);
  for (let i = 0; i < sources.length; i++) {
    try {
      await flatten(sources[i]!, targets[i]!, {
        ...(options.signal ? { signal: options.signal } : {}),
        onProgress: (done, total) => {
          dones[i] = done;
          totals[i] = total;
          options.onProgress?.(
            dones.reduce((a, b) => a + b, 0),
            totals.reduce((a, b) => a + b, 0),
          );
        },
      });
    } catch (err) {
      throw fromImageError(err, what);
    }
  }
}

// ------------------------------------------------------------------ helpers

/** From QEMU's process, not the manifest alone (which can be stale after a crash). */
async function requireOff(e: MachineEntry, what: string): Promise<void> {
  if ((await runningPid(e.folder)) !== null) {
    throw new MachineError('POWERED_ON', `Machine "${e.manifest.name}" is running: power it off to ${what}.`);
  }
}

/** The power state as QEMU's process tells it (cheap: pidfile and process, no QMP). */
async function livePower(e: MachineEntry): Promise<PowerState> {
  if ((await runningPid(e.folder)) === null) return 'off';
  return e.manifest.powerState === 'off' ? 'running' : e.manifest.powerState;
}

/** Records the power state in the manifest when it changed (the caller holds the lock). */
async function setPower(e: MachineEntry, state: PowerState): Promise<Manifest> {
  if (e.manifest.powerState === state) return e.manifest;
  const m = cloneManifest(e.manifest);
  m.powerState = state;
  m.revision++;
  return writeManifest(e.folder, m);
}

function statusOf(r: RuntimeStatus): MachineStatus {
  return { powerState: r.powerState, pid: r.pid, serialLog: r.serialLog, consoleSocket: r.consoleSocket, startedAt: r.startedAt, qemuRunState: r.qemuRunState };
}

/** Refuses up front when the free space cannot hold what a merge or copy may write (plus 64 MiB of slack). */
async function requireSpace(folder: string, bytes: number, what: string): Promise<void> {
  if (bytes <= 0) return;
  try {
    const s = await statfs(folder);
    const free = s.bavail * s.bsize;
    if (free < bytes + 64 * 1024 * 1024) {
      throw new MachineError('NO_SPACE', `Not enough free disk space for ${what} (needs about ${Math.ceil(bytes / 1048576)} MiB, ${Math.floor(free / 1048576)} MiB free); nothing was changed: free some space and try again.`);
    }
  } catch (e) {
    if (isMachineError(e)) throw e;
    // statfs unsupported: the operation itself will report a full disk.
  }
}

function newManifest(
  id: string,
  name: string,
  all: MachineEntry[],
  options: { cpus?: number; memoryMiB?: number; note?: string },
  disks: Manifest['disks'],
): Manifest {
  const cpus = options.cpus ?? 2;
  const memoryMiB = options.memoryMiB ?? 2048;
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 1024) throw new MachineError('INVALID_ARGUMENT', `${cpus} is not a CPU count from 1 to 1024.`);
  if (!Number.isInteger(memoryMiB) || memoryMiB < 1 || memoryMiB > 16 * 1024 * 1024) throw new MachineError('INVALID_ARGUMENT', `${memoryMiB} is not a memory size in MiB.`);
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    revision: 1,
    id,
    name,
    macAddress: newMacAddress(new Set(all.map((e) => e.manifest.macAddress.toLowerCase()))),
    cpus,
    memoryMiB,
    powerState: 'off',
    createdAt: new Date().toISOString(),
    note: options.note === undefined ? '' : validateDescription(options.note),
    disks,
    snapshots: [],
    current: null,
    clonedFrom: null,
  };
}

/** A machine by id, exact name, or unique id prefix (6+ characters). */
function findMachine(all: MachineEntry[], ref: string): MachineEntry {
  const wanted = ref.trim();
  const byId = all.find((e) => e.manifest.id === wanted.toLowerCase());
  if (byId) return byId;
  const byName = all.filter((e) => e.manifest.name === wanted.normalize('NFC'));
  if (byName.length === 1) return byName[0]!;
  if (byName.length > 1) {
    throw new MachineError(
      'AMBIGUOUS',
      `${byName.length} machines are named "${wanted}": name one by its id (${byName.map((e) => shortId(e.manifest.id)).join(', ')}).`,
      byName.map((e) => `${e.manifest.name} (id ${e.manifest.id}, ${e.folder})`),
    );
  }
  if (wanted.length >= 6) {
    const byPrefix = all.filter((e) => e.manifest.id.startsWith(wanted.toLowerCase()));
    if (byPrefix.length === 1) return byPrefix[0]!;
    if (byPrefix.length > 1) {
      throw new MachineError('AMBIGUOUS', `Several machines have ids starting with "${wanted}": give more of the id.`, byPrefix.map((e) => `${e.manifest.name} (id ${e.manifest.id})`));
    }
  }
  throw new MachineError('NOT_FOUND', `There is no machine "${wanted}" in the library: list them with \`vmsnap vm list\`.`);
}

function directClones(all: MachineEntry[], machineId: string, snapshotId: string): MachineEntry[] {
  return all.filter((c) => c.manifest.clonedFrom?.kind === 'linked' && c.manifest.clonedFrom.machineId === machineId && c.manifest.clonedFrom.snapshotId === snapshotId);
}

/** Linked clones of the machine, and theirs, parents before children. */
function linkedDescendants(all: MachineEntry[], machineId: string): MachineEntry[] {
  const out: MachineEntry[] = [];
  const queue = [machineId];
  while (queue.length > 0) {
    const id = queue.shift()!;
    for (const c of all) {
      if (c.manifest.clonedFrom?.kind === 'linked' && c.manifest.clonedFrom.machineId === id && !out.includes(c)) {
        out.push(c);
        queue.push(c.manifest.id);
      }
    }
  }
  return out;
}

async function sumBytes(paths: string[]): Promise<number> {
  let n = 0;
  for (const p of paths) n += await bytesOnDisk(p);
  return n;
}

async function sumAllocated(paths: string[]): Promise<number> {
  let n = 0;
  for (const p of paths) {
    try {
      n += await layerAllocatedBytes(p);
    } catch (e) {
      throw fromImageError(e, 'measuring the current state');
    }
  }
  return n;
}

async function machineBytes(e: MachineEntry): Promise<number> {
  const m = e.manifest;
  return sumBytes([...m.disks.map((d) => join(e.folder, d.top)), ...m.snapshots.flatMap((s) => s.layers.map((f) => join(e.folder, f)))]);
}

function summary(e: MachineEntry): MachineSummary {
  const m = e.manifest;
  return {
    id: m.id,
    name: m.name,
    folder: e.folder,
    macAddress: m.macAddress,
    cpus: m.cpus,
    memoryMiB: m.memoryMiB,
    powerState: m.powerState,
    createdAt: m.createdAt,
    note: m.note,
    diskCount: m.disks.length,
    snapshotCount: m.snapshots.length,
    current: m.current,
    clonedFrom: m.clonedFrom ? { machineId: m.clonedFrom.machineId, snapshotId: m.clonedFrom.snapshotId, kind: m.clonedFrom.kind } : null,
  };
}

async function snapshotInfo(e: MachineEntry, s: SnapshotRecord, all: MachineEntry[]): Promise<SnapshotInfo> {
  const layers = s.layers.map((f) => join(e.folder, f));
  return {
    id: s.id,
    name: s.name,
    description: s.description,
    parentId: s.parentId,
    createdAt: s.createdAt,
    takenWhileRunning: s.takenWhileRunning,
    hasMemory: s.stateFile !== null,
    layers,
    sizeBytes: await sumBytes(layers),
    lockedBy: directClones(all, e.manifest.id, s.id).map((c) => c.manifest.id),
  };
}

async function details(e: MachineEntry, all: MachineEntry[]): Promise<MachineDetails> {
  const base: Omit<MachineSummary, 'diskCount' | 'snapshotCount'> & Partial<MachineSummary> = summary(e);
  delete base.diskCount;
  delete base.snapshotCount;
  const disks: DiskInfo[] = e.manifest.disks.map((d, index) => ({ index, path: join(e.folder, d.top), virtualSize: d.virtualSize }));
  // Every layer's size at once: one wait for the file system, not one per snapshot.
  const snapshots = await Promise.all(e.manifest.snapshots.map((s) => snapshotInfo(e, s, all)));
  return {
    ...base,
    disks,
    snapshots,
    currentChangedBytes: await sumAllocated(disks.map((d) => d.path)),
    currentSizeBytes: await sumBytes(disks.map((d) => d.path)),
  };
}
