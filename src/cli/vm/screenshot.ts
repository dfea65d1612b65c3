// `vmsnap vm screenshot`: a PNG of a running machine's screen (QEMU's screendump).
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { formatSize } from '../units';
import { openLibrary, VM_ARG } from './shared';

export const vmScreenshotCommand: Command<CliContext> = {
  name: 'screenshot',
  summary: 'save a running machine\'s screen as a PNG file',
  description: 'The machine must be running (or paused) with a display device (std or virtio, see `vm edit --display`). An existing FILE is replaced.',
  args: [VM_ARG, { name: 'FILE', description: 'the PNG file to write' }],
  flags: [],
  examples: ['vmsnap vm screenshot dev screen.png'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const vm = inv.required('VM');
    const shot = await lib.screenshot(vm, inv.required('FILE'));
    emit(ctx, shot, () => `Saved the screen of "${vm}" (${shot.width}x${shot.height}) to ${shot.file} (${formatSize(shot.bytes)}).`);
    return 0;
  },
};
