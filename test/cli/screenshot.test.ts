// `vmsnap vm screenshot` and `vm edit --display` on the counting boot-sector guest (TCG): the firmware's text
// screen as a PNG, the display setting taking effect at the next start, and the refusals in words.
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Library } from '../../src/engine/machine';
import { stopMachine } from '../../src/engine/runtime';
import { writeCountingGuest } from '../support/counting-guest';
import { ACCEL, requireQemu, waitForCounts } from '../support/guest-machines';
import { decodePng, distinctColours, inkShare, isPng } from '../support/png';
import { scratchDir } from '../support/qemu';
import { runCaptured, type Captured } from './in-process';

describe('cli: vm screenshot and vm edit --display (QEMU, TCG)', function () {
  this.timeout(60000);
  const scratch = scratchDir('vmsnap-cli-screen-');
  const libDir = join(scratch.dir, 'lib');
  const run = (args: string[]): Promise<Captured> => runCaptured(['--library', libDir, ...args], { env: { VMSNAP_QEMU_ACCEL: ACCEL } });
  const ok = async (args: string[]): Promise<Captured> => {
    const r = await run(args);
    assert.equal(r.status, 0, `vmsnap ${args.join(' ')}: ${r.stderr}`);
    return r;
  };

  before(() => requireQemu());
  after(async () => {
    const lib = await Library.open(libDir);
    for (const m of await lib.list()) await stopMachine(m.folder, { force: true }).catch(() => {});
    scratch.cleanup();
  });

  it('saves the firmware\'s text screen of a running machine as a PNG, and refuses a machine that is off', async () => {
    const raw = scratch.path('boot.raw');
    writeCountingGuest(raw);
    await ok(['vm', 'import', 'guest', raw, '--cpus', '1', '--memory', '64']);
    assert.match((await ok(['vm', 'show', 'guest'])).stdout, /^Display: +standard VGA$/m);
    const shot = scratch.path('screen.png');

    const off = await run(['vm', 'screenshot', 'guest', shot]);
    assert.equal(off.status, 1);
    assert.match(off.stderr, /Machine "guest" is off: start it to see its screen/);
    assert.equal(existsSync(shot), false);

    await ok(['vm', 'start', 'guest']);
    const status = JSON.parse((await ok(['vm', 'status', 'guest', '--json'])).stdout) as { serialLog: string };
    await waitForCounts(status.serialLog, 3); // the boot sector runs: SeaBIOS has drawn its banner
    const r = await ok(['vm', 'screenshot', 'guest', shot]);
    assert.match(r.stdout, /^Saved the screen of "guest" \(720x400\) to .*screen\.png \(.+\)\.$/m);
    const bytes = readFileSync(shot);
    assert.ok(isPng(bytes));
    const png = decodePng(bytes);
    assert.deepEqual([png.width, png.height], [720, 400]);
    assert.ok(distinctColours(png) >= 2 && inkShare(png) > 0.001, 'SeaBIOS\'s text, not a blank screen');

    const json = JSON.parse((await ok(['vm', 'screenshot', 'guest', shot, '--json'])).stdout) as { file: string; width: number; height: number; bytes: number };
    assert.deepEqual([json.file, json.width, json.height, json.bytes], [shot, 720, 400, readFileSync(shot).length]);

    const noFolder = await run(['vm', 'screenshot', 'guest', join(scratch.dir, 'missing', 'x.png')]);
    assert.equal(noFolder.status, 1);
    assert.match(noFolder.stderr, /The folder .*missing does not exist/);
  });

  it('changes the display at the next start, and says so; a headless machine has no screen to save', async () => {
    const bad = await run(['vm', 'edit', 'guest', '--display', 'cirrus']);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, /--display "cirrus" is not std, virtio or none/);

    const edited = await ok(['vm', 'edit', 'guest', '--display', 'none']);
    assert.match(edited.stdout, /^Display: +none \(no screen\)$/m);
    assert.match(edited.stdout, /display change at the next start/);
    await ok(['vm', 'screenshot', 'guest', scratch.path('still.png')]); // the running QEMU keeps its VGA

    await ok(['vm', 'stop', 'guest', '--force']);
    await ok(['vm', 'start', 'guest']);
    const headless = await run(['vm', 'screenshot', 'guest', scratch.path('none.png')]);
    assert.equal(headless.status, 1);
    assert.match(headless.stderr, /runs without a display device: set one \(vmsnap vm edit --display std\) and stop and start it/);

    await ok(['vm', 'stop', 'guest', '--force']);
    await ok(['vm', 'edit', 'guest', '--display', 'virtio']);
    assert.match((await ok(['vm', 'show', 'guest'])).stdout, /^Display: +virtio-vga$/m);
    await ok(['vm', 'start', 'guest']);
    const status = JSON.parse((await ok(['vm', 'status', 'guest', '--json'])).stdout) as { serialLog: string };
    await waitForCounts(status.serialLog, 3, readFileSync(status.serialLog).length);
    const shot = scratch.path('virtio.png');
    await ok(['vm', 'screenshot', 'guest', shot]);
    const png = decodePng(readFileSync(shot));
    assert.ok(inkShare(png) > 0.001, 'virtio-vga shows the firmware text too (it is VGA-compatible at boot)');
    await ok(['vm', 'stop', 'guest', '--force']);
  });
});
