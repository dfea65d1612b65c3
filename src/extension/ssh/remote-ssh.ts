// The Remote-SSH extension as this extension sees it: whether it (or a compatible one) is installed, the config
// file it reads, and opening a window through it. One seam: the extension-host tests cannot install Remote-SSH
// offline, so they put a recording stand-in here (see the test handle) and check what would be opened.
import * as vscode from 'vscode';

/** Extensions that open `vscode-remote://ssh-remote+HOST/…` windows and read `remote.SSH.configFile`. */
export const REMOTE_SSH_EXTENSIONS = ['ms-vscode-remote.remote-ssh', 'jeanp413.open-remote-ssh'] as const;
export const REMOTE_SSH_NAME = 'Remote - SSH';

export interface RemoteSsh {
  /** The id of the installed extension that opens SSH windows, else undefined. */
  installed(): string | undefined;
  /** `remote.SSH.configFile`, or undefined when not set (Remote-SSH then reads ~/.ssh/config). */
  configFile(): string | undefined;
  /** Sets `remote.SSH.configFile` (user settings). */
  setConfigFile(path: string): Promise<void>;
  /** Tells Remote-SSH the host runs Linux (`remote.SSH.remotePlatform`), so it does not ask; only when not said yet. */
  rememberLinux(hostAlias: string): Promise<void>;
  /** Opens a new window on the remote folder. */
  openWindow(uri: vscode.Uri): Promise<void>;
}

export const vscodeRemoteSsh: RemoteSsh = {
  installed: () => REMOTE_SSH_EXTENSIONS.find((id) => vscode.extensions.getExtension(id) !== undefined),
  configFile: () => {
    const value = vscode.workspace.getConfiguration('remote.SSH').get<string>('configFile', '').trim();
    return value === '' ? undefined : value.replace(/^~(?=$|[\\/])/, process.env['HOME'] ?? process.env['USERPROFILE'] ?? '~');
  },
  setConfigFile: async (path) => {
    await vscode.workspace.getConfiguration('remote.SSH').update('configFile', path, vscode.ConfigurationTarget.Global);
  },
  rememberLinux: async (hostAlias) => {
    const c = vscode.workspace.getConfiguration('remote.SSH');
    const platforms = c.get<Record<string, string>>('remotePlatform') ?? {};
    if (platforms[hostAlias] !== undefined) return;
    await c.update('remotePlatform', { ...platforms, [hostAlias]: 'linux' }, vscode.ConfigurationTarget.Global);
  },
  openWindow: async (uri) => {
    await vscode.commands.executeCommand('vscode.openFolder', uri, { forceNewWindow: true });
  },
};

/** The one in use: tests swap in a recording stand-in. */
export class RemoteSshHolder {
  current: RemoteSsh = vscodeRemoteSsh;
}
