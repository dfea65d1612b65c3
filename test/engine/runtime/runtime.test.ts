import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { PassThrough, Writable } from 'node:stream';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { attachConsole, CONSOLE_ESCAPE, openConsole } from '../../../src/engine/runtime/console';
import { isQemuError } from '../../../src/engine/runtime/errors';
import { runningTops, snapshotRunning, startFromState } from '../../../src/engine/runtime/live-snapshot';
import { isProcessAlive } from '../../../src/engine/os';
import { runtimeFiles } from '../../../src/engine/runtime/files';
import { withQmp } from '../../../src/engine/runtime/qmp';
import { machineStatus, pauseMachine, resumeMachine, runningPid, startMachine, stopMachine, type MachineConfig } from '../../../src/engine/runtime';
import { Qcow2Image } from '../../../src/engine/qcow2/image';
import { qemuCheck, qemuInfo, run, scratchDir } from '../../support/qemu';
import { ACCEL, countsSince, last, logSize, Machines, requireQemu, waitForCounts } from '../../support/guest-machines';

const opts = { accel: ACCEL };

/** qemu-io read-only with force-share, failing on a pattern mismatch (qemu-io may still exit 0). */
function verify(image: string, ...commands: string[]): void {
  const args = ['-r', '-U', '-f', 'qcow2'];
  for (const c of commands) args.push('-c', c);
  const out = run('qemu-io', [...args, image]);
  if (/Pattern verification failed|error|failed/i.test(out)) throw new Error(`qemu-io ${image} ${commands.join('; ')}: ${out}`);
}

function verifyFails(image: string, command: string): void {
  assert.throws(() => verify(image, command), /Pattern verification failed/);
}

async function hmpWrite(config: MachineConfig, command: string): Promise<void> {
  await withQmp(runtimeFiles(config.folder).qmpSocket, (qmp) => qmp.hmp(`qemu-io drive0 "${command}"`));
}

function expectClean(image: string): void {
  const c = qemuCheck(image);
  assert.equal(c.corruptions + c.leaks + c.checkErrors, 0, `qemu-img check ${image}: ${c.raw}`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('runtime: running machines with QEMU', function () {
  this.timeout(60000);
  const scratch = scratchDir('vmsnap-runtime-');
  const machines = new Machines(scratch.dir);
  before(requireQemu);
  after(async () => {
    await machines.endAll();
    scratch.cleanup();
  });

  describe('power', function () {
    let config: MachineConfig;
    before(() => {
      config = machines.make('power');
    });

    it('starts a machine whose guest counts on the serial port (log and console socket) and reports its status', async () => {
      const started = await startMachine(config, opts);
      machines.track(config.folder, started.pid);
      assert.equal(started.powerState, 'running');
      assert.ok(started.pid !== null && isProcessAlive(started.pid));
      const counts = await waitForCounts(started.serialLog, 5);
      assert.deepEqual(counts.slice(0, 5), [1, 2, 3, 4, 5], 'a fresh boot counts from 1');

      const status = await machineStatus(config.folder);
      const json = JSON.parse(JSON.stringify(status)) as Record<string, unknown>;
      assert.equal(json['powerState'], 'running');
      assert.equal(json['pid'], started.pid);
      assert.equal(json['serialLog'], join(config.folder, 'serial.log'));

      // The serial port is also a socket: a console sees the same lines as they come, until Ctrl-] leaves it.
      const input = new PassThrough();
      let consoleText = '';
      const output = new Writable({
        write(chunk: Buffer, _enc, done) {
          consoleText += chunk.toString('latin1');
          if (consoleText.split('\n').length > 3) input.write(Buffer.from([0x61, CONSOLE_ESCAPE]));
          done();
        },
      });
      const ended = await attachConsole(await openConsole(config.folder), { input, output });
      assert.equal(ended, 'escape');
      assert.match(consoleText, /[0-9A-F]{8}\n[0-9A-F]{8}\n/);
    });

    it('never runs two QEMU processes for one machine folder', async () => {
      await assert.rejects(startMachine(config, opts), (e: unknown) => isQemuError(e) && e.code === 'ALREADY_RUNNING');
      // Two starters racing for a machine that is off: exactly one wins.
      const other = machines.make('race');
      const results = await Promise.allSettled([startMachine(other, opts), startMachine(other, opts)]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status)));
      assert.ok(isQemuError(lost[0]!.reason) && lost[0]!.reason.code === 'ALREADY_RUNNING', String(lost[0]!.reason));
      await stopMachine(other.folder, { force: true });
    });

    it('pauses (the count stands still) and resumes (it goes on)', async () => {
      const log = runtimeFiles(config.folder).serialLog;
      const paused = await pauseMachine(config.folder);
      assert.equal(paused.powerState, 'paused');
      await sleep(100); // a line being printed at the pause settles
      const atPause = last(countsSince(log));
      await sleep(500);
      assert.equal(last(countsSince(log)), atPause, 'no count while paused');
      assert.equal((await machineStatus(config.folder)).powerState, 'paused');
      const resumed = await resumeMachine(config.folder);
      assert.equal(resumed.powerState, 'running');
      const after = await waitForCounts(log, countsSince(log).length + 3);
      assert.equal(last(after) > atPause, true);
    });

    it('powers off (ACPI button, then quit for a guest that ignores it) and starts again from a fresh boot', async () => {
      const files = runtimeFiles(config.folder);
      const pid = (await machineStatus(config.folder)).pid!;
      const stopped = await stopMachine(config.folder, { powerdownTimeoutMs: 300 });
      assert.equal(stopped.method, 'quit', 'the counting guest has no ACPI: quit ends it');
      assert.equal(isProcessAlive(pid), false);
      const status = await machineStatus(config.folder);
      assert.deepEqual({ powerState: status.powerState, pid: status.pid }, { powerState: 'off', pid: null });
      for (const f of [files.pidFile, files.infoFile, files.qmpSocket, files.consoleSocket]) assert.equal(existsSync(f), false, `${f} is left behind`);
      assert.deepEqual(await stopMachine(config.folder), { method: 'already-off', ms: 0 });

      const from = logSize(files.serialLog);
      const again = await startMachine(config, opts);
      machines.track(config.folder, again.pid);
      const counts = await waitForCounts(files.serialLog, 3, from);
      assert.deepEqual(counts.slice(0, 3), [1, 2, 3], 'a new power-on boots afresh');
      assert.equal((await stopMachine(config.folder, { force: true })).method, 'quit');
    });

    it('finds a machine again after the process that started it was killed, and cleans up after a QEMU that died', async () => {
      const orphan = machines.make('orphan');
      const childJs = join(scratch.dir, 'start-child.js');
      buildSync({ entryPoints: [join(__dirname, 'start-child.ts')], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: childJs, logLevel: 'warning' });
      const child = spawn(process.execPath, [childJs, JSON.stringify(orphan), ACCEL], { stdio: ['ignore', 'pipe', 'pipe'] });
      const reported = await new Promise<number>((resolve, reject) => {
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolve((JSON.parse(out) as { pid: number }).pid);
        });
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        child.on('exit', (code) => reject(new Error(`start-child exited ${code}: ${err}`)));
      });
      machines.track(orphan.folder, reported);
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));

      const status = await machineStatus(orphan.folder);
      assert.equal(status.powerState, 'running');
      assert.equal(status.pid, reported);
      assert.equal(await runningPid(orphan.folder), reported);
      await waitForCounts(status.serialLog, 3);
      await assert.rejects(startMachine(orphan, opts), (e: unknown) => isQemuError(e) && e.code === 'ALREADY_RUNNING');
      assert.equal((await stopMachine(orphan.folder, { force: true })).method, 'quit');
      assert.equal(isProcessAlive(reported), false);
      assert.equal((await machineStatus(orphan.folder)).powerState, 'off');

      // A QEMU killed outright leaves its pidfile and sockets: status says off and removes them.
      const again = await startMachine(orphan, opts);
      machines.track(orphan.folder, again.pid);
      process.kill(again.pid!, 'SIGKILL');
      while (isProcessAlive(again.pid!)) await sleep(10);
      const files = runtimeFiles(orphan.folder);
      assert.equal(existsSync(files.pidFile), true, 'a killed QEMU cannot remove its pidfile');
      assert.equal((await machineStatus(orphan.folder)).powerState, 'off');
      for (const f of [files.pidFile, files.infoFile, files.qmpSocket, files.consoleSocket]) assert.equal(existsSync(f), false, `${f} is left behind`);
      const restarted = await startMachine(orphan, opts);
      machines.track(orphan.folder, restarted.pid);
      await stopMachine(orphan.folder, { force: true });
    });

    it('fails clearly when QEMU is missing or refuses the configuration', async () => {
      const m = machines.make('bad');
      await assert.rejects(startMachine(m, { ...opts, qemuPath: join(scratch.dir, 'no-qemu') }), (e: unknown) => isQemuError(e) && e.code === 'QEMU_NOT_FOUND');
      await assert.rejects(startMachine({ ...m, disks: [join(m.folder, 'missing.qcow2')] }, opts), (e: unknown) => isQemuError(e) && e.code === 'START_FAILED' && /missing\.qcow2/.test(e.message));
      await assert.rejects(startMachine({ ...m, macAddress: 'nope' }, opts), (e: unknown) => isQemuError(e) && e.code === 'INVALID_ARGUMENT');
      assert.equal((await machineStatus(m.folder)).powerState, 'off');
    });
  });

  describe('snapshots of a running machine', function () {
    it('saves disks and memory at one instant: a revert continues the count from the snapshot, not from zero or the later value', async () => {
      const config = machines.make('live');
      const log = runtimeFiles(config.folder).serialLog;
      const started = await startMachine(config, opts);
      machines.track(config.folder, started.pid);
      await waitForCounts(log, 5);
      await hmpWrite(config, 'write -P 0xcd 1M 1M'); // data the snapshot must hold (the guest's code is at 0)

      const before = last(countsSince(log));
      const snap = await snapshotRunning(config.folder, { newTops: [join(config.folder, 'top-1.qcow2')], stateFile: join(config.folder, 'snap-1.state') }, opts);
      const after = last(countsSince(log));
      assert.deepEqual(snap.frozenLayers, [config.disks[0]]);
      assert.deepEqual(snap.newTops, [join(config.folder, 'top-1.qcow2')]);
      assert.equal(snap.stateFile, join(config.folder, 'snap-1.state'));
      assert.equal(snap.stateBytes, readFileSync(snap.stateFile).length);
      assert.ok(snap.stateBytes > 0);
      assert.ok(snap.pauseMs > 0 && snap.pauseMs < 10000, `pause ${snap.pauseMs} ms`);
      assert.equal(snap.resumed, true);
      assert.match(snap.machineType, /^pc-q35-/);
      assert.equal((await machineStatus(config.folder)).powerState, 'running', 'the machine keeps running');
      assert.deepEqual(await runningTops(config.folder), snap.newTops, 'QEMU writes into the new tops');
      assert.equal(existsSync(`${snap.stateFile}.partial`) || existsSync(`${snap.stateFile}.done`), false, 'no temporary files left');

      await hmpWrite(config, 'write -P 0xab 1M 512k'); // after the snapshot: must land in the new top only
      const later = last(await waitForCounts(log, countsSince(log).length + 20));
      await stopMachine(config.folder, { force: true });

      // The layers of the running snapshot: clean, chained by relative path, holding what was written before.
      for (const layer of [...snap.frozenLayers, ...snap.newTops]) expectClean(layer);
      assert.equal(qemuInfo(snap.newTops[0]!)['backing-filename'], 'top-0.qcow2');
      verify(snap.frozenLayers[0]!, 'read -P 0xcd 1M 1M');
      verify(snap.newTops[0]!, 'read -P 0xab 1M 512k', 'read -P 0xcd 1536k 512k');

      // Revert: a new empty top over the snapshot's layer, QEMU loads the saved state and resumes.
      const revertTop = join(config.folder, 'top-2.qcow2');
      await Qcow2Image.create(revertTop, { backingFile: snap.frozenLayers[0]! });
      const from = logSize(log);
      const reverted = await startFromState({ ...config, disks: [revertTop], machineType: snap.machineType }, snap.stateFile!, opts);
      machines.track(config.folder, reverted.pid);
      assert.equal(reverted.powerState, 'running');
      const counts = await waitForCounts(log, 5, from);
      const first = counts[0]!;
      assert.ok(first >= before + 1 && first <= after + 2, `after the revert the count goes on from the snapshot (${before}..${after}), got ${first}`);
      assert.ok(first < later - 10, `not from the later value ${later}`);
      assert.deepEqual(counts.slice(0, 5), [first, first + 1, first + 2, first + 3, first + 4], 'it keeps counting');
      await stopMachine(config.folder, { force: true });
      verify(revertTop, 'read -P 0xcd 1M 1M');
      expectClean(revertTop);
    });

    it('takes a disk-only snapshot without pausing, and keeps a paused machine paused', async () => {
      const config = machines.make('diskonly');
      const log = runtimeFiles(config.folder).serialLog;
      const started = await startMachine(config, opts);
      machines.track(config.folder, started.pid);
      await waitForCounts(log, 3);
      await hmpWrite(config, 'write -P 0x11 1M 64k');
      const diskOnly = await snapshotRunning(config.folder, { newTops: [join(config.folder, 'top-1.qcow2')], stateFile: null }, opts);
      assert.deepEqual({ stateFile: diskOnly.stateFile, pauseMs: diskOnly.pauseMs, resumed: diskOnly.resumed }, { stateFile: null, pauseMs: 0, resumed: true });
      await hmpWrite(config, 'write -P 0x22 1M 64k');

      await pauseMachine(config.folder);
      const paused = await snapshotRunning(config.folder, { newTops: [join(config.folder, 'top-2.qcow2')], stateFile: join(config.folder, 'snap-2.state') }, opts);
      assert.equal(paused.resumed, false);
      assert.equal(paused.pauseMs, 0);
      assert.deepEqual(paused.frozenLayers, [join(config.folder, 'top-1.qcow2')]);
      assert.equal((await machineStatus(config.folder)).powerState, 'paused');
      // It can still be resumed and written after the save (QEMU reactivated its disks).
      await resumeMachine(config.folder);
      await hmpWrite(config, 'write -P 0x33 1M 64k');
      const n = countsSince(log).length;
      await waitForCounts(log, n + 3);
      await stopMachine(config.folder, { force: true });
      for (const layer of [config.disks[0]!, ...diskOnly.newTops, ...paused.newTops]) expectClean(layer);
      verify(config.disks[0]!, 'read -P 0x11 1M 64k');
      verify(diskOnly.newTops[0]!, 'read -P 0x22 1M 64k');
      verify(paused.newTops[0]!, 'read -P 0x33 1M 64k');
      verifyFails(paused.newTops[0]!.replace('top-2', 'top-1'), 'read -P 0x33 1M 64k');
    });

    it('copes with folder names that are long or hold commas, spaces and quotes (QEMU options, shell, socket paths)', async () => {
      const config = machines.make(`odd, name 'with' quotes ${'x'.repeat(80)}`);
      const files = runtimeFiles(config.folder);
      assert.ok(!files.qmpSocket.startsWith(config.folder), 'sockets move to a short directory');
      const started = await startMachine(config, opts);
      machines.track(config.folder, started.pid);
      await waitForCounts(files.serialLog, 3);
      const snap = await snapshotRunning(config.folder, { newTops: [join(config.folder, "top,1 'x'.qcow2")], stateFile: join(config.folder, "it's, a state") }, opts);
      assert.ok(existsSync(snap.stateFile!));
      await stopMachine(config.folder, { force: true });
      assert.equal(existsSync(files.qmpSocket), false);
      const top = join(config.folder, 'top-2.qcow2');
      await Qcow2Image.create(top, { backingFile: snap.frozenLayers[0]! });
      const from = logSize(files.serialLog);
      const back = await startFromState({ ...config, disks: [top], machineType: snap.machineType }, snap.stateFile!, opts);
      machines.track(config.folder, back.pid);
      assert.notEqual((await waitForCounts(files.serialLog, 2, from))[0], 1, 'resumed, not booted');
      await stopMachine(config.folder, { force: true });
    });

    it('refuses a machine that is off, an existing state file, and a state loaded into other devices', async () => {
      const config = machines.make('refuse');
      await assert.rejects(
        snapshotRunning(config.folder, { newTops: [join(config.folder, 'top-1.qcow2')], stateFile: null }, opts),
        (e: unknown) => isQemuError(e) && e.code === 'NOT_RUNNING',
      );
      const started = await startMachine(config, opts);
      machines.track(config.folder, started.pid);
      const snap = await snapshotRunning(config.folder, { newTops: [join(config.folder, 'top-1.qcow2')], stateFile: join(config.folder, 's.state') }, opts);
      await assert.rejects(
        snapshotRunning(config.folder, { newTops: [join(config.folder, 'top-2.qcow2')], stateFile: snap.stateFile }, opts),
        (e: unknown) => isQemuError(e) && e.code === 'INVALID_ARGUMENT',
      );
      assert.equal(existsSync(join(config.folder, 'top-2.qcow2')), false, 'nothing is created for a refused snapshot');
      // A state save that fails before the switch-over undoes everything: disks unchanged, the guest runs on.
      await assert.rejects(
        snapshotRunning(config.folder, { newTops: [join(config.folder, 'top-2.qcow2')], stateFile: join(config.folder, 'no-dir', 'x.state') }, opts),
        (e: unknown) => isQemuError(e) && e.code === 'STATE_SAVE_FAILED' && e.switched === null,
      );
      assert.equal(existsSync(join(config.folder, 'top-2.qcow2')), false, 'the new layer is removed again');
      assert.equal((await machineStatus(config.folder)).powerState, 'running');
      const retry = await snapshotRunning(config.folder, { newTops: [join(config.folder, 'top-2.qcow2')], stateFile: join(config.folder, 's2.state') }, opts);
      assert.deepEqual(retry.frozenLayers, [join(config.folder, 'top-1.qcow2')], 'the failed attempt left the disks as they were');
      await stopMachine(config.folder, { force: true });
      const revertTop = join(config.folder, 'top-3.qcow2');
      await Qcow2Image.create(revertTop, { backingFile: snap.frozenLayers[0]! });
      await assert.rejects(
        startFromState({ ...config, memoryMiB: config.memoryMiB * 2, disks: [revertTop], machineType: snap.machineType }, snap.stateFile!, opts),
        (e: unknown) => isQemuError(e) && e.code === 'STATE_LOAD_FAILED' && /load of migration failed|mismatch/i.test(e.message),
      );
      assert.equal((await machineStatus(config.folder)).powerState, 'off');
    });
  });
});
