// Remote-SSH's window addresses for our machines, and which machine a remote window is in: pure functions (no
// vscode), so they are unit-tested as they are.
//
// Remote-SSH names the host of a window in the URI's authority, `ssh-remote+HOST`, where HOST is an SSH config
// alias (ours: `vmsnap-NAME`), `user@host:port`, or hex-encoded JSON (`{"hostName":…,"port":…,"user":…}`). We
// open windows with our alias: host key checking and the key then come from our config block, which the
// hex form cannot carry (Remote-SSH would take them from the user's own ~/.ssh/config and known_hosts).
import { sshHostName } from '../../engine/ssh';

export const REMOTE_SSH_SCHEME = 'vscode-remote';
const PREFIX = 'ssh-remote+';

/** The authority of a Remote-SSH window on the machine named `name`: `ssh-remote+vmsnap-NAME`. */
export function remoteSshAuthority(machineName: string): string {
  return `${PREFIX}${sshHostName(machineName)}`;
}

/** Where the window opens in the guest: the user's home folder. */
export function remoteHomePath(user: string): string {
  return user === 'root' ? '/root' : `/home/${user}`;
}

/** The host a Remote-SSH authority names: a config alias, or an address with a port. Undefined for other remotes. */
export type RemoteSshHost = { kind: 'alias'; alias: string } | { kind: 'address'; host: string; port: number; user: string | null };

export function parseRemoteSshAuthority(authority: string): RemoteSshHost | undefined {
  const a = safeDecode(authority);
  if (!a.toLowerCase().startsWith(PREFIX)) return undefined;
  const host = a.slice(PREFIX.length);
  if (host === '') return undefined;
  const json = fromHex(host);
  if (json !== undefined) return json;
  // user@host:port (recent Remote-SSH), [v6]:port, or a bare alias / host name.
  const m = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host);
  if (!m) return undefined;
  const [, user, name, port] = m;
  if (port !== undefined || user !== undefined) {
    return { kind: 'address', host: name!.replace(/^\[|\]$/g, ''), port: port === undefined ? 22 : Number(port), user: user ?? null };
  }
  return { kind: 'alias', alias: name!.toLowerCase() };
}

/** What the matching needs of each machine: its name, and its SSH forward while it runs. */
export interface MachineAddress {
  id: string;
  name: string;
  /** The port SSH reaches it on (127.0.0.1) while it runs, else null. */
  sshPort: number | null;
}

/**
 * The machine a Remote-SSH window is in: `ssh-remote+vmsnap-NAME` names it (several machines whose names reduce
 * to the same alias: the one running, if exactly one does); an address names it when it is 127.0.0.1 (or
 * localhost) and the port of a running machine's SSH forward. Undefined for any other window.
 */
export function machineForRemoteAuthority<M extends MachineAddress>(authority: string, machines: readonly M[]): M | undefined {
  const host = parseRemoteSshAuthority(authority);
  if (host === undefined) return undefined;
  if (host.kind === 'alias') {
    const named = machines.filter((m) => aliasOf(m.name) === host.alias);
    if (named.length === 1) return named[0];
    const running = named.filter((m) => m.sshPort !== null);
    return running.length === 1 ? running[0] : undefined;
  }
  if (!isLoopback(host.host)) return undefined;
  const at = machines.filter((m) => m.sshPort === host.port);
  return at.length === 1 ? at[0] : undefined;
}

function aliasOf(name: string): string | undefined {
  try {
    return sshHostName(name);
  } catch {
    return undefined; // a name without letters or digits has no alias
  }
}

function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return h === '127.0.0.1' || h === 'localhost' || h === '::1' || h === '[::1]';
}

/** `ssh-remote+7b22…`: hex of a JSON object with hostName (and port, user). */
function fromHex(host: string): RemoteSshHost | undefined {
  if (!/^(?:[0-9a-f]{2})+$/i.test(host) || !host.toLowerCase().startsWith('7b')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(host, 'hex').toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as { hostName?: unknown; port?: unknown; user?: unknown };
  if (typeof v.hostName !== 'string') return undefined;
  const port = typeof v.port === 'number' ? v.port : typeof v.port === 'string' && /^\d+$/.test(v.port) ? Number(v.port) : 22;
  return { kind: 'address', host: v.hostName, port, user: typeof v.user === 'string' ? v.user : null };
}

/** The hex JSON form of an address (what other tools open windows with; we read it, we do not write it). */
export function hexAuthority(address: { hostName: string; port: number; user: string }): string {
  return `${PREFIX}${Buffer.from(JSON.stringify(address), 'utf8').toString('hex')}`;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
