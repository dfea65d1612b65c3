import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * Where the library lives when nobody says: VMSNAP_LIBRARY if set, else the platform's per-user data folder
 * (XDG_DATA_HOME or ~/.local/share on Linux, ~/Library/Application Support on macOS, %LOCALAPPDATA% on Windows),
 * with a `vmsnap` folder inside.
 */
export function defaultLibraryDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  const override = env['VMSNAP_LIBRARY'];
  if (override && override.trim() !== '') return resolve(override);
  const home = env['HOME'] || homedir();
  if (platform === 'win32') {
    const local = env['LOCALAPPDATA'] || join(env['USERPROFILE'] || home, 'AppData', 'Local');
    return join(local, 'vmsnap');
  }
  if (platform === 'darwin') return join(home, 'Library', 'Application Support', 'vmsnap');
  const xdg = env['XDG_DATA_HOME'];
  // XDG says relative values are invalid and must be ignored.
  return join(xdg && xdg.startsWith('/') ? xdg : join(home, '.local', 'share'), 'vmsnap');
}
