// One of our machines as a libvirt domain, so that virt-manager and virsh open it: the same disks (read in place
// through links the library moves to each new top layer), MAC, UUID, memory and cpus. The machine's folder stays
// ours: libvirt only points into it.
import { existsSync } from 'node:fs';
import type { MachineDetails } from '../machine';
import { unsupported } from '../sources';
import type { LibvirtSource } from './libvirt-source';
import { buildOrdered, element, type XNode } from './xml';

export interface ExportedDomain {
  name: string;
  uuid: string;
  /** The domain existed (same UUID) and was redefined (its memory or cpus may have changed). */
  redefined: boolean;
  xml: string;
}

/**
 * The domain XML of a machine: KVM or TCG (kvm: false), virtio disks and user-mode networking as
 * our runtime gives them, the serial port on a pty (virt-manager's console), the ISO in a CD-ROM drive.
 */
export function domainXmlOf(m: MachineDetails, options: { kvm: boolean; diskPaths: readonly string[] }): string {
  const kvm = options.kvm;
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  const disks = options.diskPaths.map((path, i) => diskNode(path, `vd${letters[i] ?? 'z'}`, i + 1));
  const devices: XNode[] = [
    ...disks,
    ...(m.iso === null
      ? []
      : [
          {
            disk: [element('driver', { name: 'qemu', type: 'raw' }), element('source', { file: m.iso }), element('target', { dev: 'hdc', bus: 'ide' }), element('readonly')],
            ':@': { type: 'file', device: 'cdrom' },
          },
        ]),
    { interface: [element('mac', { address: m.macAddress }), element('model', { type: 'virtio' })], ':@': { type: 'user' } },
    { serial: [element('target', { port: '0' })], ':@': { type: 'pty' } },
    { console: [element('target', { type: 'serial', port: '0' })], ':@': { type: 'pty' } },
  ];
  const domain: XNode = {
    domain: [
      element('name', {}, m.name),
      element('uuid', {}, m.id),
      element('title', {}, `vmsnap machine ${m.name}`),
      element('description', {}, `Defined by vmsnap from the machine in ${m.folder}; its disks stay in that folder, and vmsnap keeps the links to them pointing at the current state.`),
      element('memory', { unit: 'MiB' }, String(m.memoryMiB)),
      element('vcpu', {}, String(m.cpus)),
      { os: [element('type', { arch: 'x86_64', machine: 'pc' }, 'hvm')] },
      { features: [element('acpi'), element('apic')] },
      { devices },
    ],
    ':@': { type: kvm ? 'kvm' : 'qemu' },
  };
  return buildOrdered([domain]);
}

function diskNode(file: string, dev: string, bootOrder: number): XNode {
  return {
    disk: [element('driver', { name: 'qemu', type: 'qcow2' }), element('source', { file }), element('target', { dev, bus: 'virtio' }), element('boot', { order: String(bootOrder) })],
    ':@': { type: 'file', device: 'disk' },
  };
}

/**
 * Defines (or redefines, same UUID) the machine's domain on a connection of this computer. accel 'auto': KVM when
 * libvirt offers it (its domain capabilities for kvm answer and /dev/kvm exists), else TCG.
 */
export async function exportMachine(
  source: LibvirtSource,
  m: MachineDetails,
  options: { accel?: 'auto' | 'kvm' | 'tcg'; /** Makes the stable paths of the machine's disks (Library.linkCurrentDisks). */ linkDisks: () => Promise<string[]> },
): Promise<ExportedDomain> {
  if (!source.isLocal) {
    throw unsupported('export', `The machine's disks are files on this computer, which a domain on ${source.uri} cannot read: export to a local connection (qemu:///system or qemu:///session).`);
  }
  const redefined = await source.virsh.exists(['domname', '--domain', m.id]);
  const accel = options.accel ?? 'auto';
  const kvm =
    accel === 'auto'
      ? existsSync('/dev/kvm') &&
        (await source.virsh.run(['domcapabilities', '--virttype', 'kvm']).then(
          () => true,
          () => false,
        ))
      : accel === 'kvm';
  const xml = domainXmlOf(m, { kvm, diskPaths: await options.linkDisks() });
  await source.virsh.runWithDocument((file) => ['define', '--file', file], xml);
  return { name: m.name, uuid: m.id, redefined, xml };
}
