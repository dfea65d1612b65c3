// `vmsnap image convert`: a chain (or one internal snapshot) flattened into a new standalone qcow2.
import { flatten, type FlattenOptions } from '../../engine/qcow2/ops';
import type { Command } from '../args';
import { emit, longOperation, type CliContext } from '../output';
import { formatSize } from '../units';
import { clusterSizeOption, FORCE_FLAG } from './shared';

export const imageConvertCommand: Command<CliContext> = {
  name: 'convert',
  summary: 'flatten an image and its backing chain (or one internal snapshot) into a new standalone qcow2',
  description:
    'Only clusters holding non-zero data are written, so the copy is sparse. DST appears complete or not at all:\n' +
    'Ctrl-C or an error leaves no half-written file behind.',
  args: [
    { name: 'SRC', description: 'a qcow2 or raw image' },
    { name: 'DST', description: 'the new qcow2 image' },
  ],
  flags: [
    { name: 'snapshot', kind: 'value', valueName: 'NAME', description: 'copy this internal snapshot (id or name) of SRC instead of its current state' },
    { name: 'cluster-size', kind: 'value', valueName: 'N', description: 'cluster size of DST (default: SRC\'s)' },
    FORCE_FLAG,
  ],
  examples: ['vmsnap image convert overlay.qcow2 standalone.qcow2', 'vmsnap image convert disk.qcow2 before.qcow2 --snapshot before-upgrade'],
  async run(inv, ctx) {
    const src = inv.required('SRC');
    const dst = inv.required('DST');
    const options: FlattenOptions = {};
    const snapshot = inv.value('snapshot');
    if (snapshot !== undefined) options.snapshot = snapshot;
    const clusterSize = clusterSizeOption(inv);
    if (clusterSize !== undefined) options.clusterSize = clusterSize;
    if (inv.flag('force')) options.overwrite = true;
    const result = await longOperation(ctx, `Converting ${src}`, (op) => flatten(src, dst, { ...options, ...op }));
    emit(ctx, { source: src, destination: result.path, dataBytes: result.dataBytes }, () =>
      `Converted ${src} to ${result.path} (${formatSize(result.dataBytes)} of data).`,
    );
    return 0;
  },
};
