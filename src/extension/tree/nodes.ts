// The rows of the Machines tree: their kinds, stable ids, how a machine's rows are built, and the state menus match.
import type { MachineDetails, MachineSummary, SnapshotInfo } from '../../engine/machine';
import { libvirtContextValue, type LibvirtNode } from './libvirt-rows';

/**
 * The rows of the Machines tree. Ids are stable across refreshes (built from engine ids), so VS Code keeps
 * expansion and selection, and `reveal` finds a row again after an action.
 */
export type TreeNode = MachineNode | SnapshotNode | CurrentNode | CloneRefNode | BrokenNode | LibvirtNode;

export interface MachineNode {
  kind: 'machine';
  id: string;
  machine: MachineSummary;
  /** Bytes the machine's own files occupy on the host disk; undefined while unknown. */
  sizeBytes: number | undefined;
  isDevMachine: boolean;
  /** Shown expanded the first time (a library of a few machines): VS Code keeps what the user does afterwards. */
  expandAtFirst?: boolean;
  /** While it runs: where SSH reaches it and why QEMU stopped the guest (asked of QEMU); undefined when off. */
  access?: MachineAccess | undefined;
}

export interface MachineAccess {
  /** The port of its SSH forward on 127.0.0.1. */
  sshPort: number | null;
  /** The guest user (machines launched from a cloud image), else null. */
  sshUser: string | null;
  /** One sentence when QEMU stopped the guest by itself (e.g. KVM could not run it), else null. */
  failure: string | null;
}

export interface SnapshotNode {
  kind: 'snapshot';
  id: string;
  machine: MachineDetails;
  snapshot: SnapshotInfo;
  parent: MachineNode | SnapshotNode;
  children: TreeNode[];
  /** A linked clone hangs on this snapshot or on one below it: deleting it is refused. */
  locked: boolean;
  /** The snapshot the current state descends from. */
  isCurrentParent: boolean;
  /** Tree path: "Base > Installed > Before update". */
  path: string;
}

/** "You are here": the machine's current state, under the snapshot it descends from. */
export interface CurrentNode {
  kind: 'current';
  id: string;
  machine: MachineDetails;
  parent: MachineNode | SnapshotNode;
}

/** A linked clone shown under the snapshot it hangs on (it is also a machine at the top level). */
export interface CloneRefNode {
  kind: 'cloneRef';
  id: string;
  clone: MachineSummary;
  parent: SnapshotNode;
}

/** A machine folder whose manifest cannot be read: shown with the reason, so it is fixed rather than missed. */
export interface BrokenNode {
  kind: 'broken';
  id: string;
  folder: string;
  message: string;
}

export const machineNodeId = (machineId: string): string => `machine/${machineId}`;
export const snapshotNodeId = (machineId: string, snapshotId: string): string => `snapshot/${machineId}/${snapshotId}`;
export const currentNodeId = (machineId: string): string => `current/${machineId}`;
export const cloneRefNodeId = (snapshotId: string, cloneId: string): string => `clone/${snapshotId}/${cloneId}`;
export const brokenNodeId = (folder: string): string => `broken/${folder}`;

/**
 * The rows under one machine: its snapshots in creation order (the engine keeps them so), "You are here" after the
 * children of the snapshot the current state descends from, and the linked clones hanging on each snapshot.
 */
export function buildSubtree(machineNode: MachineNode, details: MachineDetails, all: MachineNode[], options: { hideAutomatic?: boolean } = {}): TreeNode[] {
  const byId = new Map(all.map((n) => [n.machine.id, n.machine]));
  // Hidden automatic checkpoints give their rows to their parent; the one the current state descends from and
  // ones linked clones hang on stay, so "You are here" and the clones keep their place.
  const hidden = (info: SnapshotInfo): boolean => options.hideAutomatic === true && info.auto && details.current !== info.id && info.lockedBy.length === 0;
  const build = (parentId: string | null, parent: MachineNode | SnapshotNode, path: string): TreeNode[] => {
    const out: TreeNode[] = [];
    for (const info of details.snapshots) {
      if (info.parentId !== parentId) continue;
      if (hidden(info)) {
        out.push(...build(info.id, parent, path));
        continue;
      }
      const here = path === '' ? info.name : `${path} > ${info.name}`;
      const node: SnapshotNode = {
        kind: 'snapshot',
        id: snapshotNodeId(details.id, info.id),
        machine: details,
        snapshot: info,
        parent,
        children: [],
        locked: false,
        isCurrentParent: details.current === info.id,
        path: here,
      };
      node.children = build(info.id, node, here);
      for (const cloneId of info.lockedBy) {
        const clone = byId.get(cloneId);
        if (clone) node.children.push({ kind: 'cloneRef', id: cloneRefNodeId(info.id, cloneId), clone, parent: node });
      }
      node.locked = info.lockedBy.length > 0 || node.children.some((c) => c.kind === 'snapshot' && c.locked);
      out.push(node);
    }
    if (details.current === parentId) out.push({ kind: 'current', id: currentNodeId(details.id), machine: details, parent });
    return out;
  };
  return build(null, machineNode, '');
}

export type CloneKindLabel = 'plain' | 'linked' | 'full';

export function cloneKind(m: MachineSummary): CloneKindLabel {
  return m.clonedFrom === null ? 'plain' : m.clonedFrom.kind;
}

/**
 * State the menus match with regexes (`viewItem =~ /:off:/`): the row's type first, then flags, each followed by
 * ':' so a flag never matches part of another. The first flag is the machine's power state (off, running, paused);
 * `memory` marks a snapshot that holds a running state, `auto` an automatic checkpoint; `ssh` a running machine launched from a cloud image.
 */
export function contextValue(node: TreeNode): string {
  if (node.kind === 'libvirt') return libvirtContextValue(node);
  const flags: string[] = [];
  switch (node.kind) {
    case 'machine':
      flags.push(node.machine.powerState, cloneKind(node.machine));
      if (node.machine.snapshotCount > 0) flags.push('snapshots');
      if (node.isDevMachine) flags.push('dev');
      if (node.machine.guestUser !== null) flags.push('guest');
      // SSH answers with a known user and key: a machine launched from a cloud image, running.
      if (node.access?.sshUser != null && node.access.sshPort !== null) flags.push('ssh');
      break;
    case 'cloneRef':
      flags.push(node.clone.powerState, cloneKind(node.clone));
      break;
    case 'snapshot':
      flags.push(node.machine.powerState);
      if (node.locked) flags.push('locked');
      if (node.children.some((c) => c.kind === 'snapshot')) flags.push('children');
      if (node.isCurrentParent) flags.push('current');
      if (node.snapshot.hasMemory) flags.push('memory');
      if (node.snapshot.auto) flags.push('auto');
      break;
    case 'current':
      flags.push(node.machine.powerState);
      break;
    case 'broken':
      break;
  }
  return `${node.kind}:${flags.map((f) => `${f}:`).join('')}`;
}
