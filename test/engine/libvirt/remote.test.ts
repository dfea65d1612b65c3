// libvirt over SSH for real: an sshd on a loopback port with a key made for the test, and the same checks as on
// this computer through qemu+ssh://root@127.0.0.1:PORT/system?keyfile=... (never another host). The SSH client
// gets a known_hosts made for the test through a wrapper (libvirt's command= parameter), so the user's own
// ~/.ssh is never read or written. A wrong key, an unreachable host and a stopped daemon each fail in one sentence.
import { strict as assert } from 'node:assert';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LibvirtSource, notInPool } from '../../../src/engine/libvirt';
import { Library } from '../../../src/engine/machine';
import { LibrarySource } from '../../../src/engine/sources';
import { freeLocalPort, generateEd25519KeyPair } from '../../../src/engine/ssh';
import { scratchDir } from '../../support/qemu';
import { defineCountingDomain, removeTestDomains, requireLibvirt, shareWithQemu, startDaemons, SYSTEM_URI, testPrefix, virsh, type Daemons } from '../../support/libvirt';
import { requireOpenSsh, startSshd, type Sshd } from '../ssh/openssh-fixtures';
import { rejectsWith, sourceChecks } from './source-checks';

describe('libvirt source: qemu+ssh://root@127.0.0.1 (real sshd and libvirtd, TCG)', function () {
  this.timeout(360000);
  const scratch = scratchDir('vmsnap-libvirt-ssh-');
  const prefix = testPrefix();
  const pool = `${prefix}pool`;
  let daemons: Daemons;
  let sshd: Sshd;
  let sshDir: string;
  let wrapper: string;
  const uri = (key: string, port = sshd.port): string => `qemu+ssh://root@127.0.0.1:${port}/system?keyfile=${key}&command=${wrapper}`;

  before(async function () {
    requireLibvirt(this);
    requireOpenSsh(this, ['ssh', 'sshd']);
    shareWithQemu(scratch.dir);
    daemons = await startDaemons();
    sshDir = scratch.path('ssh');
    mkdirSync(sshDir);
    sshd = await startSshd(sshDir);
    const knownHosts = join(sshDir, 'known_hosts');
    writeFileSync(knownHosts, `[127.0.0.1]:${sshd.port} ${sshd.hostKey.publicKey}\n`);
    wrapper = join(sshDir, 'ssh');
    writeFileSync(wrapper, `#!/bin/sh\nexec ssh -F none -o UserKnownHostsFile=${knownHosts} -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 "$@"\n`, { mode: 0o755 });
    // On the "remote" host the clones' disks go through libvirt's storage API: the disks' folder is a pool there.
    const created = virsh(SYSTEM_URI, 'pool-create-as', pool, 'dir', '--target', scratch.dir);
    assert.equal(created.status, 0, created.stderr);
  });

  after(async () => {
    removeTestDomains(SYSTEM_URI, prefix);
    virsh(SYSTEM_URI, 'pool-destroy', pool);
    await sshd?.stop();
    await daemons?.stop();
    scratch.cleanup();
  });

  sourceChecks(() => ({ uri: uri(sshd.identityFile), dir: scratch.dir, prefix }));

  it('a domain whose disk is in no storage pool says that its current state cannot be cloned, and why; the clone is refused with that reason', async () => {
    // The pool lists the files of its own folder, not those of a folder inside it.
    const outside = scratch.path('outside');
    mkdirSync(outside);
    const name = `${prefix}unpooled`;
    defineCountingDomain(SYSTEM_URI, outside, name);
    const remote = new LibvirtSource(uri(sshd.identityFile));
    const views = await remote.readAll();
    const unpooled = views.find((v) => v.machine.name === name);
    const disk = unpooled?.domain.disks[0]?.path ?? '';
    assert.ok(disk.startsWith(`${outside}/`), `the domain's disk is read: ${disk}`);
    const reason = notInPool(disk, remote.uri);
    assert.deepEqual(unpooled?.cloneRefusals, { linked: reason, full: reason });
    assert.deepEqual(views.find((v) => v.machine.name === `${prefix}a`)?.cloneRefusals, {}, 'a domain whose disk is in the pool can be cloned');
    await rejectsWith(remote.clone(name, `${prefix}unpooled-copy`, { kind: 'full' }), 'UNSUPPORTED', 'a full clone', reason);
    assert.equal(virsh(SYSTEM_URI, 'domuuid', `${prefix}unpooled-copy`).status, 1, 'no domain was made');
    // On this computer qemu-img copies the disk itself: the local connection refuses nothing.
    assert.deepEqual((await new LibvirtSource(SYSTEM_URI).view(name)).cloneRefusals, {});
  });

  it('a wrong key and an unreachable host each fail in one sentence; the local connection keeps working', async () => {
    const wrongKey = join(sshDir, 'wrong_key');
    writeFileSync(wrongKey, generateEd25519KeyPair('not authorized').privateKey, { mode: 0o600 });
    const refused = await rejectsWith(new LibvirtSource(uri(wrongKey)).listMachines(), 'AUTH_FAILED', 'a wrong key');
    assert.match(refused, /^SSH refused the login for qemu\+ssh:\/\/root@127\.0\.0\.1:\d+\/system\?\S+ \(Permission denied \(publickey\)\): check the user and the key \(keyfile=\) in the URI\.$/);
    const closed = await freeLocalPort();
    const unreachable = await rejectsWith(new LibvirtSource(uri(sshd.identityFile, closed)).listMachines(), 'UNREACHABLE', 'a closed port');
    assert.match(unreachable, new RegExp(`^The host of qemu\\+ssh://root@127\\.0\\.0\\.1:${closed}/system\\?\\S+ cannot be reached over SSH \\(ssh: connect to host 127\\.0\\.0\\.1 port ${closed}: Connection refused\\)\\.$`));
    assert.ok((await new LibvirtSource(SYSTEM_URI).listMachines()).length > 0, 'the other connections keep working');
  });

  it('a stopped daemon on the remote host fails in one sentence; our library keeps working, and the connection answers once it runs again', async function () {
    // Fails rather than skips: only a daemon this suite started may be stopped, and CI's machine has none of its own.
    if (!daemons.started) throw new Error('A libvirtd this suite did not start answers: stop it (virsh -c qemu:///system version must fail) to run this test.');
    const remote = new LibvirtSource(uri(sshd.identityFile));
    const library = new LibrarySource(await Library.open(scratch.path('library')));
    await daemons.stopLibvirtd();
    try {
      const sentence = await rejectsWith(remote.listMachines(), 'UNREACHABLE', 'a stopped libvirtd over SSH');
      assert.match(sentence, /^The libvirt daemon on 127\.0\.0\.1 \(qemu\+ssh:\/\/root@127\.0\.0\.1:\d+\/system\?\S+\) is not running: SSH logged in, but its socket there does not answer; start libvirtd \(or virtqemud\) on that host\.$/);
      assert.deepEqual(await library.listMachines(), [], 'another source answers meanwhile');
    } finally {
      await daemons.startLibvirtd();
    }
    assert.ok((await remote.listMachines()).some((m) => m.name === `${prefix}a`), 'the same source answers again');
  });
});
