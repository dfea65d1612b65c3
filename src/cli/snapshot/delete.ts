// `vmsnap snapshot delete`: a snapshot (or its subtree) merged away; every other state reads as before.
import type { Command } from '../args';
import { emit, longOperation, type CliContext } from '../output';
import { formatSize } from '../units';
import { openLibrary, plural, SNAP_ARG, VM_ARG } from '../vm/shared';

export const snapshotDeleteCommand: Command<CliContext> = {
  name: 'delete',
  summary: 'delete a snapshot (or with --children its subtree); every other state reads exactly as before',
  description:
    'The snapshot\'s data is merged into what depends on it and the space is given back. Refused while a linked\n' +
    'clone depends on the snapshot or one below it: delete or promote the clone first. On a running machine QEMU\n' +
    'merges while the guest runs; Ctrl-C cancels until a merge into the snapshot\'s layer begins.',
  args: [VM_ARG, SNAP_ARG],
  flags: [{ name: 'children', kind: 'boolean', description: 'also delete every snapshot below it (the current state keeps its content)' }],
  examples: ['vmsnap snapshot delete dev "Before upgrade"', 'vmsnap snapshot delete dev Experiments --children'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const vm = inv.required('VM');
    const snap = inv.required('SNAP');
    const r = await longOperation(ctx, `Deleting snapshot ${snap}`, (op) => lib.deleteSnapshot(vm, snap, { ...op, children: inv.flag('children') }));
    emit(ctx, r, () => {
      const [first, ...rest] = r.deleted;
      const also = rest.length === 0 ? '' : ` and ${plural(rest.length, 'snapshot')} below it`;
      const merged = r.merges.reduce((n, m) => n + (m.strategy === 'none' ? 0 : m.dependants), 0);
      const how = merged === 0 ? '' : `, its data merged into ${plural(merged, 'dependant')}`;
      return `Deleted snapshot "${first?.name ?? snap}" of "${vm}"${also}${how}; ${formatSize(r.freedBytes)} freed.`;
    });
    return 0;
  },
};
