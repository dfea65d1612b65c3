// `vmsnap vm disk`: the path of a disk's current top layer, for QEMU's tools to write into.
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { intOption, openLibrary, VM_ARG } from './shared';

export const vmDiskCommand: Command<CliContext> = {
  name: 'disk',
  summary: 'print the absolute path of a disk\'s current top layer (write into it to change the current state)',
  description: 'QEMU, qemu-io or qemu-img can use the path directly: it is a qcow2 overlay on the machine\'s snapshots.\nIt changes when a snapshot is taken or reverted, so ask again after those.',
  args: [VM_ARG],
  flags: [{ name: 'disk', kind: 'value', valueName: 'N', description: 'which disk, counted from 0 (default 0)' }],
  examples: ['qemu-io -f qcow2 -c "write -P 0xaa 0 1M" "$(vmsnap vm disk dev)"'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const index = intOption(inv, 'disk', 0) ?? 0;
    const path = await lib.diskPath(inv.required('VM'), index);
    emit(ctx, { disk: index, path }, () => path);
    return 0;
  },
};
