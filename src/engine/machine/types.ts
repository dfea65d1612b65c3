import type { OperationOptions } from '../operation';
import type { BoundForward, ClockOutcome, QuiesceOutcome } from '../runtime';

// Plain objects the Library returns: JSON-serialisable as they are (the CLI's `--json` prints them).

export type PowerState = 'off' | 'running' | 'paused';
export type CloneKind = 'linked' | 'full';

export interface ClonedFrom {
  machineId: string;
  /** The source snapshot the clone was made from (for a clone of the current state: the snapshot taken for it, or null for a full clone of the current state). */
  snapshotId: string | null;
  kind: CloneKind;
}

export interface DiskInfo {
  index: number;
  /** Absolute path of the current top layer: write into it (qemu-io, QEMU) to change the current state. */
  path: string;
  virtualSize: number;
}

/** A snapshot just taken, and how long its machine did not run for it (0 when it was off or disk-only). */
export interface TakenSnapshot extends SnapshotInfo {
  pauseMs: number;
  /** A disk-only snapshot of a running machine: how its guest agent quiesced it, or why not; else null. */
  quiesce: QuiesceOutcome | null;
}

export interface SnapshotInfo {
  id: string;
  name: string;
  description: string;
  parentId: string | null;
  /** ISO 8601. */
  createdAt: string;
  takenWhileRunning: boolean;
  /** True when the snapshot holds the memory and device state: reverting to it brings the machine back running. */
  hasMemory: boolean;
  /** The guest's file systems were frozen by its agent when the disks were taken (false: not, or not known). */
  quiesced: boolean;
  /** Absolute paths of the snapshot's frozen layers, one per disk. */
  layers: string[];
  /**
   * Bytes this snapshot occupies on the host disk: its own layers (not the layers below) plus, for a snapshot of a
   * running machine, its saved memory and device state (`memoryBytes`).
   */
  sizeBytes: number;
  /** Bytes of the saved memory and device state (0 when the snapshot holds none); part of `sizeBytes`. */
  memoryBytes: number;
  /** Ids of linked clones (any machine in the library) whose disks hang on this snapshot's layers. */
  lockedBy: string[];
  /** Taken by the automatic checkpoint schedule: pruning may delete it (renaming or describing it makes it the user's own). */
  auto: boolean;
  /** Absolute path of a small PNG of the screen at the snapshot, or null (none: the UI shows a placeholder). */
  thumbnail: string | null;
}

/**
 * A machine's automatic checkpoint policy: a checkpoint every `everySeconds` (skipped when nothing changed), and
 * after each one the automatic checkpoints beyond what the retention keeps are pruned (see auto-policy.ts):
 * the newest `keep`, plus the newest of each of the `daily` most recent days and `weekly` most recent weeks.
 */
export interface AutoCheckpointPolicy {
  everySeconds: number;
  keep: number;
  daily: number;
  weekly: number;
}

export interface MachineSummary {
  id: string;
  name: string;
  /** Absolute path of the machine's folder. */
  folder: string;
  macAddress: string;
  cpus: number;
  memoryMiB: number;
  powerState: PowerState;
  createdAt: string;
  note: string;
  diskCount: number;
  snapshotCount: number;
  current: string | null;
  clonedFrom: ClonedFrom | null;
  /** The guest user of a machine launched from a cloud image (reachable with `vm ssh`), else null. */
  guestUser: string | null;
  /** Automatic checkpoints, or null (off, the default). */
  autoCheckpoints: AutoCheckpointPolicy | null;
}

export interface MachineDetails extends Omit<MachineSummary, 'diskCount' | 'snapshotCount'> {
  disks: DiskInfo[];
  /** In creation order. */
  snapshots: SnapshotInfo[];
  /** Bytes the current state has changed since the snapshot it descends from (all disks). */
  currentChangedBytes: number;
  /** Bytes the current top layers occupy on the host disk. */
  currentSizeBytes: number;
  /** A machine launched from a cloud image: its guest user and SSH host key (public), else null. */
  guest: { user: string; hostKey: string } | null;
  /** The cloud image its disk is an overlay on (in the library's image cache), else null. */
  baseImage: { sha256: string; source: string } | null;
  /** The ISO image in its CD-ROM drive (absolute path), else null. */
  iso: string | null;
  /** Ports forwarded from 127.0.0.1 into the guest at its next start (SSH first; hostPort absent: any free port). */
  forwards: { guestPort: number; hostPort?: number }[];
  /** The machine runs with TCG because KVM could not run its guest (under the auto accelerator), else null. */
  kvmFailedAt: string | null;
  /** The display device at its next start: std (standard VGA), virtio (virtio-vga) or none. */
  display: 'std' | 'virtio' | 'none';
}

/** A node of the snapshot tree; the current state is a pseudo-node of kind 'current' ("You are here"). */
export interface SnapshotTreeNode {
  kind: 'snapshot' | 'current';
  /** Snapshot id, or 'current'. */
  id: string;
  name: string;
  description: string;
  createdAt: string;
  /** True on the snapshot the current state descends from. */
  isCurrentParent: boolean;
  /** Taken while the machine ran (false for the 'current' node). */
  takenWhileRunning: boolean;
  /** Holds the memory state: reverting to it brings the machine back running. */
  hasMemory: boolean;
  /** Disks taken with the guest's file systems frozen by its agent. */
  quiesced: boolean;
  /** Ids of linked clones hanging on this snapshot. */
  lockedBy: string[];
  /** An automatic checkpoint (false for the 'current' node). */
  auto: boolean;
  /** Children in creation order; the 'current' node comes after the snapshots of its parent. */
  children: SnapshotTreeNode[];
}

export interface SnapshotTree {
  machineId: string;
  machineName: string;
  /** The roots (snapshots without a parent, and 'current' when it descends from no snapshot). */
  roots: SnapshotTreeNode[];
}

export interface CreateMachineOptions {
  /** Virtual size of the first disk in bytes (default 16 GiB). */
  diskSize?: number;
  /** Default 2. */
  cpus?: number;
  /** Default 2048. */
  memoryMiB?: number;
  note?: string;
  /** Put the machine's folder in this directory instead of the library (registered in the library). */
  dir?: string;
  /** An ISO image to put in the CD-ROM drive (referenced by absolute path, never copied): it boots until the disk can. */
  iso?: string;
}

export interface CreateFromImageOptions extends OperationOptions {
  /** Virtual size of the disk in bytes (default 16 GiB, at least the image's size; cloud-init grows the root into it). */
  diskSize?: number;
  cpus?: number;
  memoryMiB?: number;
  note?: string;
  /** The image's expected sha256 (hex, or sha256:HEX). */
  sha256?: string;
  /** The guest user (default: the host user's name when it is a valid non-system name, else "dev"). */
  user?: string;
  /** A public key file (.pub) to let in (default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub, else the library's own key, made once). */
  sshKey?: string;
  /** The user's own cloud-init user-data (used verbatim; ours then goes to vendor-data). */
  userData?: string;
}

export interface CreateFromImageResult {
  machine: MachineDetails;
  image: { sha256: string; format: 'qcow2' | 'raw'; virtualSize: number; fromCache: boolean; source: string };
  /** The public key the guest lets in, and whether the library's key pair was made by this call. */
  key: { path: string; generated: boolean };
}

export interface ImportMachineOptions extends OperationOptions {
  cpus?: number;
  memoryMiB?: number;
  note?: string;
  /**
   * What happens to the image's internal (qcow2) snapshots. 'flatten' (default): only the image's current state
   * is imported, as one standalone layer. 'convert': each internal snapshot, oldest first, becomes one of our
   * snapshots in a linear chain (each layer holding only what changed since the previous one), and the current
   * state descends from the last.
   */
  internalSnapshots?: 'flatten' | 'convert';
}

export interface ImportResult {
  machine: MachineDetails;
  /** The internal snapshots the image held (listed whether converted or not). */
  internalSnapshots: { id: string; name: string; date: string }[];
  convertedSnapshots: boolean;
}

export interface EditMachineOptions {
  name?: string;
  note?: string;
  cpus?: number;
  memoryMiB?: number;
  /** An ISO image to put in the CD-ROM drive, or null to eject it; effective at the next start. */
  iso?: string | null;
  /** Turns automatic checkpoints on (or changes the policy), or off with null. Fields left out keep their value (or default). */
  autoCheckpoints?: Partial<AutoCheckpointPolicy> | null;
  /** Ports to stop forwarding, then forwards to add (one per guest port); effective at the next start. */
  forwards?: { remove?: number[] | 'all'; add?: { guestPort: number; hostPort?: number }[] };
  /** The display device (std, virtio or none); effective at the next start. */
  display?: 'std' | 'virtio' | 'none';
}

export interface DeleteMachineOptions {
  /** Also delete the linked clones (and their clones) that depend on this machine. */
  withClones?: boolean;
  /**
   * What becomes of a libvirt domain `vm export` defined from a deleted machine that still reads its folder:
   * 'undefine' it too (refused while it runs), or 'keep' it (it will point at missing files; its connection is
   * then not even asked). Absent: such a domain refuses the delete (NEEDS_CONFIRMATION, detail libvirt-domain-exported).
   */
  libvirtDomains?: 'undefine' | 'keep';
}

export interface DeleteMachineResult {
  /** Machines deleted, clones first. */
  deleted: { id: string; name: string }[];
  /** libvirt domains undefined with them ('undefine'). */
  undefinedDomains: { connection: string; domain: string }[];
  /** libvirt domains left pointing at the deleted folders ('keep'; those that could be looked up). */
  keptDomains: { connection: string; domain: string }[];
}

/** A libvirt domain `vm export` defined from a machine, as libvirt has it now (it still reads the machine's folder). */
export interface ExportedLibvirtDomain {
  machineId: string;
  machineName: string;
  connection: string;
  /** Its name now. */
  domain: string;
  powerState: PowerState;
}

export interface TakeSnapshotOptions {
  description?: string;
  /** On a running machine: snapshot the disks only, without the memory (no pause at all). */
  diskOnly?: boolean;
}

export interface RevertOptions {
  /** Throw away the current state's unsaved changes. */
  discardCurrent?: boolean;
  /** Take a snapshot of the current state with this name first, then revert. */
  saveCurrentAs?: string;
}

export interface RevertResult {
  /** The snapshot the current state now descends from. */
  snapshot: SnapshotInfo;
  /** The snapshot made of the previous current state (saveCurrentAs), or null. */
  saved: SnapshotInfo | null;
  /** Bytes of unsaved changes thrown away (discardCurrent). */
  discardedBytes: number;
  /** The machine runs after the revert (the snapshot held a memory state that was loaded). */
  poweredOn: boolean;
  /** Why a memory state could not be loaded (the disks were reverted, the machine is off), or null. */
  stateLoadError: string | null;
  /** After a memory state was loaded: whether the guest's clock was set to the host's (by its agent); else null. */
  guestClock: ClockOutcome | null;
}

/** A machine's real power state, from its QEMU process (the manifest is brought in line with it). */
export interface MachineStatus {
  powerState: PowerState;
  pid: number | null;
  /** Absolute path of the serial port's log file. */
  serialLog: string;
  consoleSocket: string | null;
  startedAt: string | null;
  qemuRunState: string | null;
  /** Why the guest stopped by itself (e.g. KVM could not run it), one sentence; else null. */
  failure: string | null;
  /** Something the user should know about how it runs (e.g. KVM could not run it, so TCG does), one sentence; else null. */
  notice: string | null;
  /** Ports forwarded from 127.0.0.1 into the guest while it runs. */
  forwards: BoundForward[];
  /** Where SSH reaches the guest while it runs (user: null when the machine was not launched from a cloud image). */
  ssh: { host: string; port: number; user: string | null } | null;
}

export interface StopMachineOptions {
  /** Quit QEMU at once instead of pressing the ACPI power button. */
  force?: boolean;
  /** How long the guest gets to shut down after the power button (default 60000 ms). */
  powerdownTimeoutMs?: number;
  /** False: a guest that ignores the power button is left running ('still-running'); default true: QEMU quits. */
  quitAfterTimeout?: boolean;
  /** Stops waiting for the guest to shut down (with `quitAfterTimeout: false`). */
  signal?: AbortSignal;
}

export interface StopMachineResult {
  /**
   * 'agent': the guest ignored the ACPI power button and its guest agent shut it down. 'still-running': the guest
   * did not shut down in time and `quitAfterTimeout` was false; it is still on.
   */
  method: 'already-off' | 'acpi' | 'agent' | 'quit' | 'kill' | 'still-running';
  ms: number;
}

export interface DeleteSnapshotOptions extends OperationOptions {
  /** Delete the snapshot's whole subtree (the current state keeps its content). */
  children?: boolean;
}

export interface DeleteSnapshotResult {
  deleted: { id: string; name: string }[];
  /** How each layer was merged: 'none' (nothing depended on it), 'commit' (the one dependant was merged into it), 'rebase' (its data copied into each dependant). */
  merges: { snapshotId: string; strategy: 'none' | 'commit' | 'rebase'; dependants: number }[];
  /** Host bytes given back (file sizes before minus after). */
  freedBytes: number;
}

export interface EditSnapshotOptions {
  name?: string;
  description?: string;
}

/** A state of a machine: a snapshot reference (id or name) or 'current'. */
export type StateRef = string;

export interface StateDiff {
  a: { ref: string; snapshotId: string | null };
  b: { ref: string; snapshotId: string | null };
  /** Bytes that differ, all disks. */
  bytes: number;
  disks: { index: number; bytes: number; ranges: { offset: number; length: number }[] }[];
  /** True when computed by comparing content; false when from allocation maps (may over-count rewritten-with-same-data). */
  exact: boolean;
}

export interface MachineSizes {
  machineId: string;
  snapshots: { id: string; name: string; sizeBytes: number }[];
  current: { changedBytes: number; sizeBytes: number; parentId: string | null };
  /** All layer files of the machine's own folder. */
  totalBytes: number;
}

export interface CloneOptions extends OperationOptions {
  kind: CloneKind;
  /** A snapshot reference; default: the current state. */
  from?: StateRef;
  /** Put the clone's folder in this directory instead of the library. */
  dir?: string;
}

export interface CloneResult {
  machine: MachineDetails;
  /** For a linked clone of the current state: the snapshot taken of the source first (VMware does the same). */
  takenSnapshot: SnapshotInfo | null;
}

/** What a comparison row cannot live without (front ends word it). */
export type CompareDependency =
  | { kind: 'nothing' }
  /** A root snapshot of a machine that stands alone: the machine itself. */
  | { kind: 'machine'; machineId: string; machineName: string }
  /** A snapshot (of this machine, or the source snapshot of a linked clone); names are null when it is gone. */
  | { kind: 'snapshot'; snapshotId: string | null; snapshotName: string | null; machineId: string; machineName: string | null };

export interface CompareRow {
  /** A machine that is no clone, a snapshot, or a clone of its kind. */
  kind: 'machine' | 'snapshot' | CloneKind;
  id: string;
  name: string;
  /** The machine this row belongs to (for snapshots) or is (for machines and clones). */
  machineId: string;
  createdAt: string;
  /** On the host disk; for a snapshot, its layers plus its saved memory (`memoryBytes`). */
  sizeBytes: number;
  /** A snapshot's saved memory and device state, part of `sizeBytes`; 0 for machines and disk-only snapshots. */
  memoryBytes: number;
  /** What it cannot live without. */
  dependsOn: CompareDependency;
  /** Whether it can run at the same time as its source (snapshots: no; clones: yes). */
  canRunAlongsideSource: boolean;
  /** UUID and MAC of the machine the row belongs to (snapshots share their machine's identity). */
  uuid: string;
  macAddress: string;
  description: string;
  /** Depth in the family tree, for indenting. */
  depth: number;
  /** A snapshot taken by the automatic checkpoint schedule. */
  auto: boolean;
}
