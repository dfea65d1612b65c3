// `vmsnap vm delete`: a machine and its folder (or with --with-clones, its linked clones too; with --undefine-libvirt,
// the libvirt domain `vm export` defined from it).
import { isMachineError, MachineError } from '../../engine/machine';
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { openLibrary, plural, VM_ARG } from './shared';

export const vmDeleteCommand: Command<CliContext> = {
  name: 'delete',
  summary: 'delete a machine and its folder (refused while linked clones depend on it)',
  description:
    'Full clones stand alone and are kept. Linked clones read the machine\'s snapshots: delete or promote\n' +
    'them first, or give --with-clones to delete them (and their own linked clones) too.\n' +
    'A machine `vm export --libvirt` defined as a domain that still reads its folder is refused until you say\n' +
    'what becomes of the domain: --undefine-libvirt removes it too (shut it off first), --keep-libvirt-domain\n' +
    'leaves it (pointing at missing files).',
  args: [VM_ARG],
  flags: [
    { name: 'with-clones', kind: 'boolean', description: 'also delete the linked clones that depend on the machine' },
    { name: 'undefine-libvirt', kind: 'boolean', description: 'also undefine the libvirt domain `vm export` defined from it (it must be shut off)' },
    { name: 'keep-libvirt-domain', kind: 'boolean', description: 'leave that libvirt domain defined (it will point at missing files)' },
  ],
  choices: [{ flags: ['undefine-libvirt', 'keep-libvirt-domain'], required: false }],
  examples: ['vmsnap vm delete scratch', 'vmsnap vm delete base --with-clones', 'vmsnap vm delete dev --undefine-libvirt'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const libvirtDomains = inv.flag('undefine-libvirt') ? 'undefine' : inv.flag('keep-libvirt-domain') ? 'keep' : undefined;
    const r = await lib.deleteMachine(inv.required('VM'), { withClones: inv.flag('with-clones'), ...(libvirtDomains === undefined ? {} : { libvirtDomains }) }).catch((e: unknown) => {
      throw withFlagHint(e);
    });
    emit(ctx, r, () => {
      const target = r.deleted[r.deleted.length - 1];
      const clones = r.deleted.slice(0, -1);
      const also = clones.length === 0 ? '' : `, and ${plural(clones.length, 'linked clone')}: ${clones.map((c) => `"${c.name}"`).join(', ')}`;
      const domains = (list: { connection: string; domain: string }[]): string => list.map((d) => `"${d.domain}" on ${d.connection}`).join(', ');
      const undefinedToo = r.undefinedDomains.length === 0 ? '' : ` Undefined libvirt ${r.undefinedDomains.length === 1 ? 'domain' : 'domains'} ${domains(r.undefinedDomains)}.`;
      const kept = r.keptDomains.length === 0 ? '' : ` Left libvirt ${r.keptDomains.length === 1 ? 'domain' : 'domains'} ${domains(r.keptDomains)}, pointing at missing files (virsh undefine removes it).`;
      return `Deleted machine "${target?.name ?? inv.required('VM')}"${also}.${undefinedToo}${kept}`;
    });
    return 0;
  },
};

/** The library says "delete with the clones"; on the command line that is a flag, so name it. */
function withFlagHint(e: unknown): unknown {
  if (!isMachineError(e) || e.code !== 'LOCKED_BY_CLONES') return e;
  const base = e.message.replace(/,? or delete with the clones\.$/, '').replace(/\.$/, '');
  return new MachineError(e.code, `${base}, or add --with-clones to delete them too.`, e.candidates, { cause: e });
}
