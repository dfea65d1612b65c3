// Shared by the SSH tests: the OpenSSH tools they use as oracles, and a throwaway sshd on 127.0.0.1 that runs
// as the current user and is always ended afterwards.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freeLocalPort, generateEd25519KeyPair, type KeyPair } from '../../../src/engine/ssh';

export const SSHD = process.env['VMSNAP_SSHD'] ?? '/usr/sbin/sshd';

/**
 * Fails (VMSNAP_REQUIRE_TOOLS=1, as in CI) or skips the calling test when an OpenSSH tool is missing. `sshd` is
 * looked for at SSHD; the others on PATH.
 */
export function requireOpenSsh(ctx: Mocha.Context, tools: readonly ('ssh' | 'ssh-keygen' | 'sshd')[]): void {
  for (const tool of tools) {
    const present = tool === 'sshd' ? existsSync(SSHD) : spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
    if (present) continue;
    const pkg = tool === 'sshd' ? 'openssh-server' : 'openssh-client';
    const message = `${tool} is not installed: install Debian's ${pkg} (apt-get install -y --no-install-recommends ${pkg}).`;
    if (process.env['VMSNAP_REQUIRE_TOOLS'] === '1') throw new Error(message);
    ctx.skip();
  }
}

/** A temp folder whose path has a space, a quote and a '%' in it, so quoting is exercised everywhere. */
export function awkwardTempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix} it's 100%-`));
}

/** The user's own known_hosts as it is now (null when absent), to prove the tests leave it alone. */
export function userKnownHosts(): string | null {
  const file = join(homedir(), '.ssh', 'known_hosts');
  return existsSync(file) ? readFileSync(file, 'utf8') : null;
}

export interface Sshd {
  port: number;
  user: string;
  hostKey: KeyPair;
  userKey: KeyPair;
  /** The user's private key file (0600). */
  identityFile: string;
  stderr(): string;
  stop(): Promise<void>;
}

/**
 * Starts `sshd -D -e` on 127.0.0.1:<free port> with a host key and an authorized user key made by
 * generateEd25519KeyPair; resolves when it listens.
 */
export async function startSshd(dir: string): Promise<Sshd> {
  const user = userInfo().username;
  // sshd started by root wants its privilege separation folder, which Debian's service unit normally creates.
  if (process.getuid?.() === 0 && !existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 });
  const hostKey = generateEd25519KeyPair('test host key');
  const userKey = generateEd25519KeyPair('test user key');
  const hostKeyFile = join(dir, 'ssh_host_ed25519_key');
  const identityFile = join(dir, 'id_ed25519');
  const authorizedKeys = join(dir, 'authorized_keys');
  writeFileSync(hostKeyFile, hostKey.privateKey, { mode: 0o600 });
  writeFileSync(identityFile, userKey.privateKey, { mode: 0o600 });
  writeFileSync(authorizedKeys, `${userKey.publicKey}\n`, { mode: 0o600 });
  const port = await freeLocalPort();
  const q = (p: string): string => `"${p}"`;
  const base = [
    'ListenAddress 127.0.0.1',
    `Port ${port}`,
    `HostKey ${q(hostKeyFile)}`,
    // sshd expands %-tokens in AuthorizedKeysFile (not in HostKey).
    `AuthorizedKeysFile ${q(authorizedKeys.replace(/%/g, '%%'))}`,
    'UsePAM no',
    'PidFile none',
    'StrictModes no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    `AllowUsers ${user}`,
  ];
  const config = join(dir, 'sshd_config');
  // Newer sshd (9.8+) penalises clients that disconnect early, as the banner probes do; older ones lack the option.
  writeFileSync(config, [...base, 'PerSourcePenalties no'].join('\n') + '\n');
  if (spawnSync(SSHD, ['-t', '-f', config]).status !== 0) writeFileSync(config, base.join('\n') + '\n');
  const checked = spawnSync(SSHD, ['-t', '-f', config], { encoding: 'utf8' });
  if (checked.status !== 0) throw new Error(`sshd refused the test config: ${checked.stderr}`);

  const child: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sshd did not start listening within 10 s: ${stderr}`)), 10_000);
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      if (stderr.includes(`Server listening on 127.0.0.1 port ${port}`)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sshd exited with ${code} before listening: ${stderr}`));
    });
  });
  return {
    port,
    user,
    hostKey,
    userKey,
    identityFile,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
