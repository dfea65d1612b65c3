import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ed25519PublicKeyFromPrivate, generateEd25519KeyPair, isSshError, parsePublicKey, publicKeyFingerprint } from '../../../src/engine/ssh';
import { requireOpenSsh } from './openssh-fixtures';

function keygen(args: string[]): string {
  const r = spawnSync('ssh-keygen', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ssh-keygen ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout.trim();
}

describe('SSH keys in OpenSSH formats', function () {
  let dir: string;
  beforeEach(function () {
    requireOpenSsh(this, ['ssh-keygen']);
    dir = mkdtempSync(join(tmpdir(), 'vmsnap-keys-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function writeKey(name: string, text: string): string {
    const file = join(dir, name);
    writeFileSync(file, text, { mode: 0o600 });
    return file;
  }

  it('ssh-keygen derives the same public key from the generated private key, for every padding length', function () {
    // Comments of 0..9 bytes move the private section through every padding length (block size 8).
    for (let n = 0; n < 10; n++) {
      const comment = 'c'.repeat(n);
      const pair = generateEd25519KeyPair(comment);
      const file = writeKey(`k${n}`, pair.privateKey);
      assert.equal(keygen(['-y', '-f', file]), pair.publicKey);
      assert.match(pair.publicKey, n === 0 ? /^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/]+$/ : new RegExp(`^ssh-ed25519 AAAA\\S+ ${comment}$`));
    }
  });

  it('is the PEM-armoured openssh-key-v1 format, wrapped at 70 columns like ssh-keygen writes it', function () {
    const { privateKey } = generateEd25519KeyPair('me@host');
    const lines = privateKey.split('\n');
    assert.equal(lines[0], '-----BEGIN OPENSSH PRIVATE KEY-----');
    assert.equal(lines.at(-2), '-----END OPENSSH PRIVATE KEY-----');
    assert.equal(lines.at(-1), '');
    for (const l of lines.slice(1, -3)) assert.equal(l.length, 70);
    assert.ok(Buffer.from(lines.slice(1, -2).join(''), 'base64').toString('latin1').startsWith('openssh-key-v1\0'));
  });

  it('fingerprints match ssh-keygen -l for the private key file and the public key file', function () {
    const pair = generateEd25519KeyPair('alice@example');
    const priv = writeKey('id', pair.privateKey);
    writeFileSync(`${priv}.pub`, `${pair.publicKey}\n`);
    const expected = `256 ${publicKeyFingerprint(pair.publicKey)} alice@example (ED25519)`;
    assert.equal(keygen(['-l', '-f', priv]), expected);
    assert.equal(keygen(['-l', '-f', `${priv}.pub`]), expected);
  });

  it('every call makes a new key', function () {
    const a = generateEd25519KeyPair('x');
    const b = generateEd25519KeyPair('x');
    assert.notEqual(a.publicKey, b.publicKey);
    assert.notEqual(a.privateKey, b.privateKey);
  });

  it('a comment with a newline is refused (it would split the public key line)', function () {
    assert.throws(() => generateEd25519KeyPair('a\nb'), (e: unknown) => isSshError(e) && e.code === 'INVALID_ARGUMENT');
  });

  it('reads back a private key made by ssh-keygen, and its own', function () {
    const file = join(dir, 'made-by-keygen');
    keygen(['-q', '-t', 'ed25519', '-N', '', '-C', 'from keygen', '-f', file]);
    assert.equal(ed25519PublicKeyFromPrivate(readFileSync(file, 'utf8')), readFileSync(`${file}.pub`, 'utf8').trim());
    const own = generateEd25519KeyPair('own');
    assert.equal(ed25519PublicKeyFromPrivate(own.privateKey), own.publicKey);
  });

  it('refuses a passphrase-protected key, a damaged key and a non-key', function () {
    const file = join(dir, 'protected');
    keygen(['-q', '-t', 'ed25519', '-N', 'secret pass', '-f', file]);
    const invalid = (e: unknown): boolean => isSshError(e) && e.code === 'INVALID_KEY';
    assert.throws(() => ed25519PublicKeyFromPrivate(readFileSync(file, 'utf8')), (e: unknown) => invalid(e) && /passphrase/.test((e as Error).message));
    // Flip one byte of the seed: the public half no longer follows from it.
    const { privateKey } = generateEd25519KeyPair('x');
    const body = Buffer.from(privateKey.split('\n').slice(1, -2).join(''), 'base64');
    const secretStart = body.indexOf(Buffer.from([0, 0, 0, 64])) + 4; // the 64-byte secret: seed, then public half
    assert.ok(secretStart > 4);
    body[secretStart] = (body[secretStart] ?? 0) ^ 0xff;
    const damaged = `-----BEGIN OPENSSH PRIVATE KEY-----\n${body.toString('base64')}\n-----END OPENSSH PRIVATE KEY-----\n`;
    assert.throws(() => ed25519PublicKeyFromPrivate(damaged), invalid);
    assert.throws(() => ed25519PublicKeyFromPrivate(privateKey.slice(0, 120) + '\n-----END OPENSSH PRIVATE KEY-----\n'), invalid);
    assert.throws(() => ed25519PublicKeyFromPrivate('hello'), invalid);
  });

  it('parses the public keys ssh-keygen makes (ed25519, ecdsa, rsa) and refuses lines that only look like one', function () {
    for (const type of ['ed25519', 'ecdsa', 'rsa']) {
      const file = join(dir, `id_${type}`);
      keygen(['-q', '-t', type, '-N', '', '-C', `me ${type}`, '-f', file]);
      const line = readFileSync(`${file}.pub`, 'utf8');
      const key = parsePublicKey(line);
      assert.equal(key.comment, `me ${type}`);
      assert.equal(`${publicKeyFingerprint(line)}`, keygen(['-l', '-f', `${file}.pub`]).split(' ')[1]);
    }
    const ed = generateEd25519KeyPair('').publicKey;
    const invalid = (e: unknown): boolean => isSshError(e) && e.code === 'INVALID_KEY';
    assert.throws(() => parsePublicKey(''), invalid);
    assert.throws(() => parsePublicKey('ssh-dss AAAAB3NzaC1kc3M='), invalid);
    assert.throws(() => parsePublicKey(ed.replace('ssh-ed25519', 'ssh-rsa')), invalid);
    assert.throws(() => parsePublicKey('ssh-ed25519 not*base64'), invalid);
  });
});
