// `vmsnap image snapshots`: the internal snapshots inside a qcow2 image (like qemu-img snapshot -l).
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { snapshotInfo, snapshotsTable } from './describe';
import { withImage } from './shared';

export const imageSnapshotsCommand: Command<CliContext> = {
  name: 'snapshots',
  summary: 'list the internal snapshots stored inside a qcow2 image (like qemu-img snapshot -l)',
  args: [{ name: 'FILE', description: 'a qcow2 image' }],
  flags: [],
  async run(inv, ctx) {
    const file = inv.required('FILE');
    const list = await withImage(file, { backing: false }, async (image) => image.snapshots.map(snapshotInfo));
    emit(ctx, list, () => (list.length === 0 ? `${file} has no internal snapshots.` : `Snapshot list:\n${snapshotsTable(list)}`));
    return 0;
  },
};
