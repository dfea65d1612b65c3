// The way into a machine launched from a cloud image: its cloud-init seed (user, keys, hostname, a host key made
// here) and its own known_hosts, both files of the machine folder; and the SSH target `vm ssh` connects to.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildSeed, generateHostKeys, hostnameFromMachineName, isSeedError, seedFiles, writeSeedImage } from '../cloud-init';
import { FORWARD_HOST, type BoundForward } from '../runtime';
import { hostKeyAlias, isSshError, waitForSsh, writeKnownHosts, type SshTarget } from '../ssh';
import { MachineError } from './errors';
import type { GuestRecord, Manifest } from './manifest';

/** Files of a machine launched from a cloud image. */
export const SEED_FILE = 'seed.iso';
export const KNOWN_HOSTS_FILE = 'known_hosts';
export const USER_DATA_FILE = 'user-data';

export const SSH_GUEST_PORT = 22;

export interface GuestSetup {
  user: string;
  authorizedKeys: string[];
  identityFile: string;
  /** The caller's own cloud-init user-data, or undefined for ours. */
  userData?: string;
}

/**
 * Writes the seed and known_hosts for the machine `m` into `folder` (a staging folder: the caller publishes it).
 * A new host key every time: a clone (new id, new instance-id) is a new host, as cloud-init sees it.
 */
export async function writeGuestAccess(folder: string, m: Manifest, setup: GuestSetup): Promise<GuestRecord> {
  try {
    return await writeGuestFiles(folder, m, setup);
  } catch (e) {
    // Bad input for the seed (a user name, a key line) or a file that cannot be written.
    if (isSeedError(e) || isSshError(e)) {
      const code = e.code === 'NO_SPACE' ? 'NO_SPACE' : e.code === 'IO_ERROR' ? 'IO_ERROR' : 'INVALID_ARGUMENT';
      throw new MachineError(code, e.message, [], { cause: e });
    }
    throw e;
  }
}

async function writeGuestFiles(folder: string, m: Manifest, setup: GuestSetup): Promise<GuestRecord> {
  const hostKeys = generateHostKeys();
  const seed = buildSeed({
    instanceId: m.id,
    hostname: hostnameFromMachineName(m.name),
    user: setup.user,
    authorizedKeys: setup.authorizedKeys,
    hostKeys,
    ...(setup.userData === undefined ? {} : { userData: setup.userData }),
  });
  await writeSeedImage(join(folder, SEED_FILE), seedFiles(seed));
  await writeKnownHosts(join(folder, KNOWN_HOSTS_FILE), hostKeyAlias(m.id), [hostKeys.ed25519.publicKey]);
  if (setup.userData !== undefined) await writeFile(join(folder, USER_DATA_FILE), setup.userData, { mode: 0o644 });
  return {
    user: setup.user,
    authorizedKeys: setup.authorizedKeys,
    identityFile: setup.identityFile,
    hostKey: hostKeys.ed25519.publicKey,
    userDataFile: setup.userData === undefined ? null : USER_DATA_FILE,
  };
}

/** What a clone of `source` (in `sourceFolder`) needs to write its own seed: the same user, keys and user-data. */
export async function guestSetupOf(sourceFolder: string, guest: GuestRecord): Promise<GuestSetup> {
  const setup: GuestSetup = { user: guest.user, authorizedKeys: [...guest.authorizedKeys], identityFile: guest.identityFile };
  if (guest.userDataFile !== null) setup.userData = await readFile(join(sourceFolder, guest.userDataFile), 'utf8');
  return setup;
}

/** Where `ssh` reaches the running machine: its SSH forward on 127.0.0.1, user, key and known_hosts. */
export function sshTargetOf(folder: string, m: Manifest, forwards: readonly BoundForward[], user?: string): SshTarget {
  const ssh = forwards.find((f) => f.guestPort === SSH_GUEST_PORT);
  if (ssh === undefined) throw new MachineError('NOT_RUNNING', `Machine "${m.name}" is not running: start it, then connect.`);
  const login = user ?? m.guest?.user;
  if (login === undefined || m.guest === undefined) {
    throw new MachineError('INVALID_ARGUMENT', `Machine "${m.name}" was not launched from a cloud image, so its user and keys are unknown: connect with ssh -p ${ssh.hostPort} USER@${FORWARD_HOST}.`);
  }
  return {
    host: FORWARD_HOST,
    port: ssh.hostPort,
    user: login,
    identityFile: m.guest.identityFile,
    knownHostsFile: join(folder, KNOWN_HOSTS_FILE),
    hostKeyAlias: hostKeyAlias(m.id),
  };
}

/**
 * Waits until the machine's SSH server answers on its forward (a boot takes a while, a first boot with cloud-init
 * longer); SSH_TIMEOUT names the serial log, where the guest's boot and cloud-init messages are.
 */
export async function waitForGuestSsh(
  target: SshTarget,
  m: Manifest,
  serialLog: string,
  options: { timeoutMs: number; signal?: AbortSignal; onWaiting?: () => void },
): Promise<void> {
  try {
    await waitForSsh(target.host, target.port, {
      timeoutMs: options.timeoutMs,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      onAttempt: ({ attempt }) => {
        if (attempt === 2) options.onWaiting?.();
      },
    });
  } catch (e) {
    if (isSshError(e) && e.code === 'TIMEOUT') {
      throw new MachineError('SSH_TIMEOUT', `Machine "${m.name}" did not accept SSH within ${Math.round(options.timeoutMs / 1000)} s: see its serial log ${serialLog} for how far it booted.`, [], { cause: e });
    }
    if (isSshError(e) && e.code === 'ABORTED') throw new MachineError('ABORTED', `Stopped waiting for machine "${m.name}" to accept SSH.`, [], { cause: e });
    throw e;
  }
}
