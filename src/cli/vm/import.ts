// `vmsnap vm import`: a new machine from a copy of a qcow2 or raw image.
import type { ImportMachineOptions } from '../../engine/machine';
import type { Command } from '../args';
import { emit, longOperation, type CliContext } from '../output';
import { formatSize } from '../units';
import { hardwareOptions, openLibrary, plural, shortId } from './shared';

export const vmImportCommand: Command<CliContext> = {
  name: 'import',
  summary: 'make a machine from a copy of a qcow2 or raw image (the image itself is only read)',
  description:
    'The image\'s internal snapshots, if any, are listed. By default only its current state is imported;\n' +
    'with --convert-snapshots each internal snapshot, oldest first, becomes a snapshot of the machine.',
  args: [
    { name: 'NAME', description: 'the new machine\'s name' },
    { name: 'IMAGE', description: 'a qcow2 or raw disk image' },
  ],
  flags: [
    { name: 'convert-snapshots', kind: 'boolean', description: 'turn the image\'s internal snapshots into snapshots of the machine' },
    { name: 'cpus', kind: 'value', valueName: 'N', description: 'virtual CPUs (default 2)' },
    { name: 'memory', kind: 'value', valueName: 'MIB', description: 'memory in MiB (default 2048)' },
    { name: 'note', kind: 'value', valueName: 'TEXT', description: 'a free-text note' },
  ],
  examples: ['vmsnap vm import debian debian-12.qcow2', 'vmsnap vm import old old-vm.qcow2 --convert-snapshots'],
  async run(inv, ctx) {
    const image = inv.required('IMAGE');
    const options: ImportMachineOptions = { ...hardwareOptions(inv), internalSnapshots: inv.flag('convert-snapshots') ? 'convert' : 'flatten' };
    const lib = await openLibrary(inv, ctx);
    const r = await longOperation(ctx, `Importing ${image}`, (op) => lib.importMachine(inv.required('NAME'), image, { ...options, ...op }));
    const m = r.machine;
    emit(ctx, r, () => {
      const lines = [`Imported ${image} as machine "${m.name}" (id ${shortId(m.id)}, MAC ${m.macAddress}), a ${formatSize(m.disks[0]?.virtualSize ?? 0)} disk.`];
      if (r.internalSnapshots.length > 0) {
        lines.push(
          r.convertedSnapshots
            ? `Its ${plural(r.internalSnapshots.length, 'internal snapshot')} became snapshots of the machine:`
            : `The image has ${plural(r.internalSnapshots.length, 'internal snapshot')}, not imported (use --convert-snapshots to keep them):`,
          ...r.internalSnapshots.map((s) => `  ${s.id}  ${s.name}  ${s.date}`),
        );
      }
      lines.push(`Disk 0: ${m.disks[0]?.path ?? '-'}`);
      return lines.join('\n');
    });
    return 0;
  },
};
