// OpenSSH key formats, natively: ed25519 key pairs in the openssh-key-v1 private format and the one-line public
// format, public key lines read back and checked, and SHA256 fingerprints as `ssh-keygen -l` prints them.
// The private format is the one in OpenSSH's PROTOCOL.key (unencrypted: cipher and kdf "none").
import { createHash, createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { SshError } from './errors';

export interface KeyPair {
  /** `-----BEGIN OPENSSH PRIVATE KEY-----` … with a trailing newline; ssh refuses it unless the file is 0600. */
  privateKey: string;
  /** `ssh-ed25519 AAAA… comment` with no trailing newline. */
  publicKey: string;
}

export interface PublicKey {
  type: string;
  /** The key blob (what the base64 field encodes). */
  blob: Buffer;
  comment: string;
}

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const END = '-----END OPENSSH PRIVATE KEY-----';
const ED25519 = 'ssh-ed25519';
// An unencrypted private section is padded to the "none" cipher's block size.
const BLOCK_SIZE = 8;

/** Key types OpenSSH accepts in authorized_keys and known_hosts (certificates are not used here). */
const PUBLIC_KEY_TYPES = new Set([
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
]);

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f\u2028\u2029]/u;

/** A new ed25519 key pair; `comment` goes into both halves (as ssh-keygen -C does) and must be one line. */
export function generateEd25519KeyPair(comment: string): KeyPair {
  if (CONTROL.test(comment)) {
    throw new SshError('INVALID_ARGUMENT', 'The key comment contains a control character (such as a newline): remove it.');
  }
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  if (typeof jwk.d !== 'string' || typeof jwk.x !== 'string') throw new Error('node:crypto exported an ed25519 key without d or x.');
  const seed = Buffer.from(jwk.d, 'base64url');
  const pub = Buffer.from(jwk.x, 'base64url');
  return { privateKey: encodePrivateKey(seed, pub, comment), publicKey: formatPublicKey(ED25519, ed25519Blob(pub), comment) };
}

/**
 * Reads an unencrypted openssh-key-v1 ed25519 private key and returns its public line (with the key's own
 * comment). Checks what ssh would: magic, cipher, check ints, that the stored public half matches the seed.
 */
export function ed25519PublicKeyFromPrivate(privateKey: string): string {
  const text = privateKey.trim();
  if (!text.startsWith(BEGIN) || !text.endsWith(END)) throw invalidKey('it is not an OpenSSH private key');
  const body = Buffer.from(text.slice(BEGIN.length, -END.length).replace(/\s+/g, ''), 'base64');
  if (!body.subarray(0, MAGIC.length).equals(MAGIC)) throw invalidKey('it is not in the openssh-key-v1 format');
  const r = new WireReader(body, MAGIC.length);
  const cipher = r.string().toString('latin1');
  const kdf = r.string().toString('latin1');
  r.string(); // kdf options
  if (cipher !== 'none' || kdf !== 'none') throw invalidKey('it is protected by a passphrase');
  if (r.uint32() !== 1) throw invalidKey('it holds more than one key');
  const outerBlob = r.string();
  const s = new WireReader(r.string());
  if (s.uint32() !== s.uint32()) throw invalidKey('its check numbers differ (damaged)');
  if (s.string().toString('latin1') !== ED25519) throw invalidKey('it is not an ed25519 key');
  const pub = s.string();
  const secret = s.string();
  const comment = s.string().toString('utf8');
  if (pub.length !== 32 || secret.length !== 64 || !secret.subarray(32).equals(pub)) throw invalidKey('its key data is damaged');
  const blob = ed25519Blob(pub);
  if (!outerBlob.equals(blob)) throw invalidKey('its public and private halves differ');
  // The seed must really produce that public half: a flipped byte in either would otherwise pass.
  const derived = createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: secret.subarray(0, 32).toString('base64url'), x: pub.toString('base64url') }, format: 'jwk' });
  const x = derived.export({ format: 'jwk' }).x;
  if (x === undefined || !Buffer.from(x, 'base64url').equals(pub)) throw invalidKey('its seed does not match its public half');
  return formatPublicKey(ED25519, blob, comment);
}

/** Parses `TYPE BASE64 [comment]` (an id_*.pub file or an authorized_keys line without options). */
export function parsePublicKey(line: string): PublicKey {
  const fields = line.trim().split(/[ \t]+/);
  const [type, base64] = fields;
  if (type === undefined || base64 === undefined || !PUBLIC_KEY_TYPES.has(type)) {
    throw new SshError('INVALID_KEY', `Not an SSH public key ("${line.trim().slice(0, 40)}…"): expected a line such as "ssh-ed25519 AAAA… comment".`);
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) throw new SshError('INVALID_KEY', `The ${type} public key's data is not base64.`);
  const blob = Buffer.from(base64, 'base64');
  let inner: string;
  try {
    inner = new WireReader(blob).string().toString('latin1');
  } catch {
    inner = '';
  }
  if (inner !== type) throw new SshError('INVALID_KEY', `The public key says ${type} but its data is not a ${type} key.`);
  const comment = fields.slice(2).join(' ');
  if (CONTROL.test(comment)) throw new SshError('INVALID_KEY', 'The public key comment contains a control character.');
  return { type, blob, comment };
}

/** `SHA256:…` as `ssh-keygen -l` prints it, for telling a user which key is used. */
export function publicKeyFingerprint(publicKey: string): string {
  const { blob } = parsePublicKey(publicKey);
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

function formatPublicKey(type: string, blob: Buffer, comment: string): string {
  return comment === '' ? `${type} ${blob.toString('base64')}` : `${type} ${blob.toString('base64')} ${comment}`;
}

function ed25519Blob(pub: Buffer): Buffer {
  return Buffer.concat([wireString(ED25519), wireString(pub)]);
}

function encodePrivateKey(seed: Buffer, pub: Buffer, comment: string): string {
  const check = randomBytes(4);
  const section = Buffer.concat([
    check,
    check,
    wireString(ED25519),
    wireString(pub),
    wireString(Buffer.concat([seed, pub])),
    wireString(comment),
  ]);
  // Padding bytes are 1, 2, 3, … (ssh checks them).
  const padLength = (BLOCK_SIZE - (section.length % BLOCK_SIZE)) % BLOCK_SIZE;
  const padding = Buffer.from(Array.from({ length: padLength }, (_, i) => i + 1));
  const body = Buffer.concat([
    MAGIC,
    wireString('none'),
    wireString('none'),
    wireString(''),
    wireUint32(1),
    wireString(ed25519Blob(pub)),
    wireString(Buffer.concat([section, padding])),
  ]);
  // ssh-keygen wraps at 70 columns.
  const lines = body.toString('base64').match(/.{1,70}/g) ?? [];
  return `${BEGIN}\n${lines.join('\n')}\n${END}\n`;
}

function wireUint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function wireString(data: string | Buffer): Buffer {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  return Buffer.concat([wireUint32(bytes.length), bytes]);
}

function invalidKey(why: string): SshError {
  return new SshError('INVALID_KEY', `The private key cannot be used: ${why}.`);
}

/** Reads SSH wire types (RFC 4251 §5) and fails on truncation instead of reading past the end. */
class WireReader {
  constructor(
    private readonly buf: Buffer,
    private pos = 0,
  ) {}

  uint32(): number {
    if (this.pos + 4 > this.buf.length) throw invalidKey('it is truncated');
    const n = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return n;
  }

  string(): Buffer {
    const n = this.uint32();
    if (this.pos + n > this.buf.length) throw invalidKey('it is truncated');
    const s = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
}
