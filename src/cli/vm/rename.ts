// `vmsnap vm rename`: a machine's display name.
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { openLibrary, VM_ARG } from './shared';

export const vmRenameCommand: Command<CliContext> = {
  name: 'rename',
  summary: 'give a machine a new display name (its folder, id and clones stay as they are)',
  args: [VM_ARG, { name: 'NEW_NAME', description: 'the new name' }],
  flags: [],
  examples: ['vmsnap vm rename dev "dev (old)"'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const ref = inv.required('VM');
    const m = await lib.renameMachine(ref, inv.required('NEW_NAME'));
    emit(ctx, m, () => `Renamed "${ref}" to "${m.name}".`);
    return 0;
  },
};
