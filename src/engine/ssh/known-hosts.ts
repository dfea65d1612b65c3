// A known_hosts file per machine, kept by the library (the user's ~/.ssh/known_hosts is never touched). Entries
// are keyed by a host key alias, `vmsnap-<machine id>`, not by 127.0.0.1:port: the forwarded port changes from
// start to start, and two machines on the same port at different times must not be taken for one host.
import { readFile } from 'node:fs/promises';
import { SshError } from './errors';
import { atomicReplace, toSshIoError } from './files';
import { parsePublicKey } from './openssh-key';

/** Safe as a known_hosts host field and in ssh's `-o`: no spaces, no pattern characters (`*?!,[]`), no `#`. */
const ALIAS = /^[a-z0-9][a-z0-9._-]*$/;

/** The alias ssh looks a machine's host key up by. ssh lowercases HostKeyAlias itself; so do we. */
export function hostKeyAlias(machineId: string): string {
  return checkAlias(`vmsnap-${machineId.toLowerCase()}`);
}

/** `ALIAS TYPE BASE64` (the key's comment is dropped: known_hosts has no use for it). */
export function knownHostsLine(alias: string, publicKey: string): string {
  const { type, blob } = parsePublicKey(publicKey);
  return `${checkAlias(alias)} ${type} ${blob.toString('base64')}`;
}

/**
 * Writes a machine's known_hosts with exactly these host keys for `alias` (a guest usually has one per key type),
 * replacing the file atomically. ssh only reads it: connections use StrictHostKeyChecking=yes and
 * UpdateHostKeys=no, so what is accepted is decided here and nowhere else.
 */
export async function writeKnownHosts(file: string, alias: string, publicKeys: readonly string[]): Promise<void> {
  if (publicKeys.length === 0) throw new SshError('INVALID_ARGUMENT', 'A known_hosts file needs at least one host key.');
  const lines = publicKeys.map((k) => knownHostsLine(alias, k));
  const text = `# Host keys of one vmsnap machine, written by vmsnap (edits are replaced).\n${lines.join('\n')}\n`;
  try {
    await atomicReplace(file, text, 0o644);
  } catch (e) {
    throw toSshIoError(e, `Writing the machine's known_hosts ${file}`);
  }
}

/** The host keys `file` holds for `alias` (as `TYPE BASE64`), or [] when the file does not exist. */
export async function readKnownHosts(file: string, alias: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw toSshIoError(e, `Reading the machine's known_hosts ${file}`);
  }
  const keys: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [hosts, type, data] = line.split(/[ \t]+/);
    if (hosts === undefined || type === undefined || data === undefined) continue;
    if (!hosts.toLowerCase().split(',').includes(alias)) continue;
    keys.push(`${type} ${data}`);
  }
  return keys;
}

function checkAlias(alias: string): string {
  if (!ALIAS.test(alias)) {
    throw new SshError('INVALID_ARGUMENT', `"${alias}" cannot be a host key alias: use lowercase letters, digits, '.', '_' and '-'.`);
  }
  return alias;
}
