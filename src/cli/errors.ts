// Engine errors in the CLI's words: where the engine leaves the way out open, the CLI names its own command or flag.
import type { MachineError } from '../engine/machine';
import type { SourceError } from '../engine/sources';

const REVERT_DISCARDS_CURRENT = 'Reverting throws away the current state: confirm with --discard-current, or keep it with --save-current NAME.';

/** The sentence the CLI prints (and puts in its JSON error document) for a machine error. */
export function machineErrorSentence(e: MachineError): string {
  const d = e.detail;
  if (d === null) return e.message;
  switch (d.kind) {
    case 'machine-not-found':
      return `There is no machine "${d.ref}" in the library: list them with \`vmsnap vm list\`.`;
    case 'snapshot-not-found':
      return `Machine "${d.machineName}" has no snapshot "${d.ref}": list them with \`vmsnap snapshot list\`.`;
    case 'revert-discards-current':
      return REVERT_DISCARDS_CURRENT;
    case 'libvirt-domain-exported':
      return `Machine "${d.machineName}" is exported to libvirt as domain "${d.domain}" on ${d.connection}; pass --undefine-libvirt to remove that domain too, or --keep-libvirt-domain to leave it (it will point at missing files).`;
    case 'libvirt-domain-running':
      return `Machine "${d.machineName}" is exported to libvirt as domain "${d.domain}" on ${d.connection}, which is running: shut it off first (\`virsh -c ${d.connection} shutdown ${d.domain}\`), then delete again.`;
    case 'libvirt-unreachable':
      return `Cannot check whether machine "${d.machineName}" is still exported to libvirt as domain "${d.domain}" on ${d.connection}: ${d.reason}. Try again when that connection answers, or pass --keep-libvirt-domain to delete the machine anyway (the domain, if it still exists, will point at missing files).`;
  }
}

/** The sentence the CLI prints for a machine source's error (libvirt connections). */
export function sourceErrorSentence(e: SourceError): string {
  const d = e.detail;
  if (d === null) return e.message;
  switch (d.kind) {
    case 'machine-not-found':
      return `There is no domain "${d.ref}" on ${d.source}: list them with \`vmsnap --connect ${d.source} vm list\`.`;
    case 'snapshot-not-found':
      return `Domain "${d.machineName}" has no snapshot "${d.ref}": list them with \`vmsnap --connect URI snapshot list\`.`;
    case 'revert-discards-current':
      return REVERT_DISCARDS_CURRENT;
    case 'unsupported':
      return d.reason;
  }
}
