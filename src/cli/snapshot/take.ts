// `vmsnap snapshot take`: a snapshot of the current state.
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { openLibrary, shortId, VM_ARG } from '../vm/shared';

export const snapshotTakeCommand: Command<CliContext> = {
  name: 'take',
  summary: 'snapshot the current state (constant time; a running machine\'s memory too unless --disk-only)',
  args: [VM_ARG, { name: 'NAME', description: 'the snapshot\'s name (need not be unique: every snapshot has an id)' }],
  flags: [
    { name: 'description', kind: 'value', valueName: 'TEXT', description: 'a longer description' },
    { name: 'disk-only', kind: 'boolean', description: 'on a running machine: the disks only, without the memory' },
  ],
  examples: ['vmsnap snapshot take dev "Before upgrade" --description "kernel 6.1, clean boot"'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const vm = inv.required('VM');
    const description = inv.value('description');
    const s = await lib.takeSnapshot(vm, inv.required('NAME'), { ...(description === undefined ? {} : { description }), diskOnly: inv.flag('disk-only') });
    const what = s.hasMemory ? ' with its memory (reverting brings the machine back running)' : s.takenWhileRunning ? ' of the disks only' : '';
    const quiesce = s.quiesce === null ? '' : s.quiesce.quiesced ? ` Quiesced: the guest agent froze its file systems for ${Math.round(s.quiesce.frozenMs)} ms.` : ` ${s.quiesce.note ?? 'Not quiesced.'}`;
    emit(ctx, s, () => `Took snapshot "${s.name}" (id ${shortId(s.id)}) of "${vm}"${what}.${quiesce}`);
    return 0;
  },
};
