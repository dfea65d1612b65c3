// A dev machine end to end on a real Debian 12 guest (built from Debian's packages, cached; TCG): launched from a
// cloud image with cloud-init, SSH with the library's own key, a snapshot with memory, damage, a revert that keeps
// the guest running, and a linked clone running beside its source with its own identity. Through the real binary.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeCountingGuest } from '../support/counting-guest';
import { decodePng, inkShare } from '../support/png';
import { debianSession, type Run } from './debian-session';

describe('cli: a dev machine from a cloud image (real Debian guest, TCG)', function () {
  this.timeout(20 * 60 * 1000);
  const session = debianSession('vmsnap-dev-machine-');
  const { scratch, cli, ok, json, inGuest } = session;
  before(() => session.setUp());
  after(() => session.tearDown());

  it('launches from the image, lets the key in and keeps passwords out, and reverts a running snapshot in place', async () => {
    const created = await ok(['vm', 'create', 'dev', '--from-image', session.image(), '--disk-size', '4G', '--memory', '1024']);
    assert.match(created.stdout, /a key pair made now for this library/);
    const started = await ok(['vm', 'start', 'dev']);
    assert.match(started.stdout, /SSH on 127\.0\.0\.1 port \d+/);
    const status = await json<{ ssh: { host: string; port: number; user: string } }>(['vm', 'status', 'dev']);
    assert.equal(status.ssh.host, '127.0.0.1');
    assert.equal(status.ssh.user, 'dev', 'root on the host gets the guest user "dev"');

    assert.equal(await inGuest('dev', 'cat /etc/hostname'), 'dev');
    // The root file system grew into the 4 GiB disk (cloud-init's growpart).
    const rootBytes = Number(await inGuest('dev', "df -B1 --output=size / | tail -n 1"));
    assert.ok(rootBytes > 3 * 1024 ** 3, `root file system: ${rootBytes} bytes`);

    // Password login is off: the server offers public keys only.
    const [block] = await json<{ host: string; target: { port: number } }[]>(['vm', 'ssh-config', 'dev']);
    assert.equal(block?.host, 'vmsnap-dev');
    const port = block.target.port;
    const password = await runSsh(['-p', String(port), '-o', 'BatchMode=yes', '-o', 'PubkeyAuthentication=no', '-o', 'StrictHostKeyChecking=no', '-o', `UserKnownHostsFile=${join(scratch.dir, 'throwaway_known_hosts')}`, 'dev@127.0.0.1', 'true']);
    assert.notEqual(password.status, 0);
    assert.match(password.stderr, /Permission denied \(publickey\)/);

    await inGuest('dev', 'echo kept > ~/note.txt && sync');
    const uptimeAtSnapshot = Number((await inGuest('dev', 'cut -d" " -f1 /proc/uptime')));
    const snap = await json<{ hasMemory: boolean; thumbnail: string | null }>(['snapshot', 'take', 'dev', 'working']);
    assert.equal(snap.hasMemory, true);
    // Its thumbnail is a picture of the guest's console at that instant (text on the screen, not a blank frame).
    assert.ok(snap.thumbnail !== null, 'a running snapshot keeps a picture of the screen');
    const picture = decodePng(readFileSync(snap.thumbnail));
    assert.equal(picture.width, 240);
    assert.ok(inkShare(picture) > 0.002, `the thumbnail shows the console's text (ink ${inkShare(picture).toFixed(4)})`);
    await inGuest('dev', 'sudo rm -rf /usr/share/doc && rm ~/note.txt && sync');
    assert.equal(await inGuest('dev', 'ls /usr/share/doc 2>/dev/null | wc -l'), '0');

    await ok(['snapshot', 'revert', 'dev', 'working', '--discard-current']);
    assert.equal(await inGuest('dev', 'cat ~/note.txt'), 'kept');
    assert.ok(Number(await inGuest('dev', 'ls /usr/share/doc | wc -l')) > 10, 'the docs are back');
    const uptime = Number(await inGuest('dev', 'cut -d" " -f1 /proc/uptime'));
    assert.ok(uptime >= uptimeAtSnapshot && uptime < uptimeAtSnapshot + 120, `uptime ${uptime} s goes on from ${uptimeAtSnapshot} s: no reboot`);
    assert.equal(await inGuest('dev', 'sudo dmesg | grep -ciE "(ext4|i/o).*error" || true'), '0');
  });

  it('clones: a linked clone runs beside its source with its own MAC, SMBIOS UUID, machine-id and host key', async () => {
    const stop = await json<{ method: string; ms: number }>(['vm', 'stop', 'dev']);
    assert.equal(stop.method, 'acpi', 'a systemd guest shuts down on the ACPI power button');
    await ok(['clone', 'dev', 'web', '--linked']);
    await ok(['vm', 'start', 'dev']);
    await ok(['vm', 'start', 'web']);
    const facts = async (vm: string): Promise<string[]> =>
      (await inGuest(vm, 'sudo cat /etc/hostname /sys/class/net/eth0/address /sys/class/dmi/id/product_uuid /etc/machine-id /etc/ssh/ssh_host_ed25519_key.pub ~/note.txt')).split('\n');
    const [dev, web] = await Promise.all([facts('dev'), facts('web')]);
    assert.equal(dev.length, 6, dev.join('\n'));
    assert.equal(web.length, 6, web.join('\n'));
    assert.equal(dev[0], 'dev');
    assert.equal(web[0], 'web');
    for (let i = 1; i <= 4; i++) assert.notEqual(dev[i], web[i], `line ${i}: ${dev[i]} vs ${web[i]}`);
    const devInfo = await json<{ id: string; macAddress: string }>(['vm', 'show', 'dev']);
    const webInfo = await json<{ id: string; macAddress: string }>(['vm', 'show', 'web']);
    assert.equal(dev[1], devInfo.macAddress);
    assert.equal(web[1], webInfo.macAddress);
    assert.equal(dev[2]?.toLowerCase(), devInfo.id);
    assert.equal(web[2]?.toLowerCase(), webInfo.id);
    assert.equal(web[5], 'kept', 'the clone has its source\'s files');
    // vm ssh to both went through strict host-key checking with no warning.
    for (const vm of ['dev', 'web']) {
      const r = await ok(['vm', 'ssh', vm, '--', 'true']);
      assert.doesNotMatch(r.stderr, /WARNING|Permanently added|host key/i);
    }
    for (const vm of ['dev', 'web']) assert.equal((await json<{ method: string }>(['vm', 'stop', vm])).method, 'acpi');
  });

  it('says when SSH never comes up, pointing at the serial log', async () => {
    // A boot disk that never starts an SSH server, launched as a cloud image would be.
    const raw = scratch.path('counting.raw');
    writeCountingGuest(raw);
    await ok(['vm', 'create', 'silent', '--from-image', raw, '--memory', '64', '--disk-size', '1M']);
    await ok(['vm', 'start', 'silent']);
    const r = await cli(['vm', 'ssh', 'silent', '--wait', '3', '--', 'true']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /did not accept SSH within 3 s: see its serial log .*serial\.log/);
    await ok(['vm', 'stop', 'silent', '--force']);
  });
});

function runSsh(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn('ssh', args);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('exit', (code) => resolve({ status: code ?? -1, stdout, stderr }));
  });
}
