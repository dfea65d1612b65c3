// `vmsnap image create`: a new qcow2 image, empty or as an overlay.
import { resolve } from 'node:path';
import { exists } from '../../engine/os';
import { ImageError, Qcow2Image, type CreateOptions } from '../../engine/qcow2';
import { UsageError, type Command } from '../args';
import { emit, type CliContext } from '../output';
import { formatSize, formatSizeExact, parseSize } from '../units';
import { backingFormatOption, clusterSizeOption, withImage } from './shared';

export const imageCreateCommand: Command<CliContext> = {
  name: 'create',
  summary: 'create a new qcow2 image, empty or as an overlay on a backing file',
  args: [
    { name: 'FILE', description: 'the image to create' },
    { name: 'SIZE', description: 'virtual size (e.g. 10G); defaults to the backing file\'s size', optional: true },
  ],
  flags: [
    { name: 'backing', kind: 'value', valueName: 'FILE', description: 'backing file; stored relative to FILE\'s folder' },
    { name: 'backing-format', kind: 'value', valueName: 'qcow2|raw', description: 'format of the backing file (default: detected)' },
    { name: 'cluster-size', kind: 'value', valueName: 'N', description: 'cluster size, a power of two from 512 to 2M (default 64K)' },
    { name: 'compat', kind: 'value', valueName: '0.10|1.1', description: 'qcow2 version: 0.10 (v2) or 1.1 (v3, default)' },
    { name: 'extended-l2', kind: 'boolean', description: 'extended L2 entries with 32 subclusters per cluster (v3 only)' },
  ],
  examples: ['vmsnap image create disk.qcow2 20G', 'vmsnap image create overlay.qcow2 --backing disk.qcow2'],
  async run(inv, ctx) {
    const file = inv.required('FILE');
    const sizeText = inv.arg('SIZE');
    const backing = inv.value('backing');
    if (sizeText === undefined && backing === undefined) {
      throw new UsageError('"vmsnap image create" needs a SIZE, or --backing to take the size from.', inv.path);
    }
    const options: CreateOptions = {};
    if (sizeText !== undefined) options.size = parseSize(sizeText, 'SIZE');
    if (backing !== undefined) options.backingFile = backing;
    const backingFormat = backingFormatOption(inv);
    if (backingFormat !== undefined) {
      if (backing === undefined) throw new UsageError('--backing-format needs --backing.', inv.path);
      options.backingFormat = backingFormat;
    }
    const clusterSize = clusterSizeOption(inv);
    if (clusterSize !== undefined) options.clusterSize = clusterSize;
    const compat = inv.value('compat');
    if (compat !== undefined) {
      if (compat !== '0.10' && compat !== '1.1') throw new UsageError(`--compat "${compat}" is not a qcow2 version: use 0.10 or 1.1.`, inv.path);
      options.version = compat === '0.10' ? 2 : 3;
    }
    if (inv.flag('extended-l2')) options.extendedL2 = true;

    // The engine never replaces a file either; this only words the refusal with the way out.
    if (await exists(file)) {
      throw new ImageError('INVALID_ARGUMENT', `${file} already exists: choose another name, or delete it first.`, file);
    }
    await Qcow2Image.create(file, options);
    const made = await withImage(file, { backing: false }, async (image) => ({
      file: resolve(file),
      format: 'qcow2' as const,
      virtualSize: image.size,
      clusterSize: image.clusterSize,
      compat: image.header.version === 2 ? '0.10' : '1.1',
      backingFile: image.header.backingFile,
      backingFormat: image.header.backingFormat,
    }));
    emit(ctx, made, () => {
      const backingText = made.backingFile === null ? '' : `, backed by ${made.backingFile} (${made.backingFormat ?? 'format probed'})`;
      const rounded =
        options.size !== undefined && options.size !== made.virtualSize ? ` (rounded up from ${options.size} bytes to whole 512-byte sectors, as qemu-img does)` : '';
      return `Created ${file}: qcow2 ${made.compat}, ${formatSizeExact(made.virtualSize)}${rounded}, clusters of ${formatSize(made.clusterSize)}${backingText}.`;
    });
    return 0;
  },
};
