// Running machines through the library: start, live snapshot with memory, revert into the running state, stop.
// The guest is the counting boot sector (test/support/counting-guest.ts), imported as a raw bootable disk; TCG.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { buildSync } from 'esbuild';
import { join } from 'node:path';
import { Library, isMachineError, type MachineDetails } from '../../../src/engine/machine';
import { NO_BOOTABLE_DISK } from '../../../src/engine/machine/boot-check';
import { validateManifest } from '../../../src/engine/machine/manifest';
import { machineStatus as runtimeStatus, runningPid, runningTops, RUNTIME_FILE_NAMES, stopMachine } from '../../../src/engine/runtime';
import { qemuCheck, scratchDir } from '../../support/qemu';
import { ACCEL, countsAfterRestart, countsSince, last, libraryWithCountingGuest, logSize, stopEveryMachine, waitForCounts } from '../../support/guest-machines';

async function rejectsWith(p: Promise<unknown>, code: string, what: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isMachineError(e), `${what}: a MachineError, got ${String(e)}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    return true;
  });
}

describe('machine library: running machines (QEMU, TCG)', function () {
  this.timeout(120000);
  const scratch = scratchDir('vmsnap-running-');
  let lib: Library;
  let m: MachineDetails;

  before(async () => {
    ({ lib, machine: m } = await libraryWithCountingGuest(join(scratch.dir, 'lib'), scratch.path('guest.raw')));
  });

  after(async () => {
    // Whatever happened, no QEMU outlives the suite.
    await stopEveryMachine(lib);
    scratch.cleanup();
  });

  it('starts an imported raw boot disk, snapshots it with memory, and a revert continues the count from the snapshot', async () => {
    const started = await lib.startMachine('guest');
    assert.equal(started.powerState, 'running');
    assert.ok(started.pid !== null && started.pid > 0);
    assert.equal(started.serialLog, join(m.folder, 'serial.log'));
    await rejectsWith(lib.startMachine('guest'), 'ALREADY_RUNNING', 'a second start');
    assert.equal((await lib.show('guest')).powerState, 'running');
    const log = started.serialLog;
    await waitForCounts(log, 5);

    const before = last(countsSince(log));
    const snap = await lib.takeSnapshot('guest', 'live');
    const after = last(countsSince(log));
    assert.equal(snap.takenWhileRunning, true);
    assert.equal(snap.hasMemory, true);
    assert.equal((await lib.machineStatus('guest')).powerState, 'running', 'the machine keeps running');
    // Its size counts the saved memory (QEMU writes zero pages of RAM compactly, the rest in full): disk + memory, both reported.
    const sizes = (await lib.show('guest')).snapshots.find((s) => s.id === snap.id)!;
    const layers = sizes.layers.reduce((n, l) => n + statSync(l).blocks * 512, 0);
    assert.ok(sizes.memoryBytes > 100 * 1024, `the memory state is counted: ${sizes.memoryBytes}`);
    assert.equal(sizes.sizeBytes, layers + sizes.memoryBytes);

    // Refusals while running: clone (deleting a snapshot while running: live-delete.test.ts).
    await rejectsWith(lib.clone('guest', 'copy', { kind: 'linked', from: 'live' }), 'POWERED_ON', 'clone while running');

    const later = last(await waitForCounts(log, countsSince(log).length + 20));
    const from = logSize(log);
    const r = await lib.revert('guest', 'live', { discardCurrent: true });
    assert.equal(r.poweredOn, true, String(r.stateLoadError));
    const counts = await countsAfterRestart(log, from, later, 5);
    const first = counts[0]!;
    assert.ok(first >= before + 1 && first <= after + 2, `the count goes on from the snapshot (${before}..${after}), got ${first}`);
    assert.ok(first < later - 10, `not from the later value ${later}`);
    assert.deepEqual(counts.slice(0, 5), [first, first + 1, first + 2, first + 3, first + 4]);
    const st = await lib.machineStatus('guest');
    assert.equal(st.powerState, 'running');
    assert.notEqual(st.pid, started.pid, 'a new QEMU loaded the state');

    // A disk-only snapshot of the running machine, then pause/resume reflected in the manifest.
    const diskOnly = await lib.takeSnapshot('guest', 'disks', { diskOnly: true });
    assert.equal(diskOnly.takenWhileRunning, true);
    assert.equal(diskOnly.hasMemory, false);
    assert.equal((await lib.pauseMachine('guest')).powerState, 'paused');
    assert.equal((await lib.show('guest')).powerState, 'paused');
    assert.equal((await lib.resumeMachine('guest')).powerState, 'running');
  });

  it('a guest that ignores the power button is left running when asked not to quit QEMU after the time-out', async () => {
    const waited = await lib.stopMachine('guest', { powerdownTimeoutMs: 500, quitAfterTimeout: false });
    assert.equal(waited.method, 'still-running');
    assert.ok(waited.ms >= 450, `waited ${waited.ms} ms`);
    assert.equal((await lib.machineStatus('guest')).powerState, 'running');
    assert.equal((await lib.show('guest')).powerState, 'running');
    // Aborting the wait leaves it running at once.
    const abort = new AbortController();
    const stopping = lib.stopMachine('guest', { powerdownTimeoutMs: 30_000, quitAfterTimeout: false, signal: abort.signal });
    setTimeout(() => abort.abort(), 200);
    const aborted = await stopping;
    assert.equal(aborted.method, 'still-running');
    assert.ok(aborted.ms < 5000, `stopped waiting after ${aborted.ms} ms`);
  });

  it('knows whether a machine has anything to boot: a boot sector, or nothing (blank disk, no CD)', async () => {
    assert.equal(await lib.bootProblem('guest'), null);
    const blank = await lib.createMachine('blank', { diskSize: 1024 * 1024 });
    assert.equal(await lib.bootProblem(blank.id), NO_BOOTABLE_DISK);
    await lib.deleteMachine(blank.id);
  });

  it('stops, starts again from a cold boot, and the snapshots\' layers pass qemu-img check', async () => {
    const stop = await lib.stopMachine('guest', { force: true });
    assert.notEqual(stop.method, 'already-off');
    assert.equal((await lib.machineStatus('guest')).powerState, 'off');
    assert.equal(await runningPid(m.folder), null);
    assert.equal((await lib.show('guest')).powerState, 'off');
    for (const f of readdirSync(m.folder).filter((x) => x.endsWith('.qcow2'))) {
      const c = qemuCheck(join(m.folder, f));
      assert.equal(c.corruptions + c.leaks + c.checkErrors, 0, `${f}: ${c.raw}`);
    }

    const log = join(m.folder, 'serial.log');
    const from = logSize(log);
    const s = await lib.startMachine('guest');
    assert.equal(s.powerState, 'running');
    const counts = await waitForCounts(log, 3, from);
    assert.ok(counts[0]! <= 2, `a cold boot counts from the start, got ${counts[0]}`);

    // Revert of a running machine to a snapshot without memory: saved first (with memory), then powered off.
    const r = await lib.revert('guest', 'disks', { saveCurrentAs: 'saved' });
    assert.equal(r.poweredOn, false);
    assert.equal(r.saved?.hasMemory, true);
    assert.equal(await runningPid(m.folder), null);
    assert.equal((await lib.show('guest')).powerState, 'off');
    // And back into the saved running state: the count continues from where it was saved (well past a cold boot).
    const from2 = logSize(log);
    const back = await lib.revert('guest', 'saved', { discardCurrent: true });
    assert.equal(back.poweredOn, true, String(back.stateLoadError));
    const resumed = await waitForCounts(log, 2, from2);
    assert.ok(resumed[0]! > counts[0]! + 1, `resumed from the saved state, got ${resumed[0]}`);

    // A stale manifest is reconciled from QEMU's process: killed behind the library's back, it reads as off.
    await stopMachine(m.folder, { force: true });
    assert.equal((await lib.show('guest')).powerState, 'off');
    assert.equal((await lib.machineStatus('guest')).powerState, 'off');
    assert.equal((await runtimeStatus(m.folder)).pid, null);

    // Deleting a snapshot with memory (powered off) deletes its state file too.
    const live = (await lib.show('guest')).snapshots.find((x) => x.name === 'live')!;
    assert.ok(existsSync(join(m.folder, `state-${live.id}.state`)));
    await lib.deleteSnapshot('guest', live.id);
    assert.equal(existsSync(join(m.folder, `state-${live.id}.state`)), false);
  });

  it('recovers a running snapshot killed at every step: QEMU always writes into the manifest\'s tops, nothing is left over', async () => {
    const child = scratch.path('crash-child.js');
    buildSync({ entryPoints: [join(__dirname, 'crash-child.ts')], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: child, logLevel: 'warning' });
    await lib.startMachine('guest');
    const outcomes: string[] = [];
    let completed = false;
    for (let n = 1; n <= 30 && !completed; n++) {
      const before = (await lib.show('guest')).snapshots.length;
      const r = spawnSync(process.execPath, [child, lib.dir, 'take-running'], { encoding: 'utf8', env: { ...process.env, VMSNAP_CRASH_AFTER_STEP: String(n) } });
      completed = r.status === 0;
      if (!completed) assert.equal(r.signal, 'SIGKILL', `step ${n}: failed instead of being killed: ${r.stderr}`);
      const reopened = await Library.open(lib.dir, { qemu: { accel: ACCEL } });
      const d = await reopened.show('guest');
      outcomes.push(`${n}:${d.snapshots.length > before ? 'after' : 'before'}`);
      assert.equal(d.powerState, 'running', `step ${n}: the machine keeps running`);
      assert.deepEqual(await runningTops(m.folder), d.disks.map((x) => x.path), `step ${n}: QEMU writes into the manifest's tops`);
      const manifest = JSON.parse(readFileSync(join(m.folder, 'machine.json'), 'utf8')) as { disks: { top: string }[]; snapshots: { layers: string[]; stateFile: string | null; thumbnail?: string }[] };
      const owned = (x: { stateFile: string | null; thumbnail?: string }): string[] => [...(x.stateFile === null ? [] : [x.stateFile]), ...(x.thumbnail === undefined ? [] : [x.thumbnail])];
      const known = new Set(['machine.json', ...manifest.disks.map((x) => x.top), ...manifest.snapshots.flatMap((x) => [...x.layers, ...owned(x)])]);
      const leftovers = readdirSync(m.folder).filter((f) => !known.has(f) && !RUNTIME_FILE_NAMES.includes(f) && !f.endsWith('.lock'));
      assert.deepEqual(leftovers, [], `step ${n}: leftovers`);
    }
    assert.ok(completed, `the snapshot did not complete within 30 steps: ${outcomes.join(' ')}`);
    assert.ok(outcomes.length >= 2, outcomes.join(' '));
    const live = (await lib.show('guest')).snapshots.filter((x) => x.name === 'live');
    assert.ok(live.some((x) => !x.hasMemory), `a kill right after QEMU switched disks rolls forward, keeping the disks only: ${outcomes.join(' ')}`);
    assert.ok(live.some((x) => x.hasMemory), 'the completed snapshot holds the memory');
    await lib.stopMachine('guest', { force: true });
  });

  it('a memory snapshot records the memory QEMU runs with, not a size edited since: its revert loads', async () => {
    if ((await lib.machineStatus('guest')).powerState !== 'off') await lib.stopMachine('guest', { force: true });
    await lib.editMachine('guest', { memoryMiB: 64 });
    const st = await lib.startMachine('guest');
    await waitForCounts(st.serialLog, 2);
    await lib.editMachine('guest', { memoryMiB: 96 }); // for the next start
    const s = await lib.takeSnapshot('guest', 'before the edit applies');
    assert.equal(s.hasMemory, true);
    const r = await lib.revert('guest', s.id, { discardCurrent: true });
    assert.equal(r.poweredOn, true, String(r.stateLoadError));
    await lib.stopMachine('guest', { force: true });
    await lib.editMachine('guest', { memoryMiB: 64 });
  });

  it('takes 40 snapshots in one QEMU session: the file QEMU writes into is known past its 4 KiB chain description', async () => {
    // QEMU's filename for a top node describes the whole chain as json:{...} and is cut at 4 KiB (~27 layers).
    if ((await lib.machineStatus('guest')).powerState !== 'off') await lib.stopMachine('guest', { force: true });
    const st = await lib.startMachine('guest');
    await waitForCounts(st.serialLog, 2);
    for (let i = 0; i < 40; i++) await lib.takeSnapshot('guest', `deep ${i}`, { diskOnly: true });
    const tops = (await lib.show('guest')).disks.map((d) => d.path);
    assert.deepEqual(await runningTops(m.folder), tops);
    const n = countsSince(st.serialLog).length;
    await waitForCounts(st.serialLog, n + 3);
    await lib.stopMachine('guest', { force: true });
  });

  it('deletes a running machine: QEMU is ended and the folder (with its state files) removed', async () => {
    await lib.startMachine('guest');
    await lib.takeSnapshot('guest', 'with memory');
    const details = await lib.show('guest');
    assert.ok(readdirSync(m.folder).some((f) => f.endsWith('.state')));
    assert.ok(details.snapshots.some((x) => x.hasMemory));
    await lib.deleteMachine('guest');
    assert.equal(existsSync(m.folder), false);
    assert.deepEqual(await lib.list(), []);
  });
});

describe('machine manifest: running-machine fields', () => {
  it('reads manifests written before machines could run (no stateFile, no vm) as disk-only snapshots', () => {
    const base = {
      format: 'vmsnap-machine',
      version: 1,
      revision: 3,
      id: '0f0e0d0c-0b0a-4000-8000-000000000001',
      name: 'old',
      macAddress: '52:54:00:aa:bb:cc',
      cpus: 1,
      memoryMiB: 64,
      powerState: 'off',
      createdAt: '2024-05-01T00:00:00.000Z',
      note: '',
      disks: [{ virtualSize: 1048576, top: 'disk0-b.qcow2' }],
      snapshots: [{ id: 's1', name: 'S', description: '', parentId: null, createdAt: '2024-05-01T00:00:00.000Z', takenWhileRunning: false, layers: ['disk0-a.qcow2'] }],
      current: 's1',
      clonedFrom: null,
    };
    const m = validateManifest(base, 'machine.json');
    assert.equal(m.snapshots[0]!.stateFile, null);
    assert.equal(m.snapshots[0]!.vm, null);
    assert.equal(validateManifest({ ...base, powerState: 'paused' }, 'machine.json').powerState, 'paused');
    const vm = { cpus: 1, memoryMiB: 64, macAddress: '52:54:00:aa:bb:cc', machineType: 'pc-q35-7.2', accel: 'tcg', qemuVersion: '7.2.0' };
    const live = validateManifest({ ...base, snapshots: [{ ...base.snapshots[0], takenWhileRunning: true, stateFile: 'state-s1.state', vm }] }, 'machine.json');
    assert.deepEqual(live.snapshots[0]!.vm, vm);
    assert.throws(() => validateManifest({ ...base, snapshots: [{ ...base.snapshots[0], stateFile: '../x.state' }] }, 'machine.json'), /stateFile/);
    assert.throws(() => validateManifest({ ...base, snapshots: [{ ...base.snapshots[0], stateFile: 'a.state', vm: { ...vm, accel: 'hvf' } }] }, 'machine.json'), /vm\.accel/);
    assert.throws(() => validateManifest({ ...base, powerState: 'sleeping' }, 'machine.json'), /powerState/);
  });
});
