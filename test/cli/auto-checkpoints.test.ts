// `vmsnap vm edit --auto-*`, `vmsnap checkpoint [--auto]` and `vmsnap auto run --once`, in-process on a temporary
// library whose disk is written with qemu-io.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { Library, type AutoCheckpointOutcome, type MachineDetails } from '../../src/engine/machine';
import { requireTool, run, scratchDir } from '../support/qemu';
import { runCaptured } from './in-process';

describe('vmsnap automatic checkpoints (CLI)', function () {
  this.timeout(60000);
  let scratch: ReturnType<typeof scratchDir>;
  let libDir: string;
  let vm: MachineDetails;
  const cli = (...argv: string[]): ReturnType<typeof runCaptured> => runCaptured(['--library', libDir, ...argv]);
  const write = async (pattern: number): Promise<void> => {
    const lib = await Library.open(libDir);
    run('qemu-io', ['-f', 'qcow2', '-c', `write -P ${pattern} 0 64k`, await lib.diskPath('dev')]);
  };

  before(() => {
    requireTool('qemu-img');
    requireTool('qemu-io');
  });
  beforeEach(async () => {
    scratch = scratchDir('vmsnap-cli-auto-');
    libDir = join(scratch.dir, 'lib');
    vm = await (await Library.open(libDir)).createMachine('dev', { diskSize: 8 * 1024 * 1024 });
  });
  afterEach(() => scratch.cleanup());

  it('vm edit sets, shows and turns off the policy, and refuses bad intervals', async () => {
    const on = await cli('vm', 'edit', 'dev', '--auto-every', '1h30m', '--auto-keep', '4', '--auto-daily', '3', '--auto-weekly', '2');
    assert.equal(on.status, 0, on.stderr);
    assert.match(on.stdout, /Auto: +every 90m, keep the newest 4, \+ 3 daily, \+ 2 weekly/);
    assert.match((await cli('vm', 'show', 'dev')).stdout, /Auto: +every 90m/);
    const json = JSON.parse((await cli('--json', 'vm', 'show', 'dev')).stdout) as MachineDetails;
    assert.deepEqual(json.autoCheckpoints, { everySeconds: 5400, keep: 4, daily: 3, weekly: 2 });
    const bad = await cli('vm', 'edit', 'dev', '--auto-every', '30 minutes');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--auto-every "30 minutes" is not an interval/);
    assert.equal((await cli('vm', 'edit', 'dev', '--auto-off', '--auto-keep', '3')).status, 2);
    const off = await cli('vm', 'edit', 'dev', '--auto-off');
    assert.match(off.stdout, /Auto: +off/);
    assert.equal(vm.autoCheckpoints, null);
  });

  it('checkpoint --auto takes one when the machine changed, skips otherwise, and never fails the hook', async () => {
    const none = await cli('checkpoint', 'dev', '--auto');
    assert.equal(none.status, 0);
    assert.match(none.stderr, /has no automatic checkpoints/);
    const missing = await cli('checkpoint', 'no-such-vm', '--auto');
    assert.equal(missing.status, 0, 'a hook is never failed');
    assert.match(missing.stderr, /No automatic checkpoint of "no-such-vm"/);
    await cli('vm', 'edit', 'dev', '--auto-every', '30m');
    assert.match((await cli('checkpoint', 'dev', '--auto')).stderr, /has not changed/);
    await write(1);
    const taken = await cli('--json', 'checkpoint', 'dev', '--auto', '--reason', 'git post-checkout main');
    const o = JSON.parse(taken.stdout) as AutoCheckpointOutcome;
    assert.equal(o.result, 'taken');
    assert.equal(o.snapshot?.auto, true);
    assert.equal(o.snapshot?.description, 'Automatic checkpoint: git post-checkout main.');
    await write(2);
    // A second hook firing for the same branch switch: within the short gap, nothing more.
    const again = await cli('checkpoint', 'dev', '--auto');
    assert.equal(again.status, 0);
    assert.match(again.stderr, /is due yet/);
    // Without --auto: one of the user's own, at once.
    const own = await cli('--json', 'checkpoint', 'dev');
    assert.equal(own.status, 0, own.stderr);
    assert.match(JSON.parse(own.stdout).name as string, /^Checkpoint \d{4}-\d\d-\d\d \d\d:\d\d$/);
    const list = await cli('snapshot', 'list', 'dev');
    assert.equal(list.stdout.match(/\[auto\]/g)?.length, 1, list.stdout);
  });

  it('auto run --once takes the due checkpoints of every machine with a policy', async () => {
    await cli('vm', 'edit', 'dev', '--auto-every', '30m');
    await write(3);
    const r = await cli('auto', 'run', '--once');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Took automatic checkpoint "Auto [\d-]+ [\d:]+" of "dev"/);
    const r2 = await cli('auto', 'run', '--once');
    assert.equal(r2.stdout + r2.stderr, '', 'nothing due: nothing said');
  });
});
