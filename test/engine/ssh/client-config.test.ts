import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  generateEd25519KeyPair,
  hostKeyAlias,
  isSshError,
  knownHostsLine,
  readKnownHosts,
  sshArgs,
  sshConfigBlock,
  sshHostName,
  writeKnownHosts,
  type SshTarget,
} from '../../../src/engine/ssh';
import { awkwardTempDir, requireOpenSsh } from './openssh-fixtures';

/** What ssh itself makes of its arguments (`ssh -G`: resolve the configuration, print it, connect to nothing). */
function resolved(args: string[]): Map<string, string> {
  const r = spawnSync('ssh', ['-G', ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ssh -G ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  const options = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const at = line.indexOf(' ');
    if (at > 0) options.set(line.slice(0, at), line.slice(at + 1));
  }
  return options;
}

const invalidArgument = (e: unknown): boolean => isSshError(e) && e.code === 'INVALID_ARGUMENT';

describe('how ssh is told to reach a machine', function () {
  let dir: string;
  let target: SshTarget;
  beforeEach(function () {
    dir = awkwardTempDir('vmsnap-sshcfg');
    target = {
      host: '127.0.0.1',
      port: 40022,
      user: 'dev',
      identityFile: join(dir, 'keys', 'id_ed25519'),
      knownHostsFile: join(dir, 'machines', 'dev "main"', 'known_hosts'),
      hostKeyAlias: hostKeyAlias('7F3B2C1A-0000-4000-8000-000000000001'),
    };
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('ssh reads the argument list as meant, paths with spaces, quotes and % included', function () {
    requireOpenSsh(this, ['ssh']);
    const args = sshArgs(target, { batchMode: true, connectTimeoutSeconds: 5 });
    const got = resolved(args);
    assert.equal(got.get('hostname'), '127.0.0.1');
    assert.equal(got.get('port'), '40022');
    assert.equal(got.get('user'), 'dev');
    // `ssh -G` prints IdentityFile before its % expansion; the sshd test shows the key is then found.
    assert.equal(got.get('identityfile'), target.identityFile.replace(/%/g, '%%'));
    assert.equal(got.get('identitiesonly'), 'yes');
    assert.equal(got.get('hostkeyalias'), 'vmsnap-7f3b2c1a-0000-4000-8000-000000000001');
    assert.equal(got.get('userknownhostsfile'), target.knownHostsFile);
    assert.equal(got.get('globalknownhostsfile'), target.knownHostsFile);
    assert.equal(got.get('stricthostkeychecking'), 'true');
    assert.equal(got.get('updatehostkeys'), 'false');
    assert.equal(got.get('batchmode'), 'yes');
    assert.equal(got.get('connecttimeout'), '5');
    assert.equal(resolved(sshArgs(target)).get('batchmode'), 'no');
  });

  it('a remote command comes after `--` and the host, so it is never read as ssh options', function () {
    requireOpenSsh(this, ['ssh']);
    const args = sshArgs(target, { command: ['-v', 'echo', 'ok'] });
    assert.deepEqual(args.slice(-3), ['--', '127.0.0.1', '-v echo ok']);
    // `ssh -G` would set LogLevel DEBUG1 if `-v` after the host were taken as an option.
    assert.equal(resolved(args).get('loglevel'), 'INFO');
  });

  it('ssh -F reads the config block the same way', function () {
    requireOpenSsh(this, ['ssh']);
    const block = sshConfigBlock('Dev VM (main)', target);
    assert.match(block, /^Host vmsnap-dev-vm-main\n/);
    const config = join(dir, 'config');
    writeFileSync(config, block);
    const got = resolved(['-F', config, 'vmsnap-dev-vm-main']);
    assert.equal(got.get('hostname'), '127.0.0.1');
    assert.equal(got.get('port'), '40022');
    assert.equal(got.get('user'), 'dev');
    assert.equal(got.get('identityfile'), target.identityFile.replace(/%/g, '%%'));
    assert.equal(got.get('identitiesonly'), 'yes');
    assert.equal(got.get('hostkeyalias'), target.hostKeyAlias);
    assert.equal(got.get('userknownhostsfile'), target.knownHostsFile);
    assert.equal(got.get('globalknownhostsfile'), target.knownHostsFile);
    assert.equal(got.get('stricthostkeychecking'), 'true');
    // Another host in the same file gets none of it.
    assert.equal(resolved(['-F', config, 'elsewhere']).get('hostkeyalias'), undefined);
  });

  it('host names are lowercase ASCII from any machine name', function () {
    assert.equal(sshHostName('dev'), 'vmsnap-dev');
    assert.equal(sshHostName('Café Ω 2'), 'vmsnap-cafe-2');
    assert.equal(sshHostName('a/../b*c'), 'vmsnap-a-b-c');
    assert.throws(() => sshHostName('Ω'), invalidArgument);
  });

  it('refuses what ssh would misread: relative paths, ${VAR} in paths, option-like users, bad ports and aliases', function () {
    assert.throws(() => sshArgs({ ...target, identityFile: 'id_ed25519' }), invalidArgument);
    assert.throws(() => sshArgs({ ...target, knownHostsFile: join(dir, '${HOME}', 'k') }), invalidArgument);
    assert.throws(() => sshArgs({ ...target, knownHostsFile: join(dir, 'a\nb') }), invalidArgument);
    assert.throws(() => sshArgs({ ...target, user: '-oProxyCommand=x' }), invalidArgument);
    assert.throws(() => sshArgs({ ...target, user: 'a b' }), invalidArgument);
    assert.throws(() => sshArgs({ ...target, host: '-oProxyCommand=x' }), invalidArgument);
    assert.throws(() => sshArgs({ ...target, port: 0 }), invalidArgument);
    assert.throws(() => sshArgs({ ...target, port: 65536 }), invalidArgument);
    assert.throws(() => sshArgs({ ...target, hostKeyAlias: 'a*' }), invalidArgument);
    assert.throws(() => knownHostsLine('two words', generateEd25519KeyPair('').publicKey), invalidArgument);
  });

  it('known_hosts: one line per host key under the alias, comments dropped, written whole and read back', async function () {
    const a = generateEd25519KeyPair('host a');
    const b = generateEd25519KeyPair('host b');
    const alias = target.hostKeyAlias;
    assert.equal(knownHostsLine(alias, a.publicKey), `${alias} ${a.publicKey.split(' ').slice(0, 2).join(' ')}`);
    const file = join(mkdtempSync(join(tmpdir(), 'vmsnap-kh-')), 'known_hosts');
    try {
      assert.deepEqual(await readKnownHosts(file, alias), []);
      await writeKnownHosts(file, alias, [a.publicKey, b.publicKey]);
      assert.deepEqual(await readKnownHosts(file, alias), [a, b].map((k) => k.publicKey.split(' ').slice(0, 2).join(' ')));
      assert.deepEqual(await readKnownHosts(file, 'vmsnap-other'), []);
      await writeKnownHosts(file, alias, [b.publicKey]);
      assert.equal(readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith(alias)).length, 1);
      await assert.rejects(writeKnownHosts(file, alias, []), invalidArgument);
    } finally {
      rmSync(join(file, '..'), { recursive: true, force: true });
    }
  });

  it('ssh-keygen -F finds the key under the alias in the written file', async function () {
    requireOpenSsh(this, ['ssh-keygen']);
    const key = generateEd25519KeyPair('');
    const file = join(dir, 'known_hosts');
    await writeKnownHosts(file, target.hostKeyAlias, [key.publicKey]);
    const r = spawnSync('ssh-keygen', ['-F', target.hostKeyAlias, '-f', file], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stdout.includes(key.publicKey));
  });
});
