// libvirt on this computer (qemu:///system): every source operation against real domains running the counting
// boot-sector guest (TCG, user-mode networking), checked against libvirt's own view; a stopped daemon in one sentence.
import { strict as assert } from 'node:assert';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { LibvirtSource } from '../../../src/engine/libvirt';
import { scratchDir } from '../../support/qemu';
import { defineCountingDomain, removeTestDomains, requireLibvirt, shareWithQemu, slowToCopy, startDaemons, SYSTEM_URI, testPrefix, virsh, virshOk, type Daemons } from '../../support/libvirt';
import { rejectsWith, sourceChecks } from './source-checks';

describe('libvirt source: qemu:///system (real libvirtd, TCG)', function () {
  this.timeout(360000);
  const scratch = scratchDir('vmsnap-libvirt-');
  const prefix = testPrefix();
  let daemons: Daemons;

  before(async function () {
    requireLibvirt(this);
    shareWithQemu(scratch.dir);
    daemons = await startDaemons();
  });

  after(async () => {
    removeTestDomains(SYSTEM_URI, prefix);
    await daemons?.stop();
    scratch.cleanup();
  });

  sourceChecks(() => ({ uri: SYSTEM_URI, dir: scratch.dir, prefix }));

  it('a full clone cancelled mid-copy ends ABORTED and leaves no domain and no disk; the source stays as it was', async () => {
    const name = `${prefix}big`;
    const { disk } = defineCountingDomain(SYSTEM_URI, scratch.dir, name);
    mkdirSync(scratch.path('tools'));
    const throttled = await slowToCopy(disk, scratch.path('tools'));
    const files = readdirSync(scratch.dir).sort();
    const xml = virshOk(SYSTEM_URI, 'dumpxml', name);
    const dst = scratch.path(`${prefix}big-clone.qcow2`);
    const previous = process.env.VMSNAP_QEMU_IMG;
    process.env.VMSNAP_QEMU_IMG = throttled;
    try {
      const abort = new AbortController();
      const cloning = new LibvirtSource(SYSTEM_URI).clone(name, `${prefix}big-clone`, { kind: 'full', signal: abort.signal });
      for (const until = Date.now() + 30000; !existsSync(dst) && Date.now() < until; ) await new Promise((r) => setTimeout(r, 50));
      assert.ok(existsSync(dst), 'qemu-img started the copy');
      abort.abort();
      await rejectsWith(cloning, 'ABORTED', 'a cancelled full clone', 'The clone was cancelled; its copies were removed.');
    } finally {
      if (previous === undefined) delete process.env.VMSNAP_QEMU_IMG;
      else process.env.VMSNAP_QEMU_IMG = previous;
    }
    assert.deepEqual(readdirSync(scratch.dir).sort(), files, 'no disk left beside the source’s');
    assert.notEqual(virsh(SYSTEM_URI, 'domuuid', `${prefix}big-clone`).status, 0, 'no domain');
    assert.equal(virshOk(SYSTEM_URI, 'dumpxml', name), xml);
  });

  it('a connection to a daemon that does not run fails in one sentence', async function () {
    // A socket nobody listens on is what a stopped daemon leaves; the real daemon is stopped at the very end when
    // this suite started it.
    const sentence = await rejectsWith(new LibvirtSource(`qemu:///system?socket=${scratch.path('nobody.sock')}`).listMachines(), 'UNREACHABLE', 'no daemon');
    assert.match(sentence, /^The libvirt daemon of qemu:\/\/\/system\?socket=\S+ is not running \(its socket does not answer\): start libvirtd \(or virtqemud\) there\.$/);
    await rejectsWith(new LibvirtSource('nosuchdriver:///x').listMachines(), 'UNREACHABLE', 'an unknown driver', /^"nosuchdriver:\/\/\/x" is not a libvirt connection this computer can open/);
    if (!daemons.started) return;
    removeTestDomains(SYSTEM_URI, prefix);
    await daemons.stopLibvirtd();
    await rejectsWith(new LibvirtSource(SYSTEM_URI).listMachines(), 'UNREACHABLE', 'a stopped libvirtd', 'The libvirt daemon of qemu:///system is not running (its socket does not answer): start libvirtd (or virtqemud) there.');
  });
});
