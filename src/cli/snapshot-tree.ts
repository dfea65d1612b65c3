// The snapshot tree drawn as text for the terminal.
import type { SnapshotTree, SnapshotTreeNode } from '../engine/machine';
import { formatDate } from './vm/shared';

/**
 * The snapshot tree drawn as text lines, as `vmsnap snapshot list` prints it: creation order, the snapshot the
 * current state descends from marked with '*', "You are here" where the current state is, short ids, and a lock
 * on snapshots linked clones hang on.
 */
export function formatSnapshotTree(tree: SnapshotTree): string[] {
  return drawTree(tree.roots, (n: SnapshotTreeNode) =>
    n.kind === 'current'
      ? '▶ You are here'
      : `${n.name}${n.isCurrentParent ? ' *' : ''}  (${n.id.slice(0, 8)}, ${formatDate(n.createdAt)})${n.auto ? '  [auto]' : ''}${n.hasMemory ? '  [running, with memory]' : n.takenWhileRunning ? `  [running, disks only, ${n.quiesced ? 'quiesced' : 'not quiesced'}]` : ''}${n.lockedBy.length > 0 ? `  [locked by ${n.lockedBy.length} linked clone${n.lockedBy.length > 1 ? 's' : ''}]` : ''}`,
  );
}

/** A tree drawn as text lines, one per node, with branch lines; a single root is drawn without one. */
export function drawTree<N extends { children: N[] }>(roots: N[], label: (n: N) => string): string[] {
  const lines: string[] = [];
  const draw = (nodes: N[], prefix: string): void => {
    nodes.forEach((n, i) => {
      const last = i === nodes.length - 1;
      const branch = prefix === '' && nodes.length === 1 ? '' : last ? '└─ ' : '├─ ';
      lines.push(prefix + branch + label(n));
      draw(n.children, prefix + (branch === '' ? '' : last ? '   ' : '│  '));
    });
  };
  draw(roots, '');
  return lines;
}
