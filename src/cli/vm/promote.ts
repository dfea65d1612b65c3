// `vmsnap vm promote`: a linked clone made full, independent of its source.
import type { Command } from '../args';
import { emit, longOperation, type CliContext } from '../output';
import { formatSize } from '../units';
import { openLibrary, VM_ARG } from './shared';

export const vmPromoteCommand: Command<CliContext> = {
  name: 'promote',
  summary: 'turn a linked clone into a full one: copy in what it reads from its source (unlocks the source snapshot)',
  args: [VM_ARG],
  flags: [],
  examples: ['vmsnap vm promote web-test'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const ref = inv.required('VM');
    const m = await longOperation(ctx, `Promoting ${ref}`, (op) => lib.promote(ref, op));
    const onDisk = m.snapshots.reduce((n, s) => n + s.sizeBytes, m.currentSizeBytes);
    emit(ctx, m, () => `Promoted "${m.name}" to a full clone: it no longer depends on its source (${formatSize(onDisk)} on disk now).`);
    return 0;
  },
};
