import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findUserPublicKey, generateEd25519KeyPair, isSshError, libraryKeyPair } from '../../../src/engine/ssh';
import { requireOpenSsh } from './openssh-fixtures';

describe('the key a user logs in with', function () {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vmsnap-userkeys-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  describe('findUserPublicKey', function () {
    function putKey(home: string, name: string, text = generateEd25519KeyPair(name).publicKey + '\n'): void {
      mkdirSync(join(home, '.ssh'), { recursive: true });
      writeFileSync(join(home, '.ssh', `${name}.pub`), text);
    }

    it('takes id_ed25519, then id_ecdsa, then id_rsa, with the private key path beside it', async function () {
      putKey(dir, 'id_rsa');
      putKey(dir, 'id_ecdsa');
      let found = await findUserPublicKey(dir);
      assert.equal(found?.publicKeyPath, join(dir, '.ssh', 'id_ecdsa.pub'));
      assert.equal(found?.privateKeyPath, join(dir, '.ssh', 'id_ecdsa'));
      putKey(dir, 'id_ed25519');
      found = await findUserPublicKey(dir);
      assert.equal(found?.privateKeyPath, join(dir, '.ssh', 'id_ed25519'));
      assert.equal(found?.publicKey, readFileSync(join(dir, '.ssh', 'id_ed25519.pub'), 'utf8').trim());
    });

    it('passes over a file that is not a public key, and answers null when there is none', async function () {
      assert.equal(await findUserPublicKey(dir), null);
      putKey(dir, 'id_ed25519', 'not a key\n');
      assert.equal(await findUserPublicKey(dir), null);
      putKey(dir, 'id_rsa');
      assert.equal((await findUserPublicKey(dir))?.privateKeyPath, join(dir, '.ssh', 'id_rsa'));
    });
  });

  describe('libraryKeyPair', function () {
    it('is made once, private 0600 in a 0700 folder, and the same key on every later call', async function () {
      requireOpenSsh(this, ['ssh-keygen']);
      const first = await libraryKeyPair(dir, 'vmsnap test');
      assert.equal(first.generated, true);
      assert.equal(first.privateKeyPath, join(dir, '.ssh', 'id_ed25519'));
      if (process.platform !== 'win32') {
        assert.equal(statSync(join(dir, '.ssh')).mode & 0o777, 0o700);
        assert.equal(statSync(first.privateKeyPath).mode & 0o777, 0o600);
      }
      const derived = spawnSync('ssh-keygen', ['-y', '-f', first.privateKeyPath], { encoding: 'utf8' });
      assert.equal(derived.stdout.trim(), first.publicKey);
      assert.equal(readFileSync(first.publicKeyPath, 'utf8'), `${first.publicKey}\n`);
      const again = await libraryKeyPair(dir, 'another comment');
      assert.deepEqual(again, { ...first, generated: false });
      assert.deepEqual(readdirSync(join(dir, '.ssh')).sort(), ['id_ed25519', 'id_ed25519.pub']);
    });

    it('concurrent first calls agree on one key', async function () {
      const all = await Promise.all(Array.from({ length: 6 }, () => libraryKeyPair(dir)));
      assert.equal(new Set(all.map((k) => k.publicKey)).size, 1);
      assert.equal(all.filter((k) => k.generated).length, 1);
      assert.deepEqual(readdirSync(join(dir, '.ssh')).sort(), ['id_ed25519', 'id_ed25519.pub']);
    });

    it('restores a missing or different .pub from the private key, and tightens a private key others can read', async function () {
      const first = await libraryKeyPair(dir);
      unlinkSync(first.publicKeyPath);
      assert.equal((await libraryKeyPair(dir)).publicKey, first.publicKey);
      writeFileSync(first.publicKeyPath, generateEd25519KeyPair('other').publicKey);
      await libraryKeyPair(dir);
      assert.equal(readFileSync(first.publicKeyPath, 'utf8'), `${first.publicKey}\n`);
      if (process.platform !== 'win32') {
        spawnSync('chmod', ['644', first.privateKeyPath]);
        await libraryKeyPair(dir);
        assert.equal(statSync(first.privateKeyPath).mode & 0o777, 0o600);
      }
    });

    it('a damaged key is reported, never silently replaced (machines may trust it)', async function () {
      const first = await libraryKeyPair(dir);
      const damaged = readFileSync(first.privateKeyPath, 'utf8').slice(0, 100);
      writeFileSync(first.privateKeyPath, damaged);
      await assert.rejects(libraryKeyPair(dir), (e: unknown) => isSshError(e) && e.code === 'INVALID_KEY' && e.message.includes(first.privateKeyPath));
      assert.equal(readFileSync(first.privateKeyPath, 'utf8'), damaged);
    });
  });
});
