/**
 * The guest's SSH host key, made on the host before first boot so the host knows it before first contact:
 * generated with Node's crypto (no ssh-keygen needed) in OpenSSH's own formats, and checked when a caller brings
 * its own pair (the private key must be unencrypted, since sshd cannot ask for a passphrase, and must match).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
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

const KEY_TYPE = 'ssh-ed25519';
const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const PEM_BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const PEM_END = '-----END OPENSSH PRIVATE KEY-----';

/** A fresh ed25519 host key pair in OpenSSH formats (the layout of PROTOCOL.key, cipher "none"). */
export function generateHostKeys(comment = 'vmsnap-host-key'): HostKeys {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = Buffer.from(publicKey.export({ format: 'jwk' }).x ?? '', 'base64url');
  const seed = Buffer.from(privateKey.export({ format: 'jwk' }).d ?? '', 'base64url');
  const publicBlob = Buffer.concat([sshString(KEY_TYPE), sshString(pub)]);
  const check = randomBytes(4);
  let secret = Buffer.concat([check, check, sshString(KEY_TYPE), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  const pad = (8 - (secret.length % 8)) % 8;
  secret = Buffer.concat([secret, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
  const body = Buffer.concat([
    MAGIC,
    sshString('none'),
    sshString('none'),
    sshString(''),
    uint32(1),
    sshString(publicBlob),
    sshString(secret),
  ]).toString('base64');
  const lines = body.match(/.{1,70}/g) ?? [];
  return {
    ed25519: {
      privateKey: `${PEM_BEGIN}\n${lines.join('\n')}\n${PEM_END}\n`,
      publicKey: `${KEY_TYPE} ${publicBlob.toString('base64')} ${comment}`,
    },
  };
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
  if (/[\r\n\0]/.test(publicKey) || fields[0] !== KEY_TYPE || fields.length < 2 || !/^AAAA[A-Za-z0-9+/]+={0,3}$/.test(fields[1] ?? '')) {
    throw new SeedError('INVALID_KEY', 'The ed25519 host public key must be one line "ssh-ed25519 AAAA… [comment]".');
  }
  const privateKey = pair.privateKey.replace(/\r\n/g, '\n').trim() + '\n';
  const embedded = privateKeyPublicBlob(privateKey);
  if (!embedded.equals(Buffer.from(fields[1] ?? '', 'base64'))) {
    throw new SeedError('INVALID_KEY', 'The ed25519 host private key does not belong to the given public key.');
  }
  return { ed25519: { privateKey, publicKey } };
}

/** The public key blob stored in an unencrypted OpenSSH private key. */
function privateKeyPublicBlob(pem: string): Buffer {
  const bad = (why: string) => new SeedError('INVALID_KEY', `The ed25519 host private key ${why}.`);
  const lines = pem.trim().split('\n');
  if (lines[0] !== PEM_BEGIN || lines[lines.length - 1] !== PEM_END) {
    throw bad(`must be in OpenSSH format ("${PEM_BEGIN}")`);
  }
  const body = lines.slice(1, -1).join('');
  if (!/^[A-Za-z0-9+/]*={0,3}$/.test(body)) throw bad('is not valid base64');
  const data = Buffer.from(body, 'base64');
  const reader = new SshReader(data);
  if (!reader.take(MAGIC.length).equals(MAGIC)) throw bad('is not an openssh-key-v1 key');
  const cipher = reader.string().toString('latin1');
  if (cipher !== 'none') throw bad('is encrypted: sshd cannot ask for a passphrase, give an unencrypted key');
  reader.string(); // kdf name
  reader.string(); // kdf options
  if (reader.uint32() !== 1) throw bad('must hold exactly one key');
  const blob = reader.string();
  const type = new SshReader(blob).string().toString('latin1');
  if (type !== KEY_TYPE) throw bad(`is a ${type} key, not ${KEY_TYPE}`);
  if (!reader.ok) throw bad('is truncated');
  return blob;
}

class SshReader {
  private offset = 0;
  ok = true;
  constructor(private readonly data: Buffer) {}
  take(n: number): Buffer {
    if (this.offset + n > this.data.length) {
      this.ok = false;
      this.offset = this.data.length;
      return Buffer.alloc(0);
    }
    const b = this.data.subarray(this.offset, this.offset + n);
    this.offset += n;
    return b;
  }
  uint32(): number {
    const b = this.take(4);
    return b.length === 4 ? b.readUInt32BE(0) : 0;
  }
  string(): Buffer {
    return this.take(this.uint32());
  }
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n, 0);
  return b;
}

function sshString(v: string | Buffer): Buffer {
  const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
  return Buffer.concat([uint32(b.length), b]);
}
