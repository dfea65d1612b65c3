// How the system `ssh` (and what reads its config, such as VS Code's Remote-SSH) is told to reach a machine:
// an argument list for one connection, and a `Host vmsnap-NAME` block for a config file.
//
// Host keys: StrictHostKeyChecking=yes against the machine's own known_hosts (the library knows the key before
// first contact), so a mismatch stays ssh's loud error. GlobalKnownHostsFile points at that same file: the
// global file can only *add* keys ssh would accept for the alias (a match in any file is accepted), so leaving
// it out hides no warning; it keeps the library's file the only authority. (`none` would say the same but needs
// OpenSSH 8.5, and /dev/null does not exist on Windows.)
import { isAbsolute } from 'node:path';
import { SshError } from './errors';

export interface SshTarget {
  /** Where the forward listens: 127.0.0.1. */
  host: string;
  port: number;
  user: string;
  /** The private key (absolute path). */
  identityFile: string;
  /** The machine's known_hosts (absolute path). */
  knownHostsFile: string;
  /** `vmsnap-<machine id>` (see hostKeyAlias). */
  hostKeyAlias: string;
}

export interface SshArgsOptions {
  /** Never prompt (passwords, passphrases, unknown keys): for waits and scripted commands, not for a terminal. */
  batchMode?: boolean;
  /** Seconds ssh waits for the TCP connection. */
  connectTimeoutSeconds?: number;
  /**
   * A remote command, one word per entry: each is quoted for the guest's shell, so the words arrive exactly as
   * given (ssh itself joins them with spaces, which would split `sh -c 'a; b'`). Placed past a `--`.
   */
  command?: readonly string[];
}

/**
 * The arguments for the system `ssh` to log into `target`. Command-line options override ~/.ssh/config, so the
 * user's own settings apply to everything else (agent forwarding, ciphers) but not to which host key is accepted.
 */
export function sshArgs(target: SshTarget, options: SshArgsOptions = {}): string[] {
  const t = checkTarget(target);
  // IdentityFile as `-o`, not `-i`: ssh checks a `-i` path as written but opens it after expanding `%x`, so a
  // path with '%' in it cannot be given through `-i` at all.
  const args = ['-p', String(t.port), '-l', t.user, '-o', `IdentityFile=${expandedPath(t.identityFile)}`];
  for (const [key, value] of clientOptions(t)) args.push('-o', `${key}=${value}`);
  if (options.batchMode) args.push('-o', 'BatchMode=yes');
  if (options.connectTimeoutSeconds !== undefined) {
    if (!Number.isInteger(options.connectTimeoutSeconds) || options.connectTimeoutSeconds < 1) {
      throw new SshError('INVALID_ARGUMENT', `ConnectTimeout must be a whole number of seconds, not ${options.connectTimeoutSeconds}.`);
    }
    args.push('-o', `ConnectTimeout=${options.connectTimeoutSeconds}`);
  }
  // `--` before the host: ssh parses options again after the host unless they were terminated.
  args.push('--', t.host);
  if (options.command !== undefined && options.command.length > 0) args.push(options.command.map(posixQuote).join(' '));
  return args;
}

/**
 * A `Host vmsnap-NAME` block for an ssh config file (read by `ssh -F`, by an `Include` in ~/.ssh/config, and by
 * Remote-SSH). Put the Include above any `Host *` block: ssh takes the first value it finds for each option.
 */
export function sshConfigBlock(name: string, target: SshTarget): string {
  const t = checkTarget(target);
  const lines = [
    `Host ${sshHostName(name)}`,
    `  HostName ${t.host}`,
    `  Port ${t.port}`,
    `  User ${t.user}`,
    `  IdentityFile ${expandedPath(t.identityFile)}`,
    ...clientOptions(t).map(([key, value]) => `  ${key} ${value}`),
  ];
  return lines.join('\n') + '\n';
}

/**
 * `vmsnap-NAME` with NAME reduced to what a Host pattern and a Remote-SSH authority carry safely: lowercase ASCII
 * letters, digits, '_' and '-'. Different names can reduce to the same host name; the caller keeps them apart.
 */
export function sshHostName(name: string): string {
  const slug = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^[-_]+|[-_]+$/g, '');
  if (slug === '') throw new SshError('INVALID_ARGUMENT', `The machine name "${name}" has no letters or digits to make an SSH host name from.`);
  return `vmsnap-${slug}`;
}

/** The options that decide identity and host key, shared by the argument list and the config block. */
function clientOptions(t: SshTarget): [string, string][] {
  return [
    ['IdentitiesOnly', 'yes'],
    ['HostKeyAlias', t.hostKeyAlias],
    ['UserKnownHostsFile', expandedPath(t.knownHostsFile)],
    ['GlobalKnownHostsFile', configPath(t.knownHostsFile)],
    ['StrictHostKeyChecking', 'yes'],
    // The library writes known_hosts; ssh must not add to it behind its back.
    ['UpdateHostKeys', 'no'],
  ];
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * A path as a config value (also what `-o KEY=VALUE` is parsed as): in double quotes when it has spaces or
 * quotes, with `\` and `"` escaped as OpenSSH's argv_split reads them. On Windows the separators become '/',
 * which Win32-OpenSSH accepts, so older versions without backslash escapes read the same path.
 */
function configPath(path: string): string {
  const p = checkedPath(path);
  return /[\s"'\\#]/.test(p) ? `"${p.replace(/[\\"]/g, (c) => `\\${c}`)}"` : p;
}

/** A config value for options ssh expands `%x` and `${VAR}` in (IdentityFile, UserKnownHostsFile). */
function expandedPath(path: string): string {
  return configPath(percentEscaped(path));
}

/** `%` doubled; `${` refused, since ssh has no escape for it. */
function percentEscaped(path: string): string {
  if (path.includes('${')) throw new SshError('INVALID_ARGUMENT', `The path "${path}" contains "\${", which ssh would expand as an environment variable: use another folder.`);
  return path.replace(/%/g, '%%');
}

function checkedPath(path: string): string {
  if (!isAbsolute(path)) throw new SshError('INVALID_ARGUMENT', `SSH needs an absolute path, not "${path}".`);
  if (CONTROL.test(path)) throw new SshError('INVALID_ARGUMENT', `The path "${path}" contains a control character, which an ssh config cannot carry.`);
  return process.platform === 'win32' ? path.replace(/\\/g, '/') : path;
}

function checkTarget(t: SshTarget): SshTarget {
  if (!/^[A-Za-z0-9_:.][A-Za-z0-9_:.-]*$/.test(t.host)) throw new SshError('INVALID_ARGUMENT', `"${t.host}" is not a host address ssh can be given.`);
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535) throw new SshError('INVALID_ARGUMENT', `${t.port} is not a TCP port (1-65535).`);
  // What useradd and cloud-init accept, and never an option (`-…`) or a pattern.
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(t.user) || t.user.length > 32) {
    throw new SshError('INVALID_ARGUMENT', `"${t.user}" is not a user name ssh can log in as: use letters, digits, '_', '.' and '-'.`);
  }
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(t.hostKeyAlias)) throw new SshError('INVALID_ARGUMENT', `"${t.hostKeyAlias}" is not a host key alias (see hostKeyAlias()).`);
  return t;
}

/** A word for a POSIX shell: as it is when it is plainly safe, else in single quotes. */
function posixQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
