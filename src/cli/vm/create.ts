// `vmsnap vm create`: a new machine with one empty sparse disk.
import type { CreateMachineOptions } from '../../engine/machine';
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { formatSize, parseSize } from '../units';
import { hardwareOptions, openLibrary, shortId } from './shared';

export const vmCreateCommand: Command<CliContext> = {
  name: 'create',
  summary: 'create a machine with one empty disk (sparse), a new UUID and a unique MAC address',
  args: [{ name: 'NAME', description: 'the display name: any text without control characters' }],
  flags: [
    { name: 'disk-size', kind: 'value', valueName: 'SIZE', description: 'virtual size of its disk (default 16G)' },
    { name: 'cpus', kind: 'value', valueName: 'N', description: 'virtual CPUs (default 2)' },
    { name: 'memory', kind: 'value', valueName: 'MIB', description: 'memory in MiB (default 2048)' },
    { name: 'note', kind: 'value', valueName: 'TEXT', description: 'a free-text note' },
    { name: 'dir', kind: 'value', valueName: 'DIR', description: 'put the machine\'s folder in DIR instead of the library' },
  ],
  examples: ['vmsnap vm create dev --disk-size 20G', 'vmsnap vm create "Windows 11 test" --cpus 4 --memory 8192'],
  async run(inv, ctx) {
    const options: CreateMachineOptions = hardwareOptions(inv);
    const size = inv.value('disk-size');
    if (size !== undefined) options.diskSize = parseSize(size, '--disk-size');
    const dir = inv.value('dir');
    if (dir !== undefined) options.dir = dir;
    const lib = await openLibrary(inv, ctx);
    const m = await lib.createMachine(inv.required('NAME'), options);
    emit(ctx, m, () =>
      [
        `Created machine "${m.name}" (id ${shortId(m.id)}, MAC ${m.macAddress}): ${m.cpus} CPUs, ${m.memoryMiB} MiB, a ${formatSize(m.disks[0]?.virtualSize ?? 0)} disk.`,
        `Disk 0: ${m.disks[0]?.path ?? '-'}`,
      ].join('\n'),
    );
    return 0;
  },
};
