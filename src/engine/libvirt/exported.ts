// A domain `vm export` defined from one of our machines, looked up again later (before the machine is deleted):
// does it still exist on its connection, does it still read the machine's folder, does it run; and undefining it.
import { realpath } from 'node:fs/promises';
import { sep } from 'node:path';
import { domainRecord, powerStateOf } from './records';
import { Virsh, type VirshOptions } from './virsh';
import { parseOrdered, rootOf } from './xml';
import type { PowerState } from '../sources';

/** The exported domain as libvirt has it now. */
export interface ExportedDomainState {
  /** Its name now (virt-manager may have renamed it). */
  name: string;
  uuid: string;
  powerState: PowerState;
}

const DISKS_XPATH = '/domain/name|/domain/uuid|/domain/devices/disk';

/**
 * The domain with `uuid` (else the one named `name`) on `connection` when one of its disks is a file in `folder`;
 * null when there is none, or it reads files elsewhere now (re-pointed: no longer ours to worry about). A connection
 * that cannot be opened rejects with virsh's SourceError (UNREACHABLE, TOOL_MISSING, TIMEOUT, ...).
 */
export async function findExportedDomain(connection: string, ids: { uuid: string; name: string }, folder: string, options: VirshOptions = {}): Promise<ExportedDomainState | null> {
  const virsh = new Virsh(connection, { timeoutMs: 30000, ...options });
  const refs = ids.name === ids.uuid ? [ids.uuid] : [ids.uuid, ids.name];
  const out = await virsh.batch(refs.flatMap((r) => [['dumpxml', '--domain', r, '--xpath', DISKS_XPATH, '--wrap'], ['domstate', '--domain', r]]));
  const inside = await folderTest(folder);
  for (let i = 0; i < refs.length; i++) {
    const xml = out[i * 2];
    if (xml === null || xml === undefined) continue;
    const d = domainRecord(rootOf(parseOrdered(xml), 'nodes'));
    if (d.disks.some((disk) => disk.path !== null && inside(disk.path))) return { name: d.name, uuid: d.uuid, powerState: powerStateOf(out[i * 2 + 1] ?? '') };
  }
  return null;
}

/**
 * Undefines a powered-off domain with the metadata libvirt keeps beside it (a managed save, snapshot and checkpoint
 * records), never a disk: the files are the machine's, which the library deletes itself.
 */
export async function undefineDomain(connection: string, uuid: string, options: VirshOptions = {}): Promise<void> {
  await new Virsh(connection, options).run(['undefine', '--domain', uuid, '--managed-save', '--snapshots-metadata', '--checkpoints-metadata']);
}

/** Whether a path is in the folder, as written or through the folder's real path (a library under a link). */
async function folderTest(folder: string): Promise<(path: string) => boolean> {
  const real = await realpath(folder).catch(() => folder);
  const prefixes = [...new Set([folder, real])].map((f) => (f.endsWith(sep) ? f : f + sep));
  return (path) => prefixes.some((p) => path.startsWith(p));
}
