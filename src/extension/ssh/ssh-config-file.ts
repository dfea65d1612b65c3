// The SSH config files the extension keeps in the library: `ssh_config` (the `Host vmsnap-NAME` block of each
// running machine launched from a cloud image, the file `vmsnap vm ssh-config` writes too), and the file
// Remote-SSH is pointed at with the user's consent, which reads ours first and then the user's own config.
import { execFile } from 'node:child_process';
import { rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Library } from '../../engine/machine';

/** The library's SSH config (the CLI's `vm ssh-config` writes the same file). */
export const LIBRARY_SSH_CONFIG = 'ssh_config';
/** What `remote.SSH.configFile` names when the user lets Remote-SSH read our hosts. */
export const REMOTE_SSH_CONFIG = 'remote-ssh_config';

/** The user's own config, which Remote-SSH reads when `remote.SSH.configFile` is not set. */
export function userSshConfig(): string {
  return join(homedir(), '.ssh', 'config');
}

/** Rewrites `<library>/ssh_config` from the running machines (the engine's, as the CLI's `vm ssh-config` does). */
export function writeLibrarySshConfig(lib: Library): Promise<string> {
  return lib.writeSshConfig();
}

/**
 * Writes `<library>/remote-ssh_config`: an Include of the library's ssh_config, then of `userConfig` (the file
 * Remote-SSH read before), so the user's own hosts stay as they were. Ours come first: ssh takes the first value
 * it finds for each option, and a user's `Host *` must not override which host key our machines may present.
 */
export async function writeRemoteSshConfig(libraryDir: string, userConfig: string): Promise<string> {
  const path = join(libraryDir, REMOTE_SSH_CONFIG);
  const text = [
    '# Written by vmsnap for VS Code\'s Remote-SSH (setting remote.SSH.configFile): the library\'s machines, then',
    '# the config Remote-SSH read before. Remove the setting to go back; this file can then be deleted.',
    `Include ${quoted(join(libraryDir, LIBRARY_SSH_CONFIG))}`,
    `Include ${quoted(userConfig)}`,
    '',
  ].join('\n');
  await replaceFile(path, text);
  return path;
}

/** Whether `ssh` with `configFile` (none: ssh's defaults, as Remote-SSH without the setting) reaches `alias` on 127.0.0.1:port. */
export function sshResolves(configFile: string | undefined, alias: string, port: number): Promise<boolean> {
  return sshOptionsFor(configFile, alias).then(
    (o) => o.get('hostname') === '127.0.0.1' && o.get('port') === String(port),
    () => false,
  );
}

/** What `ssh -G` says it would use for `alias` (lowercase option names). */
export function sshOptionsFor(configFile: string | undefined, alias: string): Promise<Map<string, string>> {
  const args = [...(configFile === undefined ? [] : ['-F', configFile]), '-G', '--', alias];
  return new Promise((resolve, reject) => {
    execFile(process.env['VMSNAP_SSH'] ?? 'ssh', args, { timeout: 10_000, windowsHide: true }, (error, stdout) => {
      if (error) return reject(error);
      const options = new Map<string, string>();
      for (const line of stdout.split(/\r?\n/)) {
        const space = line.indexOf(' ');
        if (space > 0 && !options.has(line.slice(0, space))) options.set(line.slice(0, space), line.slice(space + 1));
      }
      resolve(options);
    });
  });
}

/** A path as an Include argument: forward slashes (Win32-OpenSSH reads them), in double quotes. */
function quoted(path: string): string {
  const p = process.platform === 'win32' ? path.replace(/\\/g, '/') : path;
  return `"${p.replace(/"/g, '\\"')}"`;
}

/** Replaced in one step: ssh (or Remote-SSH) reading it meanwhile sees the old file or the new one. */
async function replaceFile(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, path);
}
