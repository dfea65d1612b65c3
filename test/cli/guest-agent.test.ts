// The guest agent end to end on the real Debian 12 guest (qemu-guest-agent installed; TCG), booted once: status
// shows who the guest is, a disk-only snapshot of the running guest is quiesced (the guest's journal shows the
// freeze and thaw, the layer passes qemu-img check and e2fsck), a revert to a running snapshot sets the guest's
// clock to the host's, an agent that is stopped or hung costs a short time-out and the snapshot says it is not
// quiesced, and a guest that ignores the ACPI power button is shut down by its agent. Through the real binary.
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connectMachine, runtimeFiles, withGuestAgent } from '../../src/engine/runtime';
import { debianSession } from './debian-session';

interface Quiesce {
  quiesced: boolean;
  note: string | null;
  freezeMs: number;
  frozenMs: number;
  lostMs: number;
}

interface Taken {
  id: string;
  quiesced: boolean;
  layers: string[];
  quiesce: Quiesce | null;
}

describe('cli: the guest agent (real Debian guest, TCG)', function () {
  this.timeout(20 * 60 * 1000);
  const session = debianSession('vmsnap-guest-agent-');
  const { scratch, ok, json } = session;
  const inGuest = (script: string): Promise<string> => session.inGuest('dev', script);
  const timed = async <T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> => {
    const t0 = performance.now();
    const value = await fn();
    return { value, ms: performance.now() - t0 };
  };

  before(() => session.setUp('e2fsck'));
  after(() => session.tearDown());

  it('shows the guest, quiesces a disk-only snapshot, sets the clock after a revert, and goes on without an agent', async () => {
    await ok(['vm', 'create', 'dev', '--from-image', session.image(), '--disk-size', '3G', '--memory', '1024']);
    await ok(['vm', 'start', 'dev']);
    // The agent's unit starts when its virtio port exists.
    assert.equal(await inGuest('ls /dev/virtio-ports/ && systemctl is-active qemu-guest-agent'), 'org.qemu.guest_agent.0\nactive');

    // (1) Who the guest is, from its agent.
    const status = await json<{ guest: { agent: string; hostname: string; os: string; addresses: { address: string; family: string }[] } }>(['vm', 'status', 'dev']);
    assert.equal(status.guest.agent, 'answering', JSON.stringify(status.guest));
    assert.equal(status.guest.hostname, 'dev');
    assert.match(status.guest.os, /Debian GNU\/Linux 12/);
    assert.ok(status.guest.addresses.some((a) => a.family === 'ipv4' && a.address === '10.0.2.15'), JSON.stringify(status.guest.addresses));
    assert.match((await ok(['vm', 'status', 'dev'])).stdout, /Guest: +dev, Debian GNU\/Linux 12.*\nAddresses: +10\.0\.2\.15\/24 \(eth0\)/);

    // A running snapshot whose clock the revert below must correct.
    await json<Taken>(['snapshot', 'take', 'dev', 'clock']);
    const clockTakenAt = Date.now();

    // (2) A disk-only snapshot of the running guest, quiesced, while the guest writes. The agent logs its freeze
    // by default; its thaw only when verbose ("logging re-enabled due to filesystem unfreeze").
    await inGuest('sudo mkdir -p /etc/qemu && printf "[general]\\nverbose=true\\n" | sudo tee /etc/qemu/qemu-ga.conf >/dev/null && sudo systemctl restart qemu-guest-agent && sleep 2');
    await inGuest('(while :; do date >> ~/busy.log; sleep 0.05; done) >/dev/null 2>&1 & echo started');
    const quiet = await timed(() => json<Taken>(['snapshot', 'take', 'dev', 'quiet', '--disk-only']));
    const q = quiet.value.quiesce!;
    assert.equal(q.quiesced, true, String(q.note));
    assert.equal(q.note, null);
    assert.equal(quiet.value.quiesced, true);
    console.log(`      quiesced snapshot: freeze ${q.freezeMs.toFixed(0)} ms, frozen ${q.frozenMs.toFixed(0)} ms, whole take ${quiet.ms.toFixed(0)} ms`);
    const journal = await inGuest('sudo journalctl -u qemu-guest-agent --no-pager -o cat');
    assert.match(journal, /guest-fsfreeze called/, journal);
    assert.match(journal, /guest-fsfreeze called[^]*logging re-enabled due to filesystem unfreeze/, journal);
    // The guest writes again: the writer's log grows.
    const lines = Number(await inGuest('wc -l < ~/busy.log'));
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(Number(await inGuest('wc -l < ~/busy.log')) > lines, 'the guest writes after the thaw');
    const listed = (await ok(['snapshot', 'list', 'dev'])).stdout;
    assert.match(listed, /quiet .*\[running, disks only, quiesced\]/, listed);
    const shown = await json<{ snapshots: { name: string; quiesced: boolean }[] }>(['vm', 'show', 'dev']);
    assert.equal(shown.snapshots.find((s) => s.name === 'quiet')?.quiesced, true);
    // The layer is sound, and the root file system in its chain is clean (no journal to replay).
    const layer = quiet.value.layers[0]!;
    execFileSync('qemu-img', ['check', '-U', layer], { stdio: 'pipe' });
    const rootFs = scratch.path('root.ext4');
    const mbr = scratch.path('mbr.bin');
    execFileSync('qemu-img', ['dd', '-U', '-f', 'qcow2', '-O', 'raw', 'bs=512', 'count=1', `if=${layer}`, `of=${mbr}`]);
    const rootStartSector = readFileSync(mbr).readUInt32LE(446 + 16 + 8);
    assert.equal(rootStartSector * 512, 129 * 1024 * 1024, 'partition 2 starts at 129 MiB');
    execFileSync('qemu-img', ['dd', '-U', '-f', 'qcow2', '-O', 'raw', 'bs=1M', `skip=129`, `if=${layer}`, `of=${rootFs}`]);
    const fsck = execFileSync('e2fsck', ['-fn', rootFs], { encoding: 'utf8', stdio: 'pipe' });
    assert.match(fsck, /debian-root: \d+\/\d+ files/, fsck);

    // (3) Back to the running snapshot taken a minute ago: its clock stood still, the agent sets it to the host's.
    await new Promise((r) => setTimeout(r, Math.max(0, 60_000 - (Date.now() - clockTakenAt))));
    const waited = Date.now() - clockTakenAt;
    const reverted = await json<{ poweredOn: boolean; guestClock: { set: boolean; note: string | null } }>(['snapshot', 'revert', 'dev', 'clock', '--discard-current']);
    assert.equal(reverted.poweredOn, true);
    assert.equal(reverted.guestClock.set, true, String(reverted.guestClock.note));
    const before = Date.now() / 1000;
    const guestNow = Number(await inGuest('date +%s.%N'));
    const after = Date.now() / 1000;
    console.log(`      ${(waited / 1000).toFixed(0)} s after the snapshot: guest clock ${guestNow.toFixed(2)}, host ${before.toFixed(2)}..${after.toFixed(2)}`);
    assert.ok(guestNow >= before - 2 && guestNow <= after + 2, `guest clock ${guestNow} vs host ${before}..${after} (${(waited / 1000).toFixed(0)} s after the snapshot)`);
    // The same, without SSH's seconds of latency on TCG: the guest's time through its agent, between two host readings.
    const { folder } = await json<{ folder: string }>(['vm', 'show', 'dev']);
    const qmp = await connectMachine(folder);
    try {
      const t0 = Date.now();
      const guestNs = await withGuestAgent(qmp, runtimeFiles(folder).agentSocket, (agent) => agent.execute<number>('guest-get-time'));
      const t1 = Date.now();
      const offsetMs = guestNs / 1e6 - (t0 + t1) / 2;
      console.log(`      guest clock through the agent: ${offsetMs.toFixed(0)} ms from the host's (read within ${t1 - t0} ms)`);
      assert.ok(Math.abs(offsetMs) < 2000 && t1 - t0 < 1000, `guest clock ${offsetMs} ms off the host's (read within ${t1 - t0} ms)`);
    } finally {
      qmp.close();
    }

    // (4) The agent stopped: nothing listens on the channel; the take goes on at once, not quiesced, and says so.
    await inGuest('sudo systemctl stop qemu-guest-agent');
    const stopped = await timed(() => json<Taken>(['snapshot', 'take', 'dev', 'no-agent', '--disk-only']));
    assert.equal(stopped.value.quiesced, false);
    assert.match(String(stopped.value.quiesce?.note), /Not quiesced\. No guest agent listens/);
    assert.match((await ok(['vm', 'status', 'dev'])).stdout, /Guest agent: not answering/);
    // The agent hung (stopped by a signal, the channel still open): the take goes on after the short time-out.
    await inGuest('sudo systemctl start qemu-guest-agent && sleep 1 && sudo kill -STOP $(pidof qemu-ga)');
    const hung = await timed(() => ok(['snapshot', 'take', 'dev', 'hung-agent', '--disk-only']));
    assert.match(hung.value.stdout, /Not quiesced\. The guest agent did not answer within \d+ ms/);
    const hungRecord = (await json<{ snapshots: { name: string; quiesced: boolean }[] }>(['vm', 'show', 'dev'])).snapshots.find((s) => s.name === 'hung-agent');
    assert.equal(hungRecord?.quiesced, false);
    console.log(`      agent stopped: take ${stopped.ms.toFixed(0)} ms (asking cost ${stopped.value.quiesce?.lostMs.toFixed(0)} ms); agent hung: take ${hung.ms.toFixed(0)} ms`);
    assert.ok(hung.ms < 15000, `a hung agent held the take for ${hung.ms} ms`);
    await inGuest('sudo kill -CONT $(pidof qemu-ga)');

    // (5) A guest that ignores the ACPI power button is shut down by its agent.
    await inGuest('sudo mkdir -p /etc/systemd/logind.conf.d && printf "[Login]\\nHandlePowerKey=ignore\\n" | sudo tee /etc/systemd/logind.conf.d/ignore-power.conf >/dev/null && sudo systemctl restart systemd-logind');
    const stop = await json<{ method: string; ms: number }>(['vm', 'stop', 'dev']);
    assert.equal(stop.method, 'agent');
    console.log(`      ACPI ignored: off through the agent after ${(stop.ms / 1000).toFixed(1)} s`);
  });
});
