// The Library: the one object front ends use to read and change machines. It only delegates: each concern lives
// in its own module (queries, machines, snapshots, clones, power), all working through a LibraryContext.
import type { Socket } from 'node:net';
import { join, resolve } from 'node:path';
import type { OperationOptions } from '../operation';
import type { GuestInfo, QemuOptions } from '../runtime';
import type { SshTarget } from '../ssh';
import * as autoCheckpoints from './auto-checkpoints';
import type { AutoCheckpointOptions, AutoCheckpointOutcome } from './auto-checkpoints';
import { bootProblem } from './boot-check';
import * as clones from './clones';
import { MachineError } from './errors';
import * as fromImage from './from-image';
import { sshTargetOf, waitForGuestSsh } from './guest-access';
import { defaultLibraryDir } from './library-dir';
import { LibraryContext } from './library-context';
import { details, livePower, snapshotInfo, summary } from './machine-info';
import { resolveSnapshot } from './tree';
import * as machines from './machines';
import * as power from './power';
import * as queries from './queries';
import * as screen from './screen';
import * as snapshots from './snapshots';
import * as sshConfig from './ssh-config';
import type { SshHostBlock } from './ssh-config';
import { Store, type BrokenMachine } from './store';
import { linkTops } from './top-links';
import { exportedDomainsOf, withExport, type LibvirtExportRecord } from './libvirt-exports';
import { linkedDescendants } from './lineage';
import { cloneManifest, writeManifest } from './manifest';
import type {
  CreateFromImageOptions,
  CreateFromImageResult,
  TakenSnapshot,
  CloneOptions,
  CloneResult,
  CompareRow,
  CreateMachineOptions,
  DeleteMachineOptions,
  DeleteMachineResult,
  DeleteSnapshotOptions,
  DeleteSnapshotResult,
  EditMachineOptions,
  EditSnapshotOptions,
  ExportedLibvirtDomain,
  ImportMachineOptions,
  ImportResult,
  MachineDetails,
  MachineSizes,
  MachineStatus,
  MachineSummary,
  RevertOptions,
  RevertResult,
  SnapshotInfo,
  SnapshotTree,
  StateDiff,
  StateRef,
  StopMachineOptions,
  StopMachineResult,
  TakeSnapshotOptions,
} from './types';

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
 *
 * Machine references (`ref`) are an id, an exact name, or a unique id prefix (6+ characters); snapshot
 * references the same within the machine.
 */
export class Library {
  private constructor(private readonly ctx: LibraryContext) {}

  /**
   * Opens (and creates if needed) the library in `dir`; without it, VMSNAP_LIBRARY or the platform's per-user
   * data folder (see defaultLibraryDir). Recovers operations killed halfway and removes their leftovers.
   * `qemu`: how QEMU is found and run (default: $VMSNAP_QEMU, $VMSNAP_QEMU_ACCEL, else qemu-system-x86_64, kvm:tcg).
   */
  static async open(dir?: string, options: { qemu?: QemuOptions } = {}): Promise<Library> {
    const store = new Store(resolve(dir ?? defaultLibraryDir()));
    await store.ensure();
    await store.recover();
    return new Library(new LibraryContext(store, options.qemu ?? {}));
  }

  /** Absolute path of the library folder. */
  get dir(): string {
    return this.ctx.store.dir;
  }

  // ---------------------------------------------------------------- reading

  /** All machines, oldest first. Reads manifests only (no image is opened), so it stays fast for big libraries. */
  async list(): Promise<MachineSummary[]> {
    return (await this.scan()).machines;
  }

  /** What list() and broken() give, from one read of the library (the extension's tree shows both). */
  async scan(): Promise<LibraryScan> {
    const { entries, broken } = await this.ctx.store.loadAll();
    // One pidfile look per machine, all at once: a big library lists in the time of a few file reads.
    const machines = await Promise.all(entries.map(async (e) => ({ ...summary(e), powerState: await livePower(e) })));
    return { machines, broken };
  }

  /** Machine folders whose manifest could not be read, with the reason (list() leaves them out). */
  async broken(): Promise<BrokenMachine[]> {
    return (await this.ctx.store.loadAll()).broken;
  }

  /** Everything about one machine, with measured sizes. */
  async show(ref: string): Promise<MachineDetails> {
    return this.ctx.read(ref, async (e, all) => ({ ...(await details(e, all)), powerState: await livePower(e) }));
  }

  /** One snapshot of a machine (by name, id or unique id prefix), with its size and thumbnail. */
  async showSnapshot(ref: string, snapshotRef: string): Promise<SnapshotInfo> {
    return this.ctx.read(ref, (e, all) => snapshotInfo(e, resolveSnapshot(e.manifest, snapshotRef), all));
  }

  /** Absolute path of a disk's current top layer: writing into it (QEMU, qemu-io) changes the current state. */
  async diskPath(ref: string, diskIndex = 0): Promise<string> {
    const { e } = await this.ctx.find(ref);
    const disk = e.manifest.disks[diskIndex];
    if (!disk) {
      throw new MachineError('NOT_FOUND', `Machine "${e.manifest.name}" has no disk ${diskIndex} (it has ${e.manifest.disks.length}, counted from 0).`);
    }
    return join(e.folder, disk.top);
  }

  /** The snapshot tree in creation order, with a 'current' node ("You are here") under the snapshot it descends from. */
  snapshotTree(ref: string): Promise<SnapshotTree> {
    return queries.snapshotTree(this.ctx, ref);
  }

  /** Each snapshot's own layer size on disk, and how many bytes the current state changed since its snapshot. */
  sizes(ref: string): Promise<MachineSizes> {
    return queries.sizes(this.ctx, ref);
  }

  /**
   * How many bytes differ between two states of a machine (snapshot references or 'current') and where, per disk.
   * From the layers' allocation maps (fast; may count ranges rewritten with the same data); `exact` reads them.
   */
  diff(ref: string, a: StateRef, b: StateRef, options: { exact?: boolean } & OperationOptions = {}): Promise<StateDiff> {
    return queries.diff(this.ctx, ref, a, b, options);
  }

  /** The rows of the snapshots-vs-clones table for the machine's family (see queries.compare). */
  compare(ref: string): Promise<CompareRow[]> {
    return queries.compare(this.ctx, ref);
  }

  // ---------------------------------------------------------------- machines

  /** A new machine with one empty disk (default 16 GiB virtual, sparse), a new UUID and a unique MAC. */
  createMachine(name: string, options: CreateMachineOptions = {}): Promise<MachineDetails> {
    return machines.createMachine(this.ctx, name, options);
  }

  /**
   * A machine launched from a cloud image (a path or URL, qcow2 or raw): the image is cached in the library once,
   * the machine's disk is an overlay on it, and a cloud-init seed lets the user in over SSH with their key.
   */
  createFromImage(name: string, source: string, options: CreateFromImageOptions = {}): Promise<CreateFromImageResult> {
    return fromImage.createFromImage(this.ctx, name, source, options);
  }

  /**
   * Where `ssh` reaches the running machine (port, user, key, the machine's own known_hosts). With `wait`, first
   * waits until its SSH server answers (`onWaiting` is called once when it does not at once).
   */
  async sshTarget(ref: string, options: { user?: string; wait?: { timeoutMs: number; signal?: AbortSignal; onWaiting?: () => void } } = {}): Promise<SshTarget> {
    const { e } = await this.ctx.find(ref);
    const status = await power.machineStatus(this.ctx, e.manifest.id);
    const target = sshTargetOf(e.folder, e.manifest, status.forwards, options.user);
    if (options.wait !== undefined) await waitForGuestSsh(target, e.manifest, status.serialLog, options.wait);
    return target;
  }

  /** `Host vmsnap-NAME` blocks of the running machines launched from a cloud image (or of `ref`). */
  sshHostBlocks(ref?: string): Promise<SshHostBlock[]> {
    return sshConfig.sshHostBlocks(this.ctx, ref);
  }

  /** Rewrites `<library>/ssh_config` (for an `Include` line in ~/.ssh/config) and returns its path. */
  writeSshConfig(): Promise<string> {
    return sshConfig.writeSshConfig(this.ctx);
  }

  /**
   * Copies a qcow2 or raw image in as a new machine. The image itself is only read. Its internal snapshots are
   * listed in the result and, with internalSnapshots: 'convert', become snapshots of the new machine.
   */
  importMachine(name: string, imagePath: string, options: ImportMachineOptions = {}): Promise<ImportResult> {
    return machines.importMachine(this.ctx, name, imagePath, options);
  }

  /**
   * Paths that always lead to the machine's current disks (links the library moves with every change of top), for
   * a program that keeps a path, such as a libvirt domain; disk by disk. exportedTo: the libvirt domain about to
   * be defined on them, recorded in the manifest so that deleting the machine does not leave it behind unasked.
   */
  linkCurrentDisks(ref: string, options: { exportedTo?: LibvirtExportRecord } = {}): Promise<string[]> {
    return this.ctx.withMachine(ref, 'link current disks', async (e) => {
      const links = await linkTops(e.folder, e.manifest);
      // Recorded before libvirt hears of the domain: a delete then always looks for it (a failed define leaves a
      // record of a domain that does not exist, which a delete finds absent).
      if (options.exportedTo !== undefined) {
        const m = cloneManifest(e.manifest);
        m.libvirtExports = withExport(m.libvirtExports, options.exportedTo);
        m.revision++;
        await writeManifest(e.folder, m);
      }
      return links;
    });
  }

  /**
   * The libvirt domains `vm export` defined from the machine (withClones: and from its linked clones) that still
   * read its folder, as a delete would find them. A connection that cannot be read: MachineError (libvirt-unreachable).
   */
  async exportedDomains(ref: string, options: { withClones?: boolean } = {}): Promise<ExportedLibvirtDomain[]> {
    const { e, all } = await this.ctx.find(ref);
    return exportedDomainsOf(options.withClones === true ? [...linkedDescendants(all, e.manifest.id), e] : [e]);
  }

  /** Renames the machine, edits its note, cpus or memory. The folder keeps its name (clones point into it). */
  editMachine(ref: string, changes: EditMachineOptions): Promise<MachineDetails> {
    return machines.editMachine(this.ctx, ref, changes);
  }

  /** Shorthand for editMachine(ref, { name }). */
  renameMachine(ref: string, newName: string): Promise<MachineDetails> {
    return this.editMachine(ref, { name: newName });
  }

  /**
   * Deletes a machine and its folder. Refused (LOCKED_BY_CLONES, naming them) while linked clones depend on it,
   * unless withClones: then they (and their own linked clones) are deleted first, each atomically, so an
   * interruption never leaves a clone without its source. Full clones are independent and stay. A libvirt domain
   * exported from a machine to delete that still reads its folder refuses the delete (NEEDS_CONFIRMATION) unless
   * options.libvirtDomains says to undefine or keep it.
   */
  deleteMachine(ref: string, options: DeleteMachineOptions = {}): Promise<DeleteMachineResult> {
    return machines.deleteMachine(this.ctx, ref, options);
  }

  // ---------------------------------------------------------------- power

  /** Powers the machine on (QEMU runs detached and outlives this process). ALREADY_RUNNING when it runs. */
  startMachine(ref: string): Promise<MachineStatus> {
    return power.startMachine(this.ctx, ref);
  }

  /** ACPI power button, then QEMU quit, then kill after the time-out; force: quit at once. */
  stopMachine(ref: string, options: StopMachineOptions = {}): Promise<StopMachineResult> {
    return power.stopMachine(this.ctx, ref, options);
  }

  pauseMachine(ref: string): Promise<MachineStatus> {
    return power.pauseMachine(this.ctx, ref);
  }

  resumeMachine(ref: string): Promise<MachineStatus> {
    return power.resumeMachine(this.ctx, ref);
  }

  /** Why the machine has nothing to boot (no boot sector on any disk, no CD), or null. No lock: nothing changes. */
  async bootProblem(ref: string): Promise<string | null> {
    const { e } = await this.ctx.find(ref);
    return bootProblem(e);
  }

  /** The real power state from QEMU (pidfile, process, QMP); the manifest is corrected when it differs. */
  machineStatus(ref: string): Promise<MachineStatus> {
    return power.machineStatus(this.ctx, ref);
  }

  /**
   * The running guest's hostname, OS and addresses from its agent, or why the agent does not answer (at most a
   * short time-out); null when the machine is off.
   */
  guestInfo(ref: string): Promise<GuestInfo | null> {
    return power.guestInfo(this.ctx, ref);
  }

  /** A connection to the machine's serial port (one client at a time; a second waits). No lock: nothing changes. */
  openConsole(ref: string): Promise<Socket> {
    return power.openConsole(this.ctx, ref);
  }

  /** The unix socket of the running machine's VNC server (its screen). No lock: nothing changes. */
  displaySocket(ref: string): Promise<string> {
    return screen.displaySocket(this.ctx, ref);
  }

  /** A PNG of the running machine's screen, written to `file`. No lock: nothing in the library changes. */
  screenshot(ref: string, file: string): Promise<screen.Screenshot> {
    return screen.screenshot(this.ctx, ref, file);
  }

  // ---------------------------------------------------------------- snapshots

  /**
   * Takes a snapshot of the current state, in constant time whatever the disk size: each top layer is frozen
   * (it becomes the snapshot's read-only layer) and a new empty top layer backed by it starts the current state.
   */
  takeSnapshot(ref: string, name: string, options: TakeSnapshotOptions = {}): Promise<TakenSnapshot> {
    return snapshots.takeSnapshot(this.ctx, ref, name, options);
  }

  /**
   * Makes the current state exactly the snapshot's state: a new empty top layer on the snapshot's layer. The
   * current state's unsaved changes are lost, so one option is required: discardCurrent, or saveCurrentAs
   * (a snapshot of the current state is taken first). Without either: NEEDS_CONFIRMATION.
   */
  revert(ref: string, snapshotRef: string, options: RevertOptions = {}): Promise<RevertResult> {
    return snapshots.revert(this.ctx, ref, snapshotRef, options);
  }

  /** Renames a snapshot or changes its description (names need not be unique: ids tell them apart). */
  editSnapshot(ref: string, snapshotRef: string, changes: EditSnapshotOptions): Promise<SnapshotInfo> {
    return snapshots.editSnapshot(this.ctx, ref, snapshotRef, changes);
  }

  /**
   * Deletes a snapshot (with children: its whole subtree) so that every other state reads exactly as before
   * (see planSnapshotDeletion). Refused with LOCKED_BY_CLONES when a linked clone hangs on the snapshot or on
   * one below it, and with POWERED_ON when a running machine reads its layer.
   */
  deleteSnapshot(ref: string, snapshotRef: string, options: DeleteSnapshotOptions = {}): Promise<DeleteSnapshotResult> {
    return snapshots.deleteSnapshot(this.ctx, ref, snapshotRef, options);
  }

  /**
   * One automatic checkpoint of the machine, if its policy says one is due and it changed since its last snapshot;
   * then prunes what the retention does not keep (see auto-checkpoints.ts). Skips (busy, no space) are outcomes,
   * not errors.
   */
  autoCheckpoint(ref: string, options: AutoCheckpointOptions = {}): Promise<AutoCheckpointOutcome> {
    return autoCheckpoints.autoCheckpoint(this.ctx, ref, options);
  }

  // ---------------------------------------------------------------- clones

  /**
   * Clones a machine (its current state, or `from` a snapshot) into a new machine with a new UUID and MAC.
   * linked: constant time; the clone's top layers are backed by the source snapshot's layers (a linked clone of
   * the current state first takes a snapshot of the source, reported as takenSnapshot). full: the chain is
   * flattened into standalone sparse layers, with progress and cancellation; a cancelled or failed clone leaves
   * nothing behind. Refused (POWERED_ON) while the source runs.
   */
  clone(ref: string, newName: string, options: CloneOptions): Promise<CloneResult> {
    return clones.clone(this.ctx, ref, newName, options);
  }

  /**
   * Turns a linked clone into a full one: the source's data it reads is copied into its own lowest layers, which
   * then stand alone. Its snapshots stay. Unlocks the source snapshot. With progress and cancellation (a
   * cancelled promotion changes nothing anyone can read).
   */
  promote(ref: string, options: OperationOptions = {}): Promise<MachineDetails> {
    return clones.promote(this.ctx, ref, options);
  }
}
