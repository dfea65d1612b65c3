// `vmsnap vm export NAME --libvirt`: one of our machines defined as a libvirt domain (virt-manager opens it).
import { exportMachine, LibvirtSource } from '../../engine/libvirt';
import { UsageError, type Command } from '../args';
import { emit, type CliContext } from '../output';
import { choiceOption, openLibrary, VM_ARG } from './shared';

export const vmExportCommand: Command<CliContext> = {
  name: 'export',
  summary: 'define a machine as a libvirt domain (same disks, MAC, UUID, memory, cpus) so virt-manager opens it',
  description:
    'The domain reads the machine\'s disks where they are, through links (current-diskN.qcow2) that vmsnap moves to\n' +
    'the new top layer whenever a snapshot or revert here changes it; the folder stays the library\'s. While the\n' +
    'domain runs, vmsnap refuses to change the machine. Export again to redefine the same UUID (memory, cpus).\n' +
    'The machine remembers the domain: `vm delete` then needs --undefine-libvirt or --keep-libvirt-domain.\n' +
    '--connect names the connection (default qemu:///system).',
  args: [VM_ARG],
  flags: [
    { name: 'libvirt', kind: 'boolean', description: 'export to libvirt (the one target so far)' },
    { name: 'accel', kind: 'value', valueName: 'auto|kvm|tcg', description: 'the domain type: KVM or TCG (default auto: KVM when libvirt offers it)' },
  ],
  examples: ['vmsnap vm export dev --libvirt', 'vmsnap vm export dev --libvirt --connect qemu:///session'],
  async run(inv, ctx) {
    if (!inv.flag('libvirt')) throw new UsageError('Say where to export to: --libvirt.', inv.path);
    const uri = inv.global.connect ?? 'qemu:///system';
    const accel = choiceOption(inv, 'accel', ['auto', 'kvm', 'tcg']) ?? 'auto';
    const lib = await openLibrary(inv, ctx);
    const m = await lib.show(inv.required('VM'));
    const r = await exportMachine(new LibvirtSource(uri), m, { accel, linkDisks: () => lib.linkCurrentDisks(m.id, { exportedTo: { connection: uri, domain: m.name } }) });
    emit(ctx, { name: r.name, uuid: r.uuid, connection: uri, redefined: r.redefined }, () =>
      `${r.redefined ? 'Redefined' : 'Defined'} libvirt domain "${r.name}" (UUID ${r.uuid}) on ${uri} from the machine in ${m.folder}; virt-manager lists it now.`,
    );
    return 0;
  },
};
