// End to end against a real OpenSSH server: a throwaway sshd on 127.0.0.1 with keys from generateEd25519KeyPair.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  generateEd25519KeyPair,
  hostKeyAlias,
  sshArgs,
  sshConfigBlock,
  waitForSsh,
  writeKnownHosts,
  type SshTarget,
} from '../../../src/engine/ssh';
import { awkwardTempDir, requireOpenSsh, startSshd, userKnownHosts, type Sshd } from './openssh-fixtures';

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs ssh with no input (it never waits on a prompt: every test connection is BatchMode or fails first). */
function runSsh(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

describe('logging into a machine with the system ssh (real sshd)', function () {
  let dir: string;
  let sshd: Sshd;
  let target: SshTarget;
  let userKnownHostsBefore: string | null;

  before(async function () {
    requireOpenSsh(this, ['ssh', 'sshd']);
    userKnownHostsBefore = userKnownHosts();
    dir = awkwardTempDir('vmsnap-sshd');
    sshd = await startSshd(dir);
    const machineDir = join(dir, 'machines', 'dev vm');
    mkdirSync(machineDir, { recursive: true });
    target = {
      host: '127.0.0.1',
      port: sshd.port,
      user: sshd.user,
      identityFile: sshd.identityFile,
      knownHostsFile: join(machineDir, 'known_hosts'),
      hostKeyAlias: hostKeyAlias('0b1e5c1d-2f0a-4c7e-9d1b-5a6f7e8d9c0b'),
    };
  });

  after(async function () {
    await sshd?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  beforeEach(async function () {
    // Every test starts from the key the "guest" really has.
    await writeKnownHosts(target.knownHostsFile, target.hostKeyAlias, [sshd.hostKey.publicKey]);
  });

  it('sshArgs logs in with the known host key and runs a command', async function () {
    const r = await runSsh(sshArgs(target, { batchMode: true, command: ['echo', 'ok'] }));
    assert.equal(r.status, 0, r.stderr + sshd.stderr());
    assert.equal(r.stdout, 'ok\n');
    assert.doesNotMatch(r.stderr, /WARNING|Permanently added/);
  });

  it('a remote command arrives word for word (quoted for the guest\'s shell)', async function () {
    const r = await runSsh(sshArgs(target, { batchMode: true, command: ['sh', '-c', 'printf "%s|" "$@"', 'x', 'two words', "it's", '$HOME;'] }));
    assert.equal(r.status, 0, r.stderr + sshd.stderr());
    assert.equal(r.stdout, "two words|it's|$HOME;|");
  });

  it('a different host key in known_hosts is refused loudly (exit 255), and known_hosts is left as it was', async function () {
    await writeKnownHosts(target.knownHostsFile, target.hostKeyAlias, [generateEd25519KeyPair('impostor').publicKey]);
    const before = readFileSync(target.knownHostsFile, 'utf8');
    // Without BatchMode too: StrictHostKeyChecking=yes refuses, it does not ask.
    const r = await runSsh(sshArgs(target, { command: ['echo', 'ok'] }));
    assert.equal(r.status, 255);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
    assert.equal(readFileSync(target.knownHostsFile, 'utf8'), before);
  });

  it('a machine whose key is not known yet is refused, not learned', async function () {
    await writeKnownHosts(target.knownHostsFile, 'vmsnap-another-machine', [sshd.hostKey.publicKey]);
    const r = await runSsh(sshArgs(target, { command: ['echo', 'ok'] }));
    assert.equal(r.status, 255);
    assert.match(r.stderr, /Host key verification failed|No .* host key is known/);
    assert.doesNotMatch(readFileSync(target.knownHostsFile, 'utf8'), new RegExp(target.hostKeyAlias));
  });

  it('no other known_hosts file can widen what is accepted: the global file is the machine file too', async function () {
    // Why: ssh accepts a key found in *any* of its known_hosts files, without a warning about a different key in
    // another. So a system-wide file (/etc/ssh/ssh_known_hosts) naming the alias could let another key in.
    const impostorFile = join(dir, 'other_known_hosts');
    await writeKnownHosts(impostorFile, target.hostKeyAlias, [sshd.hostKey.publicKey]);
    await writeKnownHosts(target.knownHostsFile, target.hostKeyAlias, [generateEd25519KeyPair('wrong').publicKey]);
    const args = sshArgs(target, { batchMode: true, command: ['echo', 'ok'] });
    const global = args.findIndex((a) => a.startsWith('GlobalKnownHostsFile='));
    const widened = [...args];
    widened[global] = `GlobalKnownHostsFile="${impostorFile}"`;
    assert.equal((await runSsh(widened)).status, 0, 'ssh took the key from the other file');
    assert.equal((await runSsh(args)).status, 255);
  });

  it('the key is found under the alias whatever the port: the entry does not name 127.0.0.1 or the port', async function () {
    const text = readFileSync(target.knownHostsFile, 'utf8');
    assert.doesNotMatch(text, /127\.0\.0\.1|\[/);
  });

  it('ssh -F with the generated config block logs in by the vmsnap-NAME host name', async function () {
    const config = join(dir, 'ssh config');
    writeFileSync(config, sshConfigBlock('Dev VM', target));
    const r = await runSsh(['-F', config, '-o', 'BatchMode=yes', 'vmsnap-dev-vm', 'echo', 'ok']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'ok\n');
  });

  it('only the machine key is offered (IdentitiesOnly): a key sshd does not know gets no login', async function () {
    const stranger = join(dir, 'stranger');
    writeFileSync(stranger, generateEd25519KeyPair('stranger').privateKey, { mode: 0o600 });
    const r = await runSsh(sshArgs({ ...target, identityFile: stranger }, { batchMode: true, command: ['echo', 'ok'] }));
    assert.equal(r.status, 255);
    assert.match(r.stderr, /Permission denied \(publickey\)/);
  });

  it('waitForSsh reads the server identification line', async function () {
    const answer = await waitForSsh('127.0.0.1', sshd.port, { timeoutMs: 10_000 });
    assert.match(answer.banner, /^SSH-2\.0-OpenSSH_/);
    assert.equal(answer.attempts, 1);
  });

  it('the user\'s own ~/.ssh/known_hosts is never written', function () {
    assert.equal(userKnownHosts(), userKnownHostsBefore);
    if (process.platform !== 'win32') assert.equal(statSync(target.knownHostsFile).mode & 0o777, 0o644);
  });
});
