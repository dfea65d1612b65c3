import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { isQemuError } from '../../../src/engine/runtime/errors';
import { runtimeFiles } from '../../../src/engine/runtime/files';
import { snapshotRunning, startFromState } from '../../../src/engine/runtime/live-snapshot';
import { qemuArgs, runtimeInfo, screendump, startMachine, stopMachine, type MachineConfig } from '../../../src/engine/runtime';
import { Qcow2Image } from '../../../src/engine/qcow2/image';
import { decodePng, distinctColours, inkShare, isPng } from '../../support/png';
import { scratchDir } from '../../support/qemu';
import { ACCEL, countsSince, last, logSize, Machines, requireQemu, waitForCounts } from '../../support/guest-machines';

const opts = { accel: ACCEL };

/** The first bytes a VNC server sends on its socket: the RFB protocol version. */
function rfbGreeting(socket: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    s.setTimeout(5000, () => s.destroy(new Error('no RFB greeting within 5 s')));
    s.once('data', (d: Buffer) => {
      resolve(d.toString('latin1'));
      s.destroy();
    });
    s.once('error', reject);
  });
}

/**
 * Polls until the guest's own screen is up: the VGA text mode (80x25 characters of 9x16 pixels) with text on it.
 * Before the VGA BIOS runs, QEMU shows its own 640x480 "Guest has not initialized the display" notice.
 */
async function textScreen(folder: string, file: string): Promise<Buffer> {
  const deadline = Date.now() + 30000;
  for (;;) {
    await screendump(folder, file);
    const png = readFileSync(file);
    const image = decodePng(png);
    if ((image.width === 720 && image.height === 400 && inkShare(image) > 0.001) || Date.now() > deadline) return png;
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('runtime: the display (VGA, VNC on a unix socket, screenshots)', function () {
  this.timeout(60000);
  const scratch = scratchDir('vmsnap-display-');
  const machines = new Machines(scratch.dir);
  before(requireQemu);
  after(async () => {
    await machines.endAll();
    scratch.cleanup();
  });

  it('serves VNC only on a unix socket in the machine folder, never on a TCP port', () => {
    const config: MachineConfig = { ...machines.make('args'), display: 'std' };
    const args = qemuArgs(config, runtimeFiles(config.folder));
    const vnc = args[args.indexOf('-vnc') + 1];
    assert.equal(vnc, `unix:${join(config.folder, 'display.sock')}`);
    assert.equal(args.filter((a) => a === '-vnc').length, 1);
    assert.ok(args.includes('VGA,id=video0'));
    assert.ok(qemuArgs({ ...config, display: 'virtio' }, runtimeFiles(config.folder)).includes('virtio-vga,id=video0'));
    const headless = qemuArgs({ ...config, display: 'none' }, runtimeFiles(config.folder));
    assert.ok(!headless.includes('-vnc') && !headless.some((a) => /VGA|vga/.test(a)), 'no display: no device, no VNC');
    assert.throws(() => qemuArgs({ ...config, display: 'cirrus' as never }, runtimeFiles(config.folder)), /not a display device/);
  });

  it('shows the firmware\'s text screen: a PNG screenshot over QMP, and an RFB server on the socket', async () => {
    const config: MachineConfig = { ...machines.make('screen'), display: 'std' };
    const started = await startMachine(config, opts);
    machines.track(config.folder, started.pid);
    const files = runtimeFiles(config.folder);
    assert.equal(started.info.display, 'std');
    assert.equal(started.info.displaySocket, files.displaySocket);
    assert.ok(statSync(files.displaySocket).isSocket(), 'display.sock is a unix socket');
    assert.match(await rfbGreeting(files.displaySocket), /^RFB 003\.00\d\n$/);

    const shot = join(scratch.dir, 'screen.png');
    const png = await textScreen(config.folder, shot);
    assert.ok(isPng(png), 'a PNG file');
    const image = decodePng(png);
    assert.deepEqual([image.width, image.height], [720, 400], 'the VGA text mode the firmware set, not QEMU\'s own notice');
    assert.ok(distinctColours(image) >= 2, 'not a blank image');
    assert.ok(inkShare(image) > 0.001, `SeaBIOS text on the screen (ink ${inkShare(image)})`);
    mkdirSync('test-artifacts', { recursive: true });
    copyFileSync(shot, join('test-artifacts', 'display-boot-sector.png'));

    await stopMachine(config.folder, { force: true });
    assert.equal(existsSync(files.displaySocket), false, 'the socket goes with QEMU');
    await assert.rejects(screendump(config.folder, shot), (e: unknown) => isQemuError(e) && e.code === 'NOT_RUNNING' && /off: start it/.test(e.message));
  });

  it('saves a running state with its display and loads it into the same devices (the screen comes back too)', async () => {
    const config: MachineConfig = { ...machines.make('state'), display: 'std' };
    const log = runtimeFiles(config.folder).serialLog;
    const started = await startMachine(config, opts);
    machines.track(config.folder, started.pid);
    await waitForCounts(log, 5);
    const snap = await snapshotRunning(config.folder, { newTops: [join(config.folder, 'top-1.qcow2')], stateFile: join(config.folder, 's.state') }, opts);
    assert.equal(snap.display, 'std', 'the state records its display device');
    const before = last(countsSince(log));
    await stopMachine(config.folder, { force: true });

    // Into a headless configuration: QEMU refuses (the VGA's state has nowhere to go).
    const top = join(config.folder, 'top-2.qcow2');
    await Qcow2Image.create(top, { backingFile: snap.frozenLayers[0]! });
    await assert.rejects(startFromState({ ...config, display: 'none', disks: [top], machineType: snap.machineType }, snap.stateFile!, opts), (e: unknown) => isQemuError(e) && e.code === 'STATE_LOAD_FAILED');

    const top3 = join(config.folder, 'top-3.qcow2');
    await Qcow2Image.create(top3, { backingFile: snap.frozenLayers[0]! });
    const from = logSize(log);
    const reverted = await startFromState({ ...config, display: snap.display, disks: [top3], machineType: snap.machineType }, snap.stateFile!, opts);
    machines.track(config.folder, reverted.pid);
    const counts = await waitForCounts(log, 3, from);
    assert.ok(counts[0]! >= before - 40 && counts[0]! <= before + 40, `the count goes on from the snapshot (${before}), got ${counts[0]}`);
    assert.equal((await runtimeInfo(config.folder))?.display, 'std');
    const png = await textScreen(config.folder, join(scratch.dir, 'reverted.png'));
    assert.ok(inkShare(decodePng(png)) > 0.001, 'the restored screen shows the firmware text');
    await stopMachine(config.folder, { force: true });
  });

  it('refuses a screenshot of a machine without a display, in words', async () => {
    const config = machines.make('headless');
    const started = await startMachine(config, opts);
    machines.track(config.folder, started.pid);
    assert.equal(started.info.display, 'none');
    assert.equal(existsSync(runtimeFiles(config.folder).displaySocket), false);
    await assert.rejects(screendump(config.folder, join(scratch.dir, 'x.png')), /without a display device/);
    await stopMachine(config.folder, { force: true });
  });
});
