// libvirt's domain and snapshot XML read into plain records, and what libvirt 9.0 refuses for a snapshot.
import type { PowerState, SnapshotRefusals, SourceDisk, SourceSnapshot } from '../sources';
import { attr, elements, parseOrdered, path, rootOf, textOf, type XNode } from './xml';

export interface DomainRecord {
  name: string;
  uuid: string;
  memoryMiB: number;
  cpus: number;
  macAddresses: string[];
  disks: SourceDisk[];
}

/** A <domain> element, or the <nodes> wrapper of an xpath selection of one domain's elements. */
export function domainRecord(container: XNode): DomainRecord {
  const devices = path(container, 'devices') ?? container;
  const memory = path(container, 'memory');
  return {
    name: textOf(path(container, 'name')),
    uuid: textOf(path(container, 'uuid')),
    memoryMiB: Math.round(toKiB(Number(textOf(memory)), attr(memory, 'unit') ?? 'KiB') / 1024),
    cpus: Number(textOf(path(container, 'vcpu'))) || 1,
    macAddresses: elements(devices, 'interface').map((i) => attr(path(i, 'mac'), 'address') ?? '').filter((m) => m !== ''),
    disks: elements(devices, 'disk')
      .filter((d) => (attr(d, 'device') ?? 'disk') === 'disk')
      .map((d) => ({
        target: attr(path(d, 'target'), 'dev') ?? '',
        path: attr(path(d, 'source'), 'file') ?? (attr(d, 'type') === 'block' ? attr(path(d, 'source'), 'dev') : null),
        format: attr(path(d, 'driver'), 'type'),
      })),
  };
}

export function parseDomain(xml: string): DomainRecord {
  const nodes = parseOrdered(xml);
  return domainRecord(elements(nodes, 'domain')[0] ?? rootOf(nodes, 'nodes'));
}

function toKiB(n: number, unit: string): number {
  const factors: Record<string, number> = { b: 1 / 1024, bytes: 1 / 1024, KiB: 1, k: 1, KB: 1000 / 1024, MiB: 1024, M: 1024, MB: 1e6 / 1024, GiB: 1024 ** 2, G: 1024 ** 2, GB: 1e9 / 1024 };
  return n * (factors[unit] ?? 1);
}

/** virsh domstate's words onto ours ("in shutdown" still runs; "crashed", "pmsuspended" count as off or paused). */
export function powerStateOf(domstate: string): PowerState {
  const s = domstate.trim().split('\n')[0]?.trim() ?? '';
  if (s === 'running' || s === 'in shutdown' || s === 'idle') return 'running';
  if (s === 'paused' || s === 'pmsuspended' || s === 'blocked') return 'paused';
  return 'off';
}

export const REVERT_EXTERNAL = 'libvirt 9.0 cannot revert to an external snapshot.';
export const DELETE_EXTERNAL = 'libvirt 9.0 cannot delete an external snapshot while a linked clone or the current state may read its layer; it is kept.';
export const RENAME_REASON = 'libvirt cannot rename a snapshot: QEMU finds an internal snapshot by its name, so only its description can change.';
export const LINKED_FROM_INTERNAL = 'A linked clone needs a frozen layer file, and an internal snapshot lives inside the disk image: make a full clone from it, or a linked clone of the current state.';
export const REMOTE_FULL_FROM_SNAPSHOT = 'A full clone from an internal snapshot of a remote domain needs its disk read on that host, which libvirt 9.0 cannot do: revert to it, then clone the current state.';

/** Why a remote disk `file` cannot be copied for a clone: libvirt copies a file on another host only inside a storage pool. */
export function notInPool(file: string, uri: string): string {
  return `${file} is in no libvirt storage pool on ${uri}, so libvirt cannot copy it there: add its folder as a pool (virsh pool-define-as NAME dir --target DIR), or refresh the pool that holds it (virsh pool-refresh NAME).`;
}

/**
 * A <domainsnapshot> (or the <nodes> wrapper of an xpath selection of its elements). `where`: whether the
 * connection's disks are files on this computer; on a remote host a snapshot's disk cannot be read for a full clone.
 */
export function snapshotRecord(container: XNode, where: 'local' | 'remote' = 'local'): SourceSnapshot {
  const state = textOf(path(container, 'state'));
  const memory = attr(path(container, 'memory'), 'snapshot') ?? 'no';
  const diskModes = elements(path(container, 'disks') ?? [], 'disk').map((d) => attr(d, 'snapshot') ?? 'internal');
  const external = memory === 'external' || diskModes.includes('external');
  const seconds = Number(textOf(path(container, 'creationTime')));
  const parent = textOf(path(container, 'parent', 'name'));
  const refusals: SnapshotRefusals = { rename: RENAME_REASON };
  if (external) {
    refusals.revert = REVERT_EXTERNAL;
    refusals.delete = DELETE_EXTERNAL;
    refusals.fullClone = 'libvirt 9.0 cannot read an external snapshot back for a clone; clone the current state.';
  } else {
    refusals.linkedClone = LINKED_FROM_INTERNAL;
    if (where === 'remote') refusals.fullClone = REMOTE_FULL_FROM_SNAPSHOT;
  }
  return {
    id: textOf(path(container, 'name')),
    name: textOf(path(container, 'name')),
    description: textOf(path(container, 'description')),
    parentId: parent === '' ? null : parent,
    createdAt: Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString() : new Date(0).toISOString(),
    takenWhileRunning: state === 'running' || state === 'paused' || state === 'disk-snapshot',
    hasMemory: memory === 'internal' || memory === 'external',
    location: external ? 'external' : 'internal',
    refusals,
  };
}

export function parseSnapshot(xml: string): SourceSnapshot {
  const nodes = parseOrdered(xml);
  return snapshotRecord(elements(nodes, 'domainsnapshot')[0] ?? rootOf(nodes, 'nodes'));
}

/** The files an external snapshot froze: the disk sources of the domain it embeds (one per target). */
export function frozenFiles(snapshotXml: string): Map<string, string> {
  const root = rootOf(parseOrdered(snapshotXml), 'domainsnapshot');
  const domain = path(root, 'domain') ?? path(root, 'inactiveDomain');
  const files = new Map<string, string>();
  if (domain === null) return files;
  for (const d of domainRecord(domain).disks) if (d.path !== null) files.set(d.target, d.path);
  return files;
}
