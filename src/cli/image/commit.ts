// `vmsnap image commit`: an overlay merged into its backing file (like qemu-img commit).
import { commit, type CommitOptions } from '../../engine/qcow2/ops';
import type { Command } from '../args';
import { emit, longOperation, type CliContext } from '../output';
import { formatSize } from '../units';

export const imageCommitCommand: Command<CliContext> = {
  name: 'commit',
  summary: 'merge an overlay into its backing file, then empty the overlay (like qemu-img commit)',
  description:
    'The chain reads the same afterwards. Every image backed by the backing file sees the change too.\n' +
    'Ctrl-C or an error puts the backing file back byte for byte.',
  args: [{ name: 'FILE', description: 'the overlay (a qcow2 image with a backing file)' }],
  flags: [{ name: 'keep-top', kind: 'boolean', description: 'leave FILE as it is instead of emptying it' }],
  examples: ['vmsnap image commit overlay.qcow2'],
  async run(inv, ctx) {
    const file = inv.required('FILE');
    const options: CommitOptions = {};
    if (inv.flag('keep-top')) options.keepTop = true;
    const result = await longOperation(ctx, `Committing ${file}`, (op) => commit(file, { ...options, ...op }));
    emit(ctx, { file, base: result.base, dataBytes: result.dataBytes, zeroBytes: result.zeroBytes }, () =>
      `Committed ${file} into ${result.base} (${formatSize(result.dataBytes)} of data, ${formatSize(result.zeroBytes)} of zeros).`,
    );
    return 0;
  },
};
