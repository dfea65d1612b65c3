// `vmsnap image info`: what an image is (like qemu-img info), for one layer or its whole chain.
import { openDisk, type Disk } from '../../engine/qcow2';
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { describeLayer, layerText, type LayerInfo } from './describe';
import { closeQuietly } from './shared';

export const imageInfoCommand: Command<CliContext> = {
  name: 'info',
  summary: 'show an image\'s format, sizes, backing file, state and internal snapshots',
  args: [{ name: 'FILE', description: 'a qcow2 or raw image' }],
  flags: [{ name: 'chain', kind: 'boolean', description: 'describe every layer down the backing chain' }],
  examples: ['vmsnap image info disk.qcow2', 'vmsnap image info overlay.qcow2 --chain --json'],
  async run(inv, ctx) {
    const chain = inv.flag('chain');
    // Without --chain the backing file is only named, not opened, so info works even when it is missing.
    const disk = await openDisk(inv.required('FILE'), { backing: chain });
    let layers: LayerInfo[];
    try {
      layers = [];
      for (let d: Disk | null = disk; d; d = chain ? d.backing : null) layers.push(await describeLayer(d));
    } finally {
      await closeQuietly(disk);
    }
    emit(ctx, chain ? layers : layers[0], () => layers.map(layerText).join('\n\n'));
    return 0;
  },
};
