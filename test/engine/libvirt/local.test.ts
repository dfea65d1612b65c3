// libvirt on this computer (qemu:///system): every source operation against real domains running the counting
// boot-sector guest (TCG, user-mode networking), checked against libvirt's own view; a stopped daemon in one sentence.
import { strict as assert } from 'node:assert';
import { LibvirtSource } from '../../../src/engine/libvirt';
import { scratchDir } from '../../support/qemu';
import { removeTestDomains, requireLibvirt, shareWithQemu, startDaemons, SYSTEM_URI, testPrefix, type Daemons } from '../../support/libvirt';
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
