// The seed's documents are parsed here with PyYAML's safe_load, what cloud-init 22.4 parses them with, so quoting
// mistakes (a hostile key comment, a YAML-looking value) show up as a changed value, not as a passing string test.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildSeed,
  checkHostKeys,
  defaultGuestUser,
  generateHostKeys,
  hostnameFromMachineName,
  isSeedError,
  seedFiles,
  type SeedErrorCode,
  type SeedOptions,
} from '../../../src/engine/cloud-init';
import { MACHINE_ID_SCRIPT, PASSWORD_LOGIN_OFF_SCRIPT } from '../../../src/engine/cloud-init/seed-config';
import { run, scratchDir } from '../../support/qemu';

/** A python3 with PyYAML: the one on PATH, else Debian's (python3-yaml), which a PATH python may shadow. */
const PYTHON = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import yaml']).status === 0) ?? null;

/** PyYAML safe_load, returned as JSON; without PyYAML (and not in CI) the document is read as the JSON it also is. */
function loadYaml(text: string): unknown {
  if (PYTHON === null) {
    if (process.env.VMSNAP_REQUIRE_TOOLS === '1') throw new Error('python3 with PyYAML is needed: apt-get install -y python3-yaml');
    return JSON.parse(text.replace(/^#cloud-config\n/, ''));
  }
  const r = spawnSync(PYTHON, ['-c', 'import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))'], {
    input: text,
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

const hostKeys = generateHostKeys();
const userKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ3kH1Bq0b8Xq9l4mYw6f5m2k2bq9s0q3p1f0h3x9wzY alice@laptop';

function options(overrides: Partial<SeedOptions> = {}): SeedOptions {
  return {
    instanceId: '0f8e2f4c-7f0a-4c67-9a4e-1b2a3c4d5e6f',
    hostname: 'dev',
    user: 'alice',
    authorizedKeys: [userKey],
    hostKeys,
    ...overrides,
  };
}

function refused(code: SeedErrorCode, overrides: Partial<SeedOptions>): void {
  assert.throws(
    () => buildSeed(options(overrides)),
    (e: unknown) => isSeedError(e) && e.code === code && e.message.length > 0,
    `expected ${code} for ${JSON.stringify(overrides).slice(0, 80)}`,
  );
}

describe('cloud-init seed documents', () => {
  it('meta-data names the instance and hostname', () => {
    const seed = buildSeed(options());
    assert.deepEqual(loadYaml(seed.metaData), { 'instance-id': '0f8e2f4c-7f0a-4c67-9a4e-1b2a3c4d5e6f', 'local-hostname': 'dev' });
  });

  it('default user-data: a sudo user with the key, password login off, hostname, host key, machine-id, guest agent', () => {
    const seed = buildSeed(options());
    assert.ok(seed.userData.startsWith('#cloud-config\n'), 'cloud-init recognises the part by its first line');
    assert.equal(seed.vendorData, undefined);
    const config = loadYaml(seed.userData) as Record<string, unknown>;
    assert.deepEqual(config.users, [
      {
        name: 'alice',
        groups: 'sudo',
        sudo: 'ALL=(ALL) NOPASSWD:ALL',
        shell: '/bin/bash',
        lock_passwd: true,
        ssh_authorized_keys: [userKey],
      },
    ]);
    assert.equal(config.ssh_pwauth, false);
    assert.equal(config.hostname, 'dev');
    assert.equal(config.fqdn, 'dev');
    assert.equal(config.preserve_hostname, false);
    assert.equal(config.ssh_deletekeys, true);
    assert.deepEqual(config.ssh_keys, { ed25519_private: hostKeys.ed25519.privateKey, ed25519_public: `${hostKeys.ed25519.publicKey}\n` });
    assert.deepEqual(config.packages, ['qemu-guest-agent']);
    assert.deepEqual(config.bootcmd, [
      ['cloud-init-per', 'instance', 'vmsnap-machine-id', 'sh', '-c', MACHINE_ID_SCRIPT],
      ['sh', '-c', PASSWORD_LOGIN_OFF_SCRIPT],
    ]);
    assert.ok(Array.isArray(config.runcmd) && JSON.stringify(config.runcmd).includes('qemu-guest-agent'));
  });

  it('password login is off in sshd_config before sshd starts, so cloud-init never restarts sshd for it', () => {
    const dir = scratchDir('vmsnap-sshd-config-');
    try {
      const cases: [string, string][] = [
        ['Include /etc/ssh/sshd_config.d/*.conf\n#PasswordAuthentication yes\nUsePAM yes\n', 'Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication no\nUsePAM yes\n'],
        ['UsePAM yes\n', 'UsePAM yes\nPasswordAuthentication no\n'],
        ['PasswordAuthentication yes\n', 'PasswordAuthentication no\n'],
        ['PasswordAuthentication no\n', 'PasswordAuthentication no\n'],
      ];
      const file = join(dir.dir, 'sshd_config');
      const dropIns = join(dir.dir, 'sshd_config.d');
      const script = PASSWORD_LOGIN_OFF_SCRIPT.replace('/etc/ssh/sshd_config.d', dropIns).replace('/etc/ssh/sshd_config', file);
      for (const [before, after] of cases) {
        writeFileSync(file, before);
        run('sh', ['-c', script]);
        assert.equal(readFileSync(file, 'utf8'), after);
      }
      // Debian's cloud-init writes its own drop-in when sshd_config includes sshd_config.d: it is there already.
      mkdirSync(dropIns);
      writeFileSync(file, `Include ${dropIns}/*.conf\n#PasswordAuthentication yes\n`);
      run('sh', ['-c', script]);
      run('sh', ['-c', script]);
      assert.equal(readFileSync(join(dropIns, '50-cloud-init.conf'), 'utf8'), 'PasswordAuthentication no\n');
      assert.equal(statSync(join(dropIns, '50-cloud-init.conf')).mode & 0o777, 0o600);
    } finally {
      dir.cleanup();
    }
  });

  it('the machine-id script is valid sh and renews the id only when systemd did not just make it', () => {
    const dir = scratchDir('vmsnap-seed-');
    try {
      writeFileSync(join(dir.dir, 'machine-id.sh'), MACHINE_ID_SCRIPT);
      run('sh', ['-n', join(dir.dir, 'machine-id.sh')]);
    } finally {
      dir.cleanup();
    }
    assert.match(MACHINE_ID_SCRIPT, /mountpoint -q \/etc\/machine-id/);
    assert.match(MACHINE_ID_SCRIPT, /rm -f \/etc\/machine-id \/var\/lib\/dbus\/machine-id/);
  });

  it('values that look like YAML, quotes and Unicode come through unchanged', () => {
    // A key comment is free text: YAML syntax, quotes, a NEL and U+2028 (line breaks to YAML 1.1), DEL-range and
    // astral characters must all read back exactly.
    const comment = `"x": [1, {a: b}] # not a comment 'q' \\ é 日本 🎉 \u0085 \u2028 \u2029 \u0080 \ufffe end`;
    const key = `${userKey.split(' ').slice(0, 2).join(' ')} ${comment}`;
    const seed = buildSeed(options({ authorizedKeys: [key, userKey], hostname: 'True', user: 'null' }));
    const config = loadYaml(seed.userData) as { users: { name: string; ssh_authorized_keys: string[] }[]; hostname: string };
    assert.deepEqual(config.users[0]?.ssh_authorized_keys, [key, userKey]);
    assert.equal(config.users[0]?.name, 'null'); // a string, not YAML's null
    assert.equal(config.hostname, 'true'); // a string, not a boolean (hostnames are lower-cased)
    assert.deepEqual(loadYaml(seed.metaData), { 'instance-id': '0f8e2f4c-7f0a-4c67-9a4e-1b2a3c4d5e6f', 'local-hostname': 'true' });
  });

  it('with the caller own user-data: used verbatim, our configuration goes to vendor-data', () => {
    const own = '#cloud-config\npackages: [htop]\nruncmd:\n  - echo hi\n';
    const seed = buildSeed(options({ userData: own }));
    assert.equal(seed.userData, own);
    const vendor = loadYaml(seed.vendorData ?? '') as Record<string, unknown>;
    assert.equal(vendor.hostname, 'dev');
    assert.deepEqual(Object.keys(vendor.ssh_keys as object).sort(), ['ed25519_private', 'ed25519_public']);
    assert.ok(Array.isArray(vendor.bootcmd));
    assert.deepEqual(
      seedFiles(seed).map((f) => f.name),
      ['meta-data', 'user-data', 'vendor-data'],
    );
    assert.deepEqual(
      seedFiles(buildSeed(options())).map((f) => f.name),
      ['meta-data', 'user-data'],
    );
    refused('INVALID_USER_DATA', { userData: '  \n' });
  });

  it('refuses bad user names, hostnames, instance ids and keys, naming the problem', () => {
    for (const user of ['', 'Alice', '1abc', 'a b', 'a:b', 'x'.repeat(33), 'root', 'sshd', 'systemd-network', 'a\nb']) {
      refused('INVALID_USER', { user });
    }
    for (const hostname of ['', '-dev', 'dev-', 'dev.example.com', 'dev_vm', 'x'.repeat(64), 'dév', 'a b']) {
      refused('INVALID_HOSTNAME', { hostname });
    }
    for (const instanceId of ['', '../x', 'a/b', '.hidden', 'a b', 'x'.repeat(129)]) {
      refused('INVALID_INSTANCE_ID', { instanceId });
    }
    refused('INVALID_KEY', { authorizedKeys: [] });
    refused('INVALID_KEY', { authorizedKeys: [`${userKey}\nssh-ed25519 AAAAC3Nza second-line`] });
    refused('INVALID_KEY', { authorizedKeys: ['not a key'] });
    refused('INVALID_KEY', { authorizedKeys: [`${userKey} \ud800`] });
    const other = generateHostKeys();
    refused('INVALID_KEY', { hostKeys: { ed25519: { privateKey: hostKeys.ed25519.privateKey, publicKey: other.ed25519.publicKey } } });
    refused('INVALID_KEY', { hostKeys: { ed25519: { privateKey: 'garbage', publicKey: hostKeys.ed25519.publicKey } } });
    refused('INVALID_KEY', { hostKeys: { ed25519: { privateKey: hostKeys.ed25519.privateKey, publicKey: 'ssh-ed25519 AAAA\nx' } } });
  });

  it('accepts authorized_keys lines with options and the other key types', () => {
    const lines = [
      `from="10.0.0.0/8",no-pty ${userKey}`,
      'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= bob',
      'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 carol@host',
      'sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t',
    ];
    const config = loadYaml(buildSeed(options({ authorizedKeys: lines })).userData) as { users: { ssh_authorized_keys: string[] }[] };
    assert.deepEqual(config.users[0]?.ssh_authorized_keys, lines);
  });

  it('defaultGuestUser: the host user when it makes a valid non-system account, else dev', () => {
    assert.equal(defaultGuestUser('alice'), 'alice');
    assert.equal(defaultGuestUser('Alice'), 'alice');
    assert.equal(defaultGuestUser('root'), 'dev');
    assert.equal(defaultGuestUser('John Smith'), 'dev');
    assert.equal(defaultGuestUser(''), 'dev');
    assert.equal(defaultGuestUser('www-data'), 'dev');
  });

  it('hostnameFromMachineName makes an RFC 1123 label', () => {
    assert.equal(hostnameFromMachineName('dev'), 'dev');
    assert.equal(hostnameFromMachineName('My Dev VM (2)'), 'my-dev-vm-2');
    assert.equal(hostnameFromMachineName('Café déjà vu'), 'cafe-deja-vu');
    assert.equal(hostnameFromMachineName('日本'), 'vm');
    assert.equal(hostnameFromMachineName('a'.repeat(70) + '-b'), 'a'.repeat(63));
  });
});

describe('guest SSH host keys', () => {
  it('generateHostKeys makes a pair OpenSSH itself reads and matches', function () {
    // ssh-keygen is the oracle here: without it the test fails (setup.sh installs openssh-client), never skips.
    if (spawnSync('sh', ['-c', 'command -v ssh-keygen']).status !== 0) throw new Error('ssh-keygen is not installed: apt-get install -y openssh-client');
    const dir = scratchDir('vmsnap-hostkey-');
    try {
      const file = join(dir.dir, 'ssh_host_ed25519_key');
      writeFileSync(file, hostKeys.ed25519.privateKey);
      chmodSync(file, 0o600);
      const derived = run('ssh-keygen', ['-y', '-f', file]).trim();
      assert.equal(derived.split(' ').slice(0, 2).join(' '), hostKeys.ed25519.publicKey.split(' ').slice(0, 2).join(' '));
      // And a key made by ssh-keygen passes our check; an encrypted or RSA one does not.
      const made = join(dir.dir, 'made');
      run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'c', '-f', made]);
      const pair = { privateKey: run('cat', [made]), publicKey: run('cat', [`${made}.pub`]) };
      assert.equal(checkHostKeys({ ed25519: pair }).ed25519.publicKey, pair.publicKey.trim());
      const locked = join(dir.dir, 'locked');
      run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret', '-f', locked]);
      assert.throws(
        () => checkHostKeys({ ed25519: { privateKey: run('cat', [locked]), publicKey: run('cat', [`${locked}.pub`]) } }),
        (e: unknown) => isSeedError(e) && e.code === 'INVALID_KEY' && /encrypted/.test(e.message),
      );
      const rsa = join(dir.dir, 'rsa');
      run('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', rsa]);
      assert.throws(
        () => checkHostKeys({ ed25519: { privateKey: run('cat', [rsa]), publicKey: run('cat', [`${rsa}.pub`]) } }),
        (e: unknown) => isSeedError(e) && e.code === 'INVALID_KEY',
      );
    } finally {
      dir.cleanup();
    }
  });
});
