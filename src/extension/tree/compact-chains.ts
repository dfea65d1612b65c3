// The compact tree (`vmsnap.tree.compactChains`): a straight run of snapshots shown at one indent, branches indented.
import type { CloneRefNode, CurrentNode, MachineNode, SnapshotNode, TreeNode } from './nodes';

/**
 * Whether `node` is shown at its parent's indent: the parent is a snapshot and `node` (a snapshot, or "You are
 * here") is its only child, so the two read as one line of history, like VMware's chain of snapshots.
 */
function continuesChain(node: TreeNode): boolean {
  if (node.kind !== 'snapshot' && node.kind !== 'current') return false;
  const parent = node.parent;
  return parent.kind === 'snapshot' && parent.children.length === 1;
}

/**
 * The snapshot a row branches from, when it starts one of several lines under it. In the compact tree those lines
 * follow each other at one indent, so the first row of each says where it starts ("from “Installed”").
 */
export function branchesFrom(node: TreeNode): SnapshotNode | undefined {
  if (node.kind !== 'snapshot' && node.kind !== 'current') return undefined;
  const parent = node.parent;
  return parent.kind === 'snapshot' && parent.children.length > 1 ? parent : undefined;
}

/** The rows shown under `node` in the compact tree: each child followed by the straight run that continues it. */
export function compactChildren(node: MachineNode | SnapshotNode, children: TreeNode[]): TreeNode[] {
  if (node.kind === 'snapshot' && children.length === 1 && continuesChain(children[0]!)) return [];
  const out: TreeNode[] = [];
  for (const child of children) {
    out.push(child);
    for (let at: TreeNode = child; at.kind === 'snapshot' && at.children.length === 1 && continuesChain(at.children[0]!); ) {
      at = at.children[0]!;
      out.push(at);
    }
  }
  return out;
}

/** The row `node` is shown under in the compact tree: the parent of the first row of its straight run. */
export function compactParent(node: TreeNode): TreeNode | undefined {
  if (node.kind === 'machine' || node.kind === 'broken' || node.kind === 'libvirt') return undefined;
  let at: SnapshotNode | CurrentNode | CloneRefNode = node;
  for (;;) {
    const parent: MachineNode | SnapshotNode = at.parent;
    if (parent.kind !== 'snapshot' || !continuesChain(at)) return parent;
    at = parent;
  }
}
