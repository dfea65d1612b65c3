// Deleting snapshots of a running machine with QEMU's block jobs: the counting guest keeps counting through every
// merge, every other state reads as before (qemu-img compare against copies made first), and a kill of QEMU or of
// our process in the middle of a long job leaves a machine that opens, starts and has its data.
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { isMachineError, Library } from '../../../src/engine/machine';
import { blockJobs, runningPid, runningTops, RUNTIME_FILE_NAMES, runtimeFiles, withQmp } from '../../../src/engine/runtime';
import { writeCountingGuest } from '../../support/counting-guest';
import { ACCEL, countsSince, last, logSize, requireQemu, stopEveryMachine, waitForCounts } from '../../support/guest-machines';
import { qemuCheck, qemuImg, qemuIo, runStatus, scratchDir } from '../../support/qemu';

const MiB = 1024 * 1024;

interface ManifestView {
  current: string | null;
  baseImage?: { layer: string };
  disks: { top: string }[];
  snapshots: { id: string; name: string; parentId: string | null; layers: string[]; stateFile: string | null; thumbnail?: string }[];
}

function manifestOf(folder: string): ManifestView {
  return JSON.parse(readFileSync(join(folder, 'machine.json'), 'utf8')) as ManifestView;
}

function layerOf(folder: string, snapshot: string): string {
  const s = manifestOf(folder).snapshots.find((x) => x.name === snapshot);
  if (!s) throw new Error(`no snapshot ${snapshot}`);
  return join(folder, s.layers[0]!);
}

function topOf(folder: string): string {
  return join(folder, manifestOf(folder).disks[0]!.top);
}

/** Writes into the running disk's top through QEMU (the guest itself never writes). */
async function writeLive(folder: string, command: string): Promise<void> {
  await withQmp(runtimeFiles(folder).qmpSocket, (q) => q.hmp(`qemu-io drive0 "${command}"`));
}

/** Every file in the folder is the manifest's or the runtime's: merged layers and state files are gone. */
function assertNoLeftovers(folder: string): void {
  const m = manifestOf(folder);
  const known = new Set(['machine.json', ...m.disks.map((d) => d.top), ...m.snapshots.flatMap((s) => [...s.layers, ...(s.stateFile === null ? [] : [s.stateFile]), ...(s.thumbnail === undefined ? [] : [s.thumbnail])])]);
  if (m.baseImage) known.add(m.baseImage.layer);
  const left = readdirSync(folder).filter((f) => !known.has(f) && !RUNTIME_FILE_NAMES.includes(f) && !f.endsWith('.lock'));
  assert.deepEqual(left, [], 'files no state uses are removed');
}

function assertChecksClean(folder: string): void {
  for (const f of readdirSync(folder).filter((x) => x.endsWith('.qcow2'))) {
    const c = qemuCheck(join(folder, f));
    assert.equal(c.corruptions + c.leaks + c.checkErrors, 0, `qemu-img check ${f}: ${c.raw}`);
  }
}

/** The count after `from` goes on from `lastBefore` with no restart: n more consecutive counts. */
async function assertCountGoesOn(log: string, from: number, lastBefore: number, what: string): Promise<number> {
  const counts = await waitForCounts(log, 10, from);
  assert.ok(counts[0]! > lastBefore - 1 && counts[0]! <= lastBefore + 40, `${what}: the count goes on from ${lastBefore}, got ${counts[0]}`);
  counts.forEach((c, i) => i > 0 && assert.equal(c, counts[i - 1]! + 1, `${what}: no reset (${counts.join(' ')})`));
  return last(counts);
}

async function waitForJobProgress(folder: string, minBytes: number): Promise<void> {
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    const jobs = await blockJobs(folder).catch(() => []);
    if (jobs.some((j) => j.status === 'running' && j['current-progress'] >= minBytes)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no block job made progress within 20 s');
}

describe('machine library: deleting snapshots while the machine runs (QEMU block jobs, TCG)', function () {
  this.timeout(120000);
  const scratch = scratchDir('vmsnap-live-delete-');
  let lib: Library;
  let child: string;

  /** A machine on the counting guest with a sparse disk big enough for the test's data. */
  async function guestMachine(name: string, size: number): Promise<string> {
    const raw = scratch.path(`${name}.raw`);
    writeCountingGuest(raw);
    truncateSync(raw, size);
    return (await lib.importMachine(name, raw, { cpus: 1, memoryMiB: 32 })).machine.folder;
  }

  before(async () => {
    requireQemu();
    lib = await Library.open(join(scratch.dir, 'lib'), { qemu: { accel: ACCEL } });
    child = scratch.path('crash-child.js');
    buildSync({ entryPoints: [join(__dirname, 'crash-child.ts')], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: child, logLevel: 'warning' });
  });

  after(async () => {
    delete process.env['VMSNAP_TEST_BLOCK_JOB_SPEED'];
    await stopEveryMachine(lib);
    scratch.cleanup();
  });

  it('deletes a middle snapshot, the base\'s child and the current state\'s parent (with its memory) while the count goes on; the rest reads as before', async () => {
    const folder = await guestMachine('guest', 64 * MiB);
    // The data goes above the first MiB: the boot sector must survive for the cold boot at the end.
    const { serialLog: log } = await lib.startMachine('guest');
    await waitForCounts(log, 3);
    await writeLive(folder, 'write -P 0x11 1M 512k');
    await lib.takeSnapshot('guest', 'A', { diskOnly: true });
    await writeLive(folder, 'write -P 0x22 2M 2M');
    await lib.takeSnapshot('guest', 'B', { diskOnly: true });
    await writeLive(folder, 'write -P 0x33 3M 1M');
    await lib.takeSnapshot('guest', 'C', { diskOnly: true });
    await writeLive(folder, 'write -P 0x44 4M 1M');
    const d = await lib.takeSnapshot('guest', 'D');
    assert.equal(d.hasMemory, true);
    await writeLive(folder, 'write -P 0x55 6M 512k');
    // Copies of the state that stays (its whole chain, flattened) to compare with afterwards.
    const copyC = scratch.path('C.qcow2');
    qemuImg('convert', '-U', '-O', 'qcow2', layerOf(folder, 'C'), copyC);
    const stateD = join(folder, manifestOf(folder).snapshots.find((s) => s.name === 'D')!.stateFile!);
    assert.ok(existsSync(stateD));

    const deletions: [string, string][] = [
      ['B', 'commit'], // a middle snapshot: its one dependant (C, smaller) merges into it, below QEMU's chain top
      ['A', 'rebase'], // the base's child: its layer streams up into the (bigger) dependant, which then reads the base
      ['D', 'commit'], // the current state's parent: the active top commits into it and QEMU pivots
    ];
    for (const [name, strategy] of deletions) {
      const from = logSize(log);
      const before = last(countsSince(log));
      const progress: number[] = [];
      const r = await lib.deleteSnapshot('guest', name, { onProgress: (done) => progress.push(done) });
      assert.equal(r.merges[0]!.strategy, strategy, `deleting ${name}`);
      assert.equal((await lib.machineStatus('guest')).powerState, 'running', `${name}: the machine keeps running`);
      await assertCountGoesOn(log, from, before, `deleting ${name}`);
      assertNoLeftovers(folder);
    }
    assert.equal(existsSync(stateD), false, 'the deleted snapshot\'s memory state file goes with it');
    assert.deepEqual((await lib.show('guest')).snapshots.map((s) => s.name), ['C']);

    await lib.stopMachine('guest', { force: true });
    const cmp = runStatus('qemu-img', ['compare', layerOf(folder, 'C'), copyC]);
    assert.equal(cmp.status, 0, `snapshot C reads as before: ${cmp.stdout}${cmp.stderr}`);
    qemuIo(topOf(folder), ['read -P 0x11 1M 512k', 'read -P 0x22 2M 1M', 'read -P 0x33 3M 1M', 'read -P 0x44 4M 1M', 'read -P 0 5M 1M', 'read -P 0x55 6M 512k']);
    assertChecksClean(folder);
    const restartFrom = logSize(log);
    const again = await lib.startMachine('guest');
    await waitForCounts(again.serialLog, 3, restartFrom);
    await lib.stopMachine('guest', { force: true });
  });

  it('a commit under a branch point re-points the branch QEMU does not read: both branches read as before', async () => {
    const folder = await guestMachine('branches', 64 * MiB);
    let { serialLog: log } = await lib.startMachine('branches');
    await waitForCounts(log, 3);
    await writeLive(folder, 'write -P 0x11 1M 2M');
    await lib.takeSnapshot('branches', 'A', { diskOnly: true });
    await writeLive(folder, 'write -P 0x22 2M 1M');
    await lib.takeSnapshot('branches', 'B', { diskOnly: true });
    await writeLive(folder, 'write -P 0x77 4M 1M');
    await lib.takeSnapshot('branches', 'X', { diskOnly: true });
    await lib.revert('branches', 'B', { discardCurrent: true });
    ({ serialLog: log } = await lib.startMachine('branches'));
    await waitForCounts(log, 3, logSize(log));
    await writeLive(folder, 'write -P 0x33 3M 1M');
    await lib.takeSnapshot('branches', 'C', { diskOnly: true });
    const copies = { X: scratch.path('br-X.qcow2'), C: scratch.path('br-C.qcow2') };
    for (const [name, copy] of Object.entries(copies)) qemuImg('convert', '-U', '-O', 'qcow2', layerOf(folder, name), copy);
    const from = logSize(log);
    const before = last(countsSince(log));
    // B (1 MiB) is smaller than A (2 MiB) and A's only dependant: B commits into A; C (QEMU's) and X (not) read A next.
    const r = await lib.deleteSnapshot('branches', 'A');
    assert.equal(r.merges[0]!.strategy, 'commit');
    await assertCountGoesOn(log, from, before, 'deleting A');
    assertNoLeftovers(folder);
    await lib.stopMachine('branches', { force: true });
    for (const [name, copy] of Object.entries(copies)) {
      assert.equal(runStatus('qemu-img', ['compare', layerOf(folder, name), copy]).status, 0, `snapshot ${name} reads as before`);
    }
    assertChecksClean(folder);
  });

  it('deletes a snapshot with its children while running: the current state streams what it read from them', async () => {
    const folder = await guestMachine('tree', 64 * MiB);
    const { serialLog: log } = await lib.startMachine('tree');
    await waitForCounts(log, 3);
    await writeLive(folder, 'write -P 0x11 1M 1M');
    await lib.takeSnapshot('tree', 'A', { diskOnly: true });
    await writeLive(folder, 'write -P 0x22 2M 1M');
    await lib.takeSnapshot('tree', 'B', { diskOnly: true });
    await writeLive(folder, 'write -P 0x33 3M 1M');
    await lib.takeSnapshot('tree', 'C');
    await writeLive(folder, 'write -P 0x44 4M 1M');
    const copyA = scratch.path('tree-A.qcow2');
    qemuImg('convert', '-U', '-O', 'qcow2', layerOf(folder, 'A'), copyA);
    const from = logSize(log);
    const before = last(countsSince(log));
    const r = await lib.deleteSnapshot('tree', 'B', { children: true });
    assert.deepEqual(r.deleted.map((x) => x.name).sort(), ['B', 'C']);
    await assertCountGoesOn(log, from, before, 'deleting B with its children');
    assertNoLeftovers(folder);
    await lib.stopMachine('tree', { force: true });
    assert.equal(runStatus('qemu-img', ['compare', layerOf(folder, 'A'), copyA]).status, 0, 'snapshot A reads as before');
    qemuIo(topOf(folder), ['read -P 0x11 1M 1M', 'read -P 0x22 2M 1M', 'read -P 0x33 3M 1M', 'read -P 0x44 4M 1M']);
    assertChecksClean(folder);
  });

  /** A machine off with two snapshot layers of `aMiB` and `bMiB` written (A below B), started. */
  async function bigMachine(name: string, aMiB: number, bMiB: number): Promise<{ folder: string; log: string }> {
    const folder = await guestMachine(name, 512 * MiB);
    qemuIo(topOf(folder), [`write -P 0xa1 1M ${aMiB}M`]);
    await lib.takeSnapshot(name, 'A');
    qemuIo(topOf(folder), [`write -P 0xb2 ${1 + aMiB - 32}M ${bMiB}M`]);
    await lib.takeSnapshot(name, 'B');
    qemuIo(topOf(folder), ['write -P 0xc3 300M 1M']);
    const { serialLog: log } = await lib.startMachine(name);
    await waitForCounts(log, 3);
    return { folder, log };
  }

  function assertBigData(folder: string, aMiB: number, bMiB: number): void {
    qemuIo(topOf(folder), [`read -P 0xa1 1M ${aMiB - 32}M`, `read -P 0xb2 ${1 + aMiB - 32}M ${bMiB}M`, 'read -P 0xc3 300M 1M']);
    assertChecksClean(folder);
  }

  it('deleting the current state\'s parent killed at every step: QEMU writes into the manifest\'s top, the guest runs, the data is there', async () => {
    const folder = await guestMachine('steps', 64 * MiB);
    const { serialLog: log } = await lib.startMachine('steps');
    await waitForCounts(log, 3);
    const outcomes: string[] = [];
    let completed = false;
    for (let n = 1; n <= 20 && !completed; n++) {
      // Each round: a snapshot over fresh data, then data only the current state has; the child deletes it.
      await writeLive(folder, `write -P ${0x10 + n} ${n}M 512k`);
      await lib.takeSnapshot('steps', `P${n}`, { diskOnly: true });
      await writeLive(folder, `write -P ${0x40 + n} ${n}M 256k`);
      const r = spawnSync(process.execPath, [child, lib.dir, 'delete-live-newest'], { encoding: 'utf8', env: { ...process.env, VMSNAP_CRASH_AFTER_STEP: String(n) } });
      completed = r.status === 0;
      if (!completed) assert.equal(r.signal, 'SIGKILL', `step ${n}: failed instead of being killed: ${r.stderr}`);
      const reopened = await Library.open(lib.dir, { qemu: { accel: ACCEL } });
      const d = await reopened.show('steps');
      outcomes.push(`${n}:${d.snapshots.some((x) => x.name === `P${n}`) ? 'kept' : 'deleted'}`);
      assert.deepEqual(await runningTops(folder), d.disks.map((x) => x.path), `step ${n}: QEMU writes into the manifest's top`);
      assert.equal((await reopened.machineStatus('steps')).qemuRunState, 'running', `step ${n}: the guest runs (not left paused by a pivot)`);
      assert.deepEqual(await blockJobs(folder), [], `step ${n}: no job is left in QEMU`);
      assertNoLeftovers(folder);
      const from = logSize(log);
      await assertCountGoesOn(log, from, last(countsSince(log)), `step ${n}`);
    }
    assert.ok(completed, `the deletion did not complete within 20 steps: ${outcomes.join(' ')}`);
    assert.ok(outcomes.some((o) => o.endsWith('kept')) && outcomes.some((o) => o.endsWith('deleted')), outcomes.join(' '));
    await lib.stopMachine('steps', { force: true });
    const reads: string[] = [];
    for (let n = 1; n <= outcomes.length; n++) reads.push(`read -P ${0x40 + n} ${n}M 256k`, `read -P ${0x10 + n} ${n * 1024 + 256}k 256k`);
    qemuIo(topOf(folder), reads);
    assertChecksClean(folder);
  });

  it('Cancel during a stream stops QEMU\'s job: the snapshot stays and every state reads as before', async () => {
    process.env['VMSNAP_TEST_BLOCK_JOB_SPEED'] = String(16 * MiB);
    const { folder, log } = await bigMachine('k3', 64, 96);
    const copyB = scratch.path('k3-B.qcow2');
    qemuImg('convert', '-U', '-O', 'qcow2', layerOf(folder, 'B'), copyB);
    const from = logSize(log);
    const before = last(countsSince(log));
    const abort = new AbortController();
    const deleting = lib.deleteSnapshot('k3', 'A', { signal: abort.signal });
    await waitForJobProgress(folder, 4 * MiB);
    abort.abort();
    await assert.rejects(deleting, (e: unknown) => isMachineError(e) && e.code === 'ABORTED');
    delete process.env['VMSNAP_TEST_BLOCK_JOB_SPEED'];
    assert.deepEqual((await lib.show('k3')).snapshots.map((s) => s.name), ['A', 'B']);
    assert.deepEqual(await blockJobs(folder), [], 'no job is left in QEMU');
    await assertCountGoesOn(log, from, before, 'after the cancel');
    assertNoLeftovers(folder);
    await lib.stopMachine('k3', { force: true });
    assert.equal(runStatus('qemu-img', ['compare', layerOf(folder, 'B'), copyB]).status, 0, 'snapshot B reads as before');
    assertChecksClean(folder);
  });

  it('QEMU killed in the middle of a long commit: the deletion finishes offline and the machine starts with its data', async () => {
    process.env['VMSNAP_TEST_BLOCK_JOB_SPEED'] = String(40 * MiB);
    // B (128 MiB) is smaller than A (192 MiB): deleting A commits B into A's layer, which the commit overwrites.
    const { folder } = await bigMachine('k1', 192, 128);
    const deleting = lib.deleteSnapshot('k1', 'A');
    await waitForJobProgress(folder, 8 * MiB);
    const pid = await runningPid(folder);
    assert.ok(pid !== null);
    process.kill(pid, 'SIGKILL');
    const r = await deleting;
    delete process.env['VMSNAP_TEST_BLOCK_JOB_SPEED'];
    assert.equal(r.merges[0]!.strategy, 'commit');
    assert.deepEqual((await lib.show('k1')).snapshots.map((s) => s.name), ['B']);
    assertNoLeftovers(folder);
    assertBigData(folder, 192, 128);
    const restartFrom = logSize(join(folder, 'serial.log'));
    const st = await lib.startMachine('k1');
    await waitForCounts(st.serialLog, 3, restartFrom);
    await lib.stopMachine('k1', { force: true });
  });

  it('our process killed in the middle of a long stream: the next open lets QEMU finish it and the count goes on', async () => {
    // B (192 MiB) is bigger than A (128 MiB): deleting A streams A's layer up into B's.
    const { folder, log } = await bigMachine('k2', 128, 192);
    const p = spawn(process.execPath, [child, lib.dir, 'delete-live'], { stdio: 'ignore', env: { ...process.env, VMSNAP_TEST_BLOCK_JOB_SPEED: String(40 * MiB) } });
    const exited = new Promise((r) => p.once('exit', r));
    await waitForJobProgress(folder, 8 * MiB);
    p.kill('SIGKILL');
    await exited;
    const from = logSize(log);
    const before = last(countsSince(log));
    const reopened = await Library.open(lib.dir, { qemu: { accel: ACCEL } });
    const d = await reopened.show('k2');
    assert.deepEqual(d.snapshots.map((s) => s.name), ['B'], 'the interrupted deletion was finished');
    assert.equal(d.powerState, 'running');
    assert.deepEqual(await blockJobs(folder), [], 'no job is left in QEMU');
    await assertCountGoesOn(log, from, before, 'after recovery');
    assertNoLeftovers(folder);
    await reopened.stopMachine('k2', { force: true });
    assertBigData(folder, 128, 192);
    const restartFrom = logSize(log);
    const st = await reopened.startMachine('k2');
    await waitForCounts(st.serialLog, 3, restartFrom);
    await reopened.stopMachine('k2', { force: true });
  });
});
