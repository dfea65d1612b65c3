// `vmsnap vm import|start|status|stop` on a raw bootable disk, through runCli in-process (TCG), and the --json shapes.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { isAbsolute, join } from 'node:path';
import { Library } from '../../src/engine/machine';
import { stopMachine } from '../../src/engine/runtime';
import { countsInLog, writeCountingGuest } from '../support/counting-guest';
import { ACCEL, requireQemu, waitForCounts } from '../support/guest-machines';
import { scratchDir } from '../support/qemu';
import { runCaptured, type Captured } from './in-process';
import { buildCli, ROOT } from './vmsnap';

describe('cli: vm start, status, stop, snapshot take --disk-only (QEMU, TCG)', function () {
  this.timeout(60000);
  const scratch = scratchDir('vmsnap-cli-runtime-');
  const libDir = join(scratch.dir, 'lib');

  const run = (args: string[]): Promise<Captured> => runCaptured(['--library', libDir, ...args], { env: { VMSNAP_QEMU_ACCEL: ACCEL } });

  async function json<T>(args: string[]): Promise<T> {
    const r = await run([...args, '--json']);
    assert.equal(r.status, 0, `vmsnap ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  before(() => requireQemu());

  after(async () => {
    const lib = await Library.open(libDir);
    for (const m of await lib.list()) await stopMachine(m.folder, { force: true }).catch(() => {});
    scratch.cleanup();
  });

  it('imports a raw boot disk, starts it, reports status as JSON, takes a disk-only snapshot and stops it', async () => {
    const raw = scratch.path('boot.raw');
    writeCountingGuest(raw);
    assert.equal((await run(['vm', 'import', 'guest', raw, '--cpus', '1', '--memory', '64'])).status, 0);

    const off = await json<{ powerState: string; pid: number | null; serialLog: string }>(['vm', 'status', 'guest']);
    assert.equal(off.powerState, 'off');
    assert.equal(off.pid, null);
    assert.ok(isAbsolute(off.serialLog));

    const start = await run(['vm', 'start', 'guest']);
    assert.equal(start.status, 0, start.stderr);
    assert.match(start.stdout, /Started "guest"/);
    const again = await run(['vm', 'start', 'guest']);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /ALREADY_RUNNING|already/i);

    const on = await json<{ powerState: string; pid: number | null; serialLog: string }>(['vm', 'status', 'guest']);
    assert.equal(on.powerState, 'running');
    assert.ok(typeof on.pid === 'number' && on.pid > 0);
    assert.ok(isAbsolute(on.serialLog) && on.serialLog.endsWith('serial.log'));
    await waitForCounts(on.serialLog, 3);

    const clone = await run(['clone', 'guest', 'copy', '--full']);
    assert.equal(clone.status, 1);
    assert.match(clone.stderr, /Machine "guest" is running: power it off/);

    const snap = await json<{ takenWhileRunning: boolean; hasMemory: boolean }>(['snapshot', 'take', 'guest', 'disks', '--disk-only']);
    assert.deepEqual([snap.takenWhileRunning, snap.hasMemory], [true, false]);
    // Deleting it while the machine runs: QEMU merges the layer it reads (a block job), the machine runs on.
    assert.equal((await run(['snapshot', 'take', 'guest', 'later', '--disk-only'])).status, 0);
    const deleted = await run(['snapshot', 'delete', 'guest', 'disks']);
    assert.equal(deleted.status, 0, deleted.stderr);
    assert.match(deleted.stdout, /Deleted snapshot "disks" of "guest"/);
    assert.equal((await json<{ powerState: string }>(['vm', 'status', 'guest'])).powerState, 'running');

    assert.equal((await run(['vm', 'pause', 'guest'])).status, 0);
    assert.equal((await json<{ powerState: string }>(['vm', 'status', 'guest'])).powerState, 'paused');
    assert.equal((await run(['vm', 'resume', 'guest'])).status, 0);

    const stop = await run(['vm', 'stop', 'guest', '--force']);
    assert.equal(stop.status, 0, stop.stderr);
    assert.match(stop.stdout, /Stopped "guest"/);
    const after = await json<{ powerState: string; pid: number | null }>(['vm', 'status', 'guest']);
    assert.deepEqual([after.powerState, after.pid], ['off', null]);
    assert.equal((await run(['vm', 'pause', 'guest'])).status, 1, 'pausing an off machine is refused');
  });

  it('vm console shows the end of the serial log, then the live output, until Ctrl-] leaves it', async () => {
    await buildCli();
    assert.equal((await run(['vm', 'start', 'guest'])).status, 0);
    const { serialLog } = await json<{ serialLog: string }>(['vm', 'status', 'guest']);
    await waitForCounts(serialLog, 3);
    // The real binary with a pipe for a terminal: not a TTY, so no raw mode; Ctrl-] is a byte on stdin.
    const child = spawn(process.execPath, [join(ROOT, 'bin/vmsnap'), '--library', libDir, 'vm', 'console', 'guest'], {
      env: { ...process.env, VMSNAP_QEMU_ACCEL: ACCEL },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const until = async (check: () => boolean, what: string): Promise<void> => {
      for (const deadline = Date.now() + 20_000; !check(); await new Promise((r) => setTimeout(r, 100))) {
        if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}: ${stderr} ${stdout.slice(-200)}`);
      }
    };
    // The log's last lines come first, then the live count goes on.
    await until(() => stderr.includes('── Live ──') && countsInLog(stdout).length > 0, 'the replayed log');
    const replayed = countsInLog(stdout).length;
    await until(() => countsInLog(stdout).length >= replayed + 3, 'live output');
    child.stdin.write(Buffer.from([0x1d]));
    assert.equal(await exited, 0, stderr);
    assert.match(stderr, /Connected to the serial console of "guest"\. Press Ctrl-\] to leave\.\n── Earlier output \(serial\.log\) ──\n── Live ──\n/);
    // Counts in order, none missing (one may show twice: the log is read just after connecting).
    const counts = countsInLog(stdout);
    for (let i = 1; i < counts.length; i++) assert.ok(counts[i]! - counts[i - 1]! <= 1 && counts[i]! >= counts[i - 1]! - 18, `counts: ${counts.join(',')}`);
    assert.equal((await json<{ powerState: string }>(['vm', 'status', 'guest'])).powerState, 'running', 'leaving the console leaves the machine running');
    assert.equal((await run(['vm', 'stop', 'guest', '--force'])).status, 0);
  });

  it('vm console leaves when its piped input ends, after the guest has answered', async () => {
    await buildCli();
    assert.equal((await run(['vm', 'start', 'guest'])).status, 0);
    const { serialLog } = await json<{ serialLog: string }>(['vm', 'status', 'guest']);
    await waitForCounts(serialLog, 2);
    const child = spawn(process.execPath, [join(ROOT, 'bin/vmsnap'), '--library', libDir, 'vm', 'console', 'guest'], {
      env: { ...process.env, VMSNAP_QEMU_ACCEL: ACCEL },
    });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const t0 = Date.now();
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    child.stdin.end('\r'); // a script's input: one line, then end of file
    // This guest never goes quiet (it counts), so the console leaves at CONSOLE_EOF_MAX_MS (10 s) after the end.
    assert.equal(await exited, 0, stderr);
    assert.ok(Date.now() - t0 < 20_000, `left after ${Date.now() - t0} ms`);
    assert.equal((await json<{ powerState: string }>(['vm', 'status', 'guest'])).powerState, 'running', 'leaving the console leaves the machine running');
    assert.equal((await run(['vm', 'stop', 'guest', '--force'])).status, 0);
  });
});
