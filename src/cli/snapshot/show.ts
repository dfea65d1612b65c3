// `vmsnap snapshot show`: one snapshot's details, with the file of its thumbnail.
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { formatSize } from '../units';
import { formatDate, openLibrary, SNAP_ARG, VM_ARG } from '../vm/shared';

export const snapshotShowCommand: Command<CliContext> = {
  name: 'show',
  summary: 'one snapshot\'s details: description, date, size, memory, what depends on it, its thumbnail file',
  description: 'The thumbnail is a small PNG of the screen when the snapshot was taken (none: the machine had no screen yet).',
  args: [VM_ARG, SNAP_ARG],
  flags: [],
  examples: ['vmsnap snapshot show dev Base', 'vmsnap snapshot show dev 1a2b3c4d --json'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const vm = inv.required('VM');
    const s = await lib.showSnapshot(vm, inv.required('SNAP'));
    emit(ctx, s, () => {
      const memory = s.hasMemory ? 'yes (reverting brings the machine back running)' : s.takenWhileRunning ? 'no (disks only, taken while running)' : 'no';
      return [
        `Snapshot:    ${s.name}`,
        `Id:          ${s.id}`,
        ...(s.description === '' ? [] : [`Description: ${s.description.replace(/\n/g, '\n             ')}`]),
        `Created:     ${formatDate(s.createdAt)}`,
        `Size:        ${formatSize(s.sizeBytes)} (its own layers)`,
        `Memory:      ${memory}`,
        `Locked by:   ${s.lockedBy.length === 0 ? 'no linked clone' : s.lockedBy.join(', ')}`,
        `Thumbnail:   ${s.thumbnail ?? 'none'}`,
      ].join('\n');
    });
    return 0;
  },
};
