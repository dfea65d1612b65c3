/**
 * The guest's SSH host key, made on the host before first boot so the host knows it before first contact, in
 * OpenSSH's own formats (the ssh package's codec: no ssh-keygen needed); and the check of a pair a caller brings
 * (the private key must be unencrypted, since sshd cannot ask for a passphrase, and must match the public one).
 */
import { ed25519PublicKeyFromPrivate, generateEd25519KeyPair, isSshError } from '../ssh';
import { SeedError } from './errors';

export interface HostKeyPair {
  /** OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`), unencrypted. */
  privateKey: string;
  /** One line: `ssh-ed25519 AAAA… [comment]`. */
  publicKey: string;
}

export interface HostKeys {
  ed25519: HostKeyPair;
}

/** A fresh ed25519 host key pair. */
export function generateHostKeys(comment = 'vmsnap-host-key'): HostKeys {
  return { ed25519: generateEd25519KeyPair(comment) };
}

/**
 * Checks an ed25519 host key pair and returns it normalised (LF line ends, final newline on the private key,
 * no surrounding blanks on the public one). Throws INVALID_KEY naming what is wrong.
 */
export function checkHostKeys(keys: HostKeys): HostKeys {
  const pair = keys?.ed25519;
  if (!pair || typeof pair.privateKey !== 'string' || typeof pair.publicKey !== 'string') {
    throw new SeedError('INVALID_KEY', 'The host keys need an ed25519 pair (privateKey and publicKey).');
  }
  const publicKey = pair.publicKey.trim();
  const fields = publicKey.split(' ');
  if (/[\r\n\0]/.test(publicKey) || fields[0] !== 'ssh-ed25519' || fields.length < 2 || !/^AAAA[A-Za-z0-9+/]+={0,3}$/.test(fields[1] ?? '')) {
    throw new SeedError('INVALID_KEY', 'The ed25519 host public key must be one line "ssh-ed25519 AAAA… [comment]".');
  }
  const privateKey = pair.privateKey.replace(/\r\n/g, '\n').trim() + '\n';
  let derived: string;
  try {
    derived = ed25519PublicKeyFromPrivate(privateKey);
  } catch (e) {
    if (!isSshError(e)) throw e;
    const why = /passphrase/.test(e.message) ? 'is encrypted: sshd cannot ask for a passphrase, give an unencrypted key' : `cannot be used (${e.message})`;
    throw new SeedError('INVALID_KEY', `The ed25519 host private key ${why}.`);
  }
  if (derived.split(' ')[1] !== fields[1]) throw new SeedError('INVALID_KEY', 'The ed25519 host private key does not belong to the given public key.');
  return { ed25519: { privateKey, publicKey } };
}
