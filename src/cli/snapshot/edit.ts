// `vmsnap snapshot edit`: a snapshot's name and description.
import type { EditSnapshotOptions } from '../../engine/machine';
import { UsageError, type Command } from '../args';
import { emit, type CliContext } from '../output';
import { openLibrary, shortId, SNAP_ARG, VM_ARG } from '../vm/shared';

export const snapshotEditCommand: Command<CliContext> = {
  name: 'edit',
  summary: 'rename a snapshot or change its description',
  args: [VM_ARG, SNAP_ARG],
  flags: [
    { name: 'name', kind: 'value', valueName: 'NEW', description: 'the new name' },
    { name: 'description', kind: 'value', valueName: 'TEXT', description: 'the new description ("" clears it)' },
  ],
  examples: ['vmsnap snapshot edit dev 1a2b3c4d --name "Clean install"', 'vmsnap snapshot edit dev Base --description "Debian 12, no updates"'],
  async run(inv, ctx) {
    const changes: EditSnapshotOptions = {};
    const name = inv.value('name');
    if (name !== undefined) changes.name = name;
    const description = inv.value('description');
    if (description !== undefined) changes.description = description;
    if (name === undefined && description === undefined) {
      throw new UsageError('Nothing to change: give --name NEW, --description TEXT, or both.', inv.path);
    }
    const lib = await openLibrary(inv, ctx);
    const s = await lib.editSnapshot(inv.required('VM'), inv.required('SNAP'), changes);
    emit(ctx, s, () => `Snapshot ${shortId(s.id)} is now "${s.name}"${s.description === '' ? '' : `: ${s.description.replace(/\n/g, ' ')}`}.`);
    return 0;
  },
};
