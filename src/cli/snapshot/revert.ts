// `vmsnap snapshot revert`: back to a snapshot, the current state discarded or saved first.
import type { RevertOptions } from '../../engine/machine';
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { formatSize } from '../units';
import { openLibrary, shortId, SNAP_ARG, VM_ARG } from '../vm/shared';

export const snapshotRevertCommand: Command<CliContext> = {
  name: 'revert',
  summary: 'make the current state exactly a snapshot\'s state (the unsaved current state is discarded or saved first)',
  args: [VM_ARG, SNAP_ARG],
  flags: [
    { name: 'discard-current', kind: 'boolean', description: 'throw the current state\'s unsaved changes away' },
    { name: 'save-current', kind: 'value', valueName: 'NAME', description: 'first take a snapshot NAME of the current state' },
  ],
  choices: [{ flags: ['discard-current', 'save-current'], required: true, reason: 'Reverting throws away the current state' }],
  examples: ['vmsnap snapshot revert dev "Before upgrade" --discard-current', 'vmsnap snapshot revert dev Base --save-current "Experiment 3"'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const vm = inv.required('VM');
    const save = inv.value('save-current');
    const options: RevertOptions = save === undefined ? { discardCurrent: true } : { saveCurrentAs: save };
    const r = await lib.revert(vm, inv.required('SNAP'), options);
    emit(ctx, r, () => {
      const kept = r.saved
        ? ` The previous current state was saved as snapshot "${r.saved.name}" (id ${shortId(r.saved.id)}).`
        : ` ${formatSize(r.discardedBytes)} of unsaved changes were discarded.`;
      const clock = r.guestClock === null ? '' : r.guestClock.set ? ' Its guest agent set the guest\'s clock to the host\'s time.' : ` ${r.guestClock.note ?? ''}`;
      const power = r.poweredOn ? ` The machine runs again from the snapshot's memory.${clock}` : r.stateLoadError !== null ? ` The machine is off: ${r.stateLoadError}` : '';
      return `Reverted "${vm}" to snapshot "${r.snapshot.name}" (id ${shortId(r.snapshot.id)}).${kept}${power}`;
    });
    return 0;
  },
};
