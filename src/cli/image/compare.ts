// `vmsnap image compare`: whether two images read the same (like qemu-img compare).
import { compare } from '../../engine/qcow2/ops';
import type { Command } from '../args';
import { emit, longOperation, type CliContext } from '../output';

export const imageCompareCommand: Command<CliContext> = {
  name: 'compare',
  summary: 'check whether two images read the same, through their chains (like qemu-img compare)',
  description:
    'Exit status 0 when identical, 1 when they differ (or on an error). Images of different sizes are\n' +
    'identical when the larger one reads zeros past the end of the smaller.',
  args: [
    { name: 'A', description: 'a qcow2 or raw image' },
    { name: 'B', description: 'a qcow2 or raw image' },
  ],
  flags: [],
  examples: ['vmsnap image compare overlay.qcow2 standalone.qcow2'],
  async run(inv, ctx) {
    const a = inv.required('A');
    const b = inv.required('B');
    const result = await longOperation(ctx, `Comparing ${a} and ${b}`, (op) => compare(a, b, op));
    if (result.identical) {
      emit(ctx, { identical: true, firstDifference: null }, () => 'Images are identical.');
      return 0;
    }
    const document = { identical: false, firstDifference: result.firstDifference };
    emit(ctx, document, () => `Content mismatch at offset ${result.firstDifference}.`);
    return 1;
  },
};
