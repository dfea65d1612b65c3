import type { Command } from '../args';
import { emit } from '../image/shared';
import type { CliContext } from '../output';
import { openLibrary, shortId, VM_ARG } from '../vm/shared';

export const snapshotTakeCommand: Command<CliContext> = {
  name: 'take',
  summary: 'snapshot the current state (constant time: the top layer is frozen, a new empty one starts)',
  args: [VM_ARG, { name: 'NAME', description: 'the snapshot\'s name (need not be unique: every snapshot has an id)' }],
  flags: [{ name: 'description', kind: 'value', valueName: 'TEXT', description: 'a longer description' }],
  examples: ['vmsnap snapshot take dev "Before upgrade" --description "kernel 6.1, clean boot"'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const vm = inv.required('VM');
    const description = inv.value('description');
    const s = await lib.takeSnapshot(vm, inv.required('NAME'), description === undefined ? {} : { description });
    emit(ctx, s, () => `Took snapshot "${s.name}" (id ${shortId(s.id)}) of "${vm}".`);
    return 0;
  },
};
