// The key a user logs into their machines with: their own (~/.ssh/id_*.pub) when they have one, else a key pair
// generated once for the library and kept in it.
import { hostname } from 'node:os';
import { chmod, link, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isSshError, SshError } from './errors';
import { exists, fsyncDir, temporaryNameFor } from '../os';
import { atomicReplace, toSshIoError, writeNewFile } from './files';
import { ed25519PublicKeyFromPrivate, generateEd25519KeyPair, parsePublicKey } from './openssh-key';

export interface UserKey {
  /** The public key line, as read (`ssh-ed25519 AAAA… comment`). */
  publicKey: string;
  publicKeyPath: string;
  /** Where ssh finds the private half (`-i`); it may live only in an agent or a hardware token instead. */
  privateKeyPath: string;
}

export interface LibraryKey extends UserKey {
  /** True when this call made the key pair (the caller says so to the user), false when it existed. */
  generated: boolean;
}

/** In the order OpenSSH's own defaults prefer them (the order); DSA is long gone. */
const USER_KEY_NAMES = ['id_ed25519', 'id_ecdsa', 'id_rsa'] as const;

/**
 * The first of ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub that holds a valid public key, or null. A file
 * that is missing, unreadable or not a public key is passed over (it could not log anyone in).
 */
export async function findUserPublicKey(homeDir: string): Promise<UserKey | null> {
  for (const name of USER_KEY_NAMES) {
    const privateKeyPath = join(homeDir, '.ssh', name);
    const publicKeyPath = `${privateKeyPath}.pub`;
    let text: string;
    try {
      text = await readFile(publicKeyPath, 'utf8');
    } catch {
      continue;
    }
    const line = text.split(/\r?\n/).find((l) => l.trim() !== '' && !l.startsWith('#'));
    if (line === undefined) continue;
    try {
      parsePublicKey(line);
    } catch {
      continue;
    }
    return { publicKey: line.trim(), publicKeyPath, privateKeyPath };
  }
  return null;
}

/**
 * The library's own key pair (`<library>/.ssh/id_ed25519`, 0600, in a 0700 folder): made on the first call and
 * returned as it is on every later one, never replaced. The private key is the truth: the `.pub` beside it is
 * rewritten from it when missing or different. Safe against a concurrent first call in another process: the
 * new key is published with link() (which never replaces), so both callers end up with the same key.
 */
export async function libraryKeyPair(libraryDir: string, comment = `vmsnap@${hostname()}`): Promise<LibraryKey> {
  const dir = join(libraryDir, '.ssh');
  const privateKeyPath = join(dir, 'id_ed25519');
  const publicKeyPath = `${privateKeyPath}.pub`;
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    if (process.platform !== 'win32') await chmod(dir, 0o700);
    let generated = false;
    if (!(await exists(privateKeyPath))) {
      generated = await publishNewKey(privateKeyPath, generateEd25519KeyPair(comment).privateKey);
    }
    const privateKey = await readFile(privateKeyPath, 'utf8');
    let publicKey: string;
    try {
      publicKey = ed25519PublicKeyFromPrivate(privateKey);
    } catch (e) {
      const why = isSshError(e) ? e.message : String(e);
      throw new SshError('INVALID_KEY', `The library's SSH key ${privateKeyPath} is damaged (${why}): move it away and a new one is made, then give machines the new public key.`, null, { cause: e });
    }
    // ssh refuses a private key others can read ("UNPROTECTED PRIVATE KEY FILE").
    if (process.platform !== 'win32' && ((await stat(privateKeyPath)).mode & 0o077) !== 0) await chmod(privateKeyPath, 0o600);
    const onDisk = await readFile(publicKeyPath, 'utf8').catch(() => null);
    if (onDisk?.trim() !== publicKey) await atomicReplace(publicKeyPath, `${publicKey}\n`, 0o644);
    return { publicKey, publicKeyPath, privateKeyPath, generated };
  } catch (e) {
    throw toSshIoError(e, `Preparing the library's SSH key in ${dir}`);
  }
}


/** Puts a new private key at `path` unless one appeared meanwhile; true when ours is the one that stays. */
async function publishNewKey(path: string, privateKey: string): Promise<boolean> {
  const tmp = temporaryNameFor(path);
  try {
    await writeNewFile(tmp, privateKey, 0o600);
    try {
      await link(tmp, path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return false; // another process made it first: use theirs
      // File systems without hard links: an exclusive create still never replaces a key (a crash mid-write can
      // leave a short file, which the next call reports as damaged instead of replacing).
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
      try {
        await writeNewFile(path, privateKey, 0o600);
      } catch (e2) {
        if ((e2 as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw e2;
      }
    }
    await fsyncDir(join(path, '..'));
    return true;
  } finally {
    await rm(tmp, { force: true }).catch(() => {});
  }
}
