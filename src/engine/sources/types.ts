// What a machine source is: the one interface the tree, the commands and the CLI talk to, whichever tool keeps
// the machines (our own library, libvirt on this computer or over SSH, later VMware, VirtualBox, Hyper-V).
import type { OperationOptions } from '../operation';
import type { CloneKind, PowerState } from '../machine';

export type { CloneKind, PowerState };

/**
 * What a source can do at all. A front end offers only these (the tree's contextValue carries them); a command
 * given something its source cannot do is refused with SourceError UNSUPPORTED and the source's reason.
 */
export interface SourceCapabilities {
  /** A running machine's snapshot holds its memory: reverting to it brings the machine back running. */
  memorySnapshots: boolean;
  /** A revert to a snapshot with memory leaves the machine running (not only its disks reverted). */
  revertToRunning: boolean;
  linkedClones: boolean;
  fullClones: boolean;
  /** A linked clone can be made independent of its source. */
  promote: boolean;
  /** Snapshots can be deleted while the machine runs. */
  deleteWhileRunning: boolean;
  renameSnapshot: boolean;
  describeSnapshot: boolean;
  /** How many bytes differ between two states. */
  diff: boolean;
  /** Each snapshot's own size on disk. */
  sizes: boolean;
  pause: boolean;
}

/** Every capability by name, for a front end that lists them (e.g. into a contextValue). */
export const CAPABILITY_NAMES: readonly (keyof SourceCapabilities)[] = [
  'memorySnapshots',
  'revertToRunning',
  'linkedClones',
  'fullClones',
  'promote',
  'deleteWhileRunning',
  'renameSnapshot',
  'describeSnapshot',
  'diff',
  'sizes',
  'pause',
];

/** Every capability, except those named. */
export function capabilitiesWithout(...no: (keyof SourceCapabilities)[]): SourceCapabilities {
  return Object.fromEntries(CAPABILITY_NAMES.map((n) => [n, !no.includes(n)])) as unknown as SourceCapabilities;
}

/** A machine as every source lists it. `ref` is what the source's other methods take to name it. */
export interface SourceMachine {
  /** The source it belongs to (SourceInfo.id). */
  sourceId: string;
  /** The reference the source's methods take (library: the machine id; libvirt: the domain's UUID). */
  ref: string;
  name: string;
  uuid: string;
  powerState: PowerState;
  cpus: number;
  memoryMiB: number;
  macAddresses: string[];
  snapshotCount: number;
  /** The snapshot the current state descends from (its id), or null. */
  currentSnapshot: string | null;
}

export interface SourceDisk {
  /** The guest's name for it (libvirt: vda), or its index for our library. */
  target: string;
  /** The file the current state is written to, as the host of the source sees it; null for a non-file disk. */
  path: string | null;
  /** qcow2, raw, ... (null when unknown). */
  format: string | null;
}

export interface SourceMachineDetails extends SourceMachine {
  disks: SourceDisk[];
  snapshots: SourceSnapshot[];
}

/** What a source refuses for one snapshot, and why (one sentence), e.g. libvirt 9.0 and external snapshots. */
export type SnapshotRefusals = Partial<Record<'revert' | 'delete' | 'rename' | 'linkedClone' | 'fullClone', string>>;

export interface SourceSnapshot {
  /** Unique within the machine (library: a UUID; libvirt: the snapshot's name). */
  id: string;
  name: string;
  description: string;
  parentId: string | null;
  /** ISO 8601. */
  createdAt: string;
  takenWhileRunning: boolean;
  hasMemory: boolean;
  /** internal: inside the disk images (qcow2); external: frozen layer files. */
  location: 'internal' | 'external';
  refusals: SnapshotRefusals;
}

/** A node of a source's snapshot tree; the current state is a pseudo-node of kind 'current' ("You are here"). */
export interface SourceSnapshotNode {
  kind: 'snapshot' | 'current';
  /** Snapshot id, or 'current'. */
  id: string;
  snapshot: SourceSnapshot | null;
  isCurrentParent: boolean;
  children: SourceSnapshotNode[];
}

export interface SourceSnapshotTree {
  machineRef: string;
  machineName: string;
  roots: SourceSnapshotNode[];
}

export type PowerAction = 'start' | 'stop' | 'force-off' | 'pause' | 'resume';

export interface SourceStopOptions {
  /** Power off at once instead of asking the guest to shut down. */
  force?: boolean;
  /** How long the guest gets to shut down when asked before it is powered off (default 60000 ms). */
  timeoutMs?: number;
}

export interface SourceStopResult {
  /** 'shutdown': the guest shut down when asked (ACPI, or its agent); 'forced': powered off (force, or after the time-out). */
  method: 'already-off' | 'shutdown' | 'forced';
  /** The guest was asked and did not shut down within the time-out. */
  timedOut: boolean;
  ms: number;
}

export interface TakeOptions {
  description?: string;
  /** On a running machine: the disks only, without the memory. */
  diskOnly?: boolean;
}

export interface SourceRevertOptions {
  /** Throw away the current state's unsaved changes. */
  discardCurrent?: boolean;
  /** Take a snapshot of the current state with this name first. */
  saveCurrentAs?: string;
}

export interface SourceRevertResult {
  snapshot: SourceSnapshot;
  saved: SourceSnapshot | null;
  powerState: PowerState;
}

export interface SourceCloneOptions extends OperationOptions {
  kind: CloneKind;
  /** A snapshot id or name; default: the current state. */
  from?: string;
}

export interface SourceCloneResult {
  machine: SourceMachineDetails;
  /** A snapshot the source took first (a linked clone of the current state hangs on it), or null. */
  takenSnapshot: SourceSnapshot | null;
}

export interface SourceInfo {
  /** Stable: 'library' for our own library, the connection URI for libvirt. */
  id: string;
  kind: 'library' | 'libvirt';
  /** As a tree root shows it: "libvirt — qemu:///system". */
  label: string;
  capabilities: SourceCapabilities;
}

/**
 * A place machines live in. Machine references are what `listMachines` returns in `ref`, or a name; snapshot
 * references are a snapshot's id or name. Failures are MachineError (our library) or SourceError (the others);
 * both carry a `code` and a one-sentence message.
 */
export interface MachineSource extends SourceInfo {
  listMachines(): Promise<SourceMachine[]>;
  showMachine(ref: string): Promise<SourceMachineDetails>;
  snapshotTree(ref: string): Promise<SourceSnapshotTree>;
  takeSnapshot(ref: string, name: string, options?: TakeOptions): Promise<SourceSnapshot>;
  revert(ref: string, snapshot: string, options?: SourceRevertOptions): Promise<SourceRevertResult>;
  /** Deletes a snapshot (children: its subtree); returns the ids deleted. */
  deleteSnapshot(ref: string, snapshot: string, options?: { children?: boolean } & OperationOptions): Promise<string[]>;
  editSnapshot(ref: string, snapshot: string, changes: { name?: string; description?: string }): Promise<SourceSnapshot>;
  clone(ref: string, newName: string, options: SourceCloneOptions): Promise<SourceCloneResult>;
  power(ref: string, action: PowerAction): Promise<PowerState>;
  /** Asks the guest to shut down, and powers it off after the time-out (force: at once). */
  stop(ref: string, options?: SourceStopOptions): Promise<SourceStopResult>;
}
