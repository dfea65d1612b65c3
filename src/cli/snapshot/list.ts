// `vmsnap snapshot list`: a machine's snapshot tree, with "You are here".
import { formatSnapshotTree } from '../snapshot-tree';
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { formatSize } from '../units';
import { openLibrary, VM_ARG } from '../vm/shared';

export const snapshotListCommand: Command<CliContext> = {
  name: 'list',
  summary: 'draw the snapshot tree in creation order, with the current position marked ("You are here")',
  description: '"*" marks the snapshot the current state descends from; locked snapshots have linked clones on them; [auto]\nmarks an automatic checkpoint (renaming or describing it makes it your own).\nWith --json: the tree (roots, children in creation order; the current state is a node of kind "current").',
  args: [VM_ARG],
  flags: [],
  examples: ['vmsnap snapshot list dev', 'vmsnap snapshot list dev --json'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const tree = await lib.snapshotTree(inv.required('VM'));
    if (ctx.out.json) {
      emit(ctx, tree, () => '');
      return 0;
    }
    const sizes = await lib.sizes(tree.machineId);
    const lines = [`Snapshots of "${tree.machineName}":`, ...formatSnapshotTree(tree).map((l) => `  ${l}`)];
    lines.push(`The current state changed ${formatSize(sizes.current.changedBytes)} since ${sizes.current.parentId === null ? 'the machine was made' : 'its snapshot'}.`);
    ctx.out.print(lines.join('\n'));
    return 0;
  },
};
