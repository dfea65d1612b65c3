// `vmsnap image rebase`: an overlay pointed at another backing file, reading the same (like qemu-img rebase).
import { rebase, type RebaseOptions } from '../../engine/qcow2/ops';
import { UsageError, type Command } from '../args';
import { emit, longOperation, type CliContext } from '../output';
import { formatSize } from '../units';
import { backingFormatOption } from './shared';

export const imageRebaseCommand: Command<CliContext> = {
  name: 'rebase',
  summary: 'point an overlay at another backing file, or none, keeping what it reads (like qemu-img rebase)',
  description:
    'Where the new backing reads differently from the old chain, the old content is first copied into FILE,\n' +
    'so the disk reads exactly the same afterwards. Backing files are only read. NEWBASE is a path from the\n' +
    'current folder; FILE records it relative to its own folder.',
  args: [{ name: 'FILE', description: 'the overlay to change' }],
  flags: [
    { name: 'backing', kind: 'value', valueName: 'NEWBASE', description: 'the new backing file' },
    { name: 'backing-format', kind: 'value', valueName: 'qcow2|raw', description: 'format recorded for NEWBASE (default: detected)' },
    { name: 'no-backing', kind: 'boolean', description: 'make FILE standalone, copying in everything it read from its chain' },
  ],
  choices: [{ flags: ['backing', 'no-backing'], required: true }],
  examples: ['vmsnap image rebase overlay.qcow2 --backing other-base.qcow2', 'vmsnap image rebase overlay.qcow2 --no-backing'],
  async run(inv, ctx) {
    const file = inv.required('FILE');
    const backing = inv.value('backing');
    const none = inv.flag('no-backing');
    const options: RebaseOptions = {};
    const format = backingFormatOption(inv);
    if (format !== undefined) {
      if (none) throw new UsageError('--backing-format goes with --backing, not --no-backing.', inv.path);
      options.backingFormat = format;
    }
    const result = await longOperation(ctx, `Rebasing ${file}`, (op) => rebase(file, backing ?? null, { ...options, ...op }));
    emit(ctx, { file, backing: backing ?? null, copiedBytes: result.copiedBytes }, () =>
      backing === undefined
        ? `Made ${file} standalone (${formatSize(result.copiedBytes)} copied in from its old chain).`
        : `Rebased ${file} onto ${backing} (${formatSize(result.copiedBytes)} copied in to keep its content).`,
    );
    return 0;
  },
};
