// The libvirt domains `vm export` defined from a machine, as its manifest records them (connection and name; the
// domain's UUID is the machine's id): the record's validation, and what deleting the machine does about them.
// A domain left defined would point at files that are gone, so a delete looks for each recorded domain first:
// one that still exists and still reads the machine's folder is either undefined too or knowingly left.
import { findExportedDomain, undefineDomain } from '../libvirt';
import { isSourceError } from '../sources';
import { MachineError } from './errors';
import type { Checker } from './manifest';
import type { MachineEntry } from './store';
import type { DeleteMachineOptions, ExportedLibvirtDomain } from './types';

export interface LibvirtExportRecord {
  /** The connection's URI, e.g. qemu:///system. */
  connection: string;
  /** The domain's name when it was defined (it is looked up by the machine's id, its UUID, first). */
  domain: string;
}

export function libvirtExportRecords(c: Checker, list: unknown[]): LibvirtExportRecord[] {
  const seen = new Set<string>();
  return list.map((v, i) => {
    const p = `libvirtExports[${i}].`;
    const o = c.object(v, `libvirtExports[${i}]`);
    const connection = c.string(o, 'connection', p, 4096);
    // eslint-disable-next-line no-control-regex
    if (!/^[a-z0-9+]+:\/\/[^\u0000-\u001f\u007f]*$/i.test(connection)) c.fail(p + 'connection', 'must be a libvirt URI such as qemu:///system');
    if (seen.has(connection)) c.fail(p + 'connection', `names ${connection} a second time`);
    seen.add(connection);
    const domain = c.string(o, 'domain', p, 1024);
    // eslint-disable-next-line no-control-regex
    if (domain === '' || /[\u0000-\u001f\u007f]/.test(domain)) c.fail(p + 'domain', 'must be a domain name');
    return { connection, domain };
  });
}

/** The records with `record` in place of the one on the same connection (a domain is redefined there). */
export function withExport(records: readonly LibvirtExportRecord[] | undefined, record: LibvirtExportRecord): LibvirtExportRecord[] {
  return [...(records ?? []).filter((r) => r.connection !== record.connection), record];
}

/**
 * The recorded domains of these machines that still exist and still read their folders. A connection that cannot
 * be opened is a MachineError (detail libvirt-unreachable): the caller cannot know what it would leave behind.
 */
export async function exportedDomainsOf(entries: readonly MachineEntry[]): Promise<ExportedLibvirtDomain[]> {
  const found: ExportedLibvirtDomain[] = [];
  for (const e of entries) {
    for (const r of e.manifest.libvirtExports ?? []) {
      const d = await findExportedDomain(r.connection, { uuid: e.manifest.id, name: r.domain }, e.folder).catch((err: unknown) => {
        if (!isSourceError(err)) throw err;
        // virsh's sentence, to go on after a colon: "The libvirt daemon of …" becomes "the libvirt daemon of …".
        const reason = err.message.replace(/\.$/, '').replace(/^[A-Z](?![A-Z])/, (c) => c.toLowerCase());
        throw new MachineError(
          'RUNTIME_ERROR',
          `Cannot check whether machine "${e.manifest.name}" is still exported to libvirt as domain "${r.domain}" on ${r.connection}: ${reason}. Delete it when that connection answers, or leave the domain as it is.`,
          [],
          { cause: err, detail: { kind: 'libvirt-unreachable', machineName: e.manifest.name, domain: r.domain, connection: r.connection, reason } },
        );
      });
      if (d !== null) found.push({ machineId: e.manifest.id, machineName: e.manifest.name, connection: r.connection, domain: d.name, powerState: d.powerState });
    }
  }
  return found;
}

/** Refuses the delete while a recorded domain still reads a folder it removes, unless the options say what to do. */
export async function checkExportedDomains(entries: readonly MachineEntry[], options: DeleteMachineOptions): Promise<void> {
  if (options.libvirtDomains === 'keep') return;
  for (const d of await exportedDomainsOf(entries)) {
    if (options.libvirtDomains === 'undefine') {
      if (d.powerState !== 'off') throw domainRunning(d);
      continue;
    }
    throw new MachineError(
      'NEEDS_CONFIRMATION',
      `Machine "${d.machineName}" is exported to libvirt as domain "${d.domain}" on ${d.connection}: say whether to undefine that domain too, or to leave it (it will point at missing files).`,
      [],
      { detail: { kind: 'libvirt-domain-exported', machineName: d.machineName, domain: d.domain, connection: d.connection, powerState: d.powerState } },
    );
  }
}

/**
 * Under the machine's lock, right before its folder goes: undefines the recorded domains that still read it (asked
 * for with libvirtDomains 'undefine'), looked up again, since libvirt is not ours to lock.
 */
export async function undefineExportedDomains(e: MachineEntry, options: DeleteMachineOptions): Promise<{ connection: string; domain: string }[]> {
  if (options.libvirtDomains !== 'undefine') return [];
  const done: { connection: string; domain: string }[] = [];
  for (const d of await exportedDomainsOf([e])) {
    if (d.powerState !== 'off') throw domainRunning(d);
    await undefineDomain(d.connection, e.manifest.id).catch((err: unknown) => {
      throw isSourceError(err) ? new MachineError('RUNTIME_ERROR', `Domain "${d.domain}" on ${d.connection} could not be undefined: ${err.message}`, [], { cause: err }) : err;
    });
    done.push({ connection: d.connection, domain: d.domain });
  }
  return done;
}

function domainRunning(d: ExportedLibvirtDomain): MachineError {
  return new MachineError(
    'POWERED_ON',
    `Domain "${d.domain}" on ${d.connection}, exported from machine "${d.machineName}", is ${d.powerState === 'paused' ? 'paused' : 'running'}: shut it off first (virsh shutdown), then delete the machine.`,
    [],
    { detail: { kind: 'libvirt-domain-running', machineName: d.machineName, domain: d.domain, connection: d.connection } },
  );
}
