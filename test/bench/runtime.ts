// Running machines: a snapshot of a running 512 MiB machine (with its memory) and a revert into it, next to
// the same QMP steps done by hand on a bare QMP connection (the floor: what QEMU itself costs). The guest is the
// counting boot sector from the runtime tests, on TCG unless VMSNAP_QEMU_ACCEL says otherwise.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { snapshotRunning, startFromState } from '../../src/engine/runtime/live-snapshot';
import { sleep } from '../../src/engine/runtime/process';
import { QmpClient } from '../../src/engine/runtime/qmp';
import { qemuArgs, qemuPath, runtimeFiles, startMachine, stopMachine, type MachineConfig } from '../../src/engine/runtime';
import { writeCountingGuest } from '../support/counting-guest';
import { median, type BenchRow } from './report';

const RUNS = 5;
/** Snapshots with and without a thumbnail, in pairs, on each of a few machines. */
const THUMBNAIL_PAIRS = 6;
const THUMBNAIL_MACHINES = 3;
const MEMORY_MIB = 512;
const ACCEL = process.env['VMSNAP_QEMU_ACCEL'] ?? 'tcg';

function machine(dir: string, name: string): MachineConfig {
  const folder = join(dir, name);
  rmSync(folder, { recursive: true, force: true });
  mkdirSync(folder, { recursive: true });
  writeCountingGuest(join(folder, 'base.raw'));
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', join(folder, 'top-0.qcow2')]);
  return { folder, name, cpus: 1, memoryMiB: MEMORY_MIB, disks: [join(folder, 'top-0.qcow2')], macAddress: '52:54:00:12:34:56' };
}

/** QEMU started by hand with the same command line; resolves once QMP has greeted. */
async function rawStart(config: MachineConfig, extra: { incoming?: string } = {}): Promise<{ qmp: QmpClient; ms: number }> {
  const files = runtimeFiles(config.folder);
  const args = qemuArgs(config, files, { accel: ACCEL, ...(extra.incoming === undefined ? {} : { incomingStateFile: extra.incoming }) });
  const t0 = performance.now();
  const child = spawn(qemuPath(), args, { detached: true, stdio: 'ignore' });
  child.unref();
  while (true) {
    try {
      const qmp = await QmpClient.connect(files.qmpSocket);
      return { qmp, ms: performance.now() - t0 };
    } catch {
      await sleep(2);
    }
  }
}

async function rawQuit(qmp: QmpClient): Promise<void> {
  await qmp.execute('quit').catch(() => {});
  await qmp.waitClosed(10000);
  qmp.close();
}

/** Resolves on the next MIGRATION event with that status. */
function migration(qmp: QmpClient, status: string): Promise<void> {
  return new Promise((resolve) => {
    const off = qmp.onEvent((e) => {
      if (e.event === 'MIGRATION' && e.data['status'] === status) {
        off();
        resolve();
      }
    });
  });
}

/**
 * The floor of a running snapshot, the same QMP steps on a bare connection: blockdev-add, migrate with
 * pause-before-switchover, transaction in the stop, migrate-continue, cont. Pause = STOP to RESUME event.
 */
async function rawSnapshot(qmp: QmpClient, folder: string, n: number): Promise<{ pauseMs: number; totalMs: number; state: string }> {
  const t0 = performance.now();
  const overlay = join(folder, `raw-top-${n}.qcow2`);
  const state = join(folder, `raw-${n}.state`);
  const blocks = await qmp.execute<{ device: string; inserted: { 'node-name': string } }[]>('query-block');
  const node = blocks.find((b) => b.device === 'drive0')!.inserted['node-name'];
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', n === 0 ? 'top-0.qcow2' : `raw-top-${n - 1}.qcow2`, '-F', 'qcow2', overlay]);
  await qmp.execute('blockdev-add', { driver: 'qcow2', 'node-name': `raw${n}`, file: { driver: 'file', filename: overlay }, backing: null });
  await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }, { capability: 'pause-before-switchover', state: true }] });
  await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 2 ** 40, 'downtime-limit': 100 });
  const stamps = new Map<string, number>();
  const off = qmp.onEvent((e) => stamps.set(e.event, e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000));
  const pre = migration(qmp, 'pre-switchover');
  await qmp.execute('migrate', { uri: `exec:cat > ${state}` });
  await pre;
  await qmp.execute('transaction', { actions: [{ type: 'blockdev-snapshot', data: { node, overlay: `raw${n}` } }] });
  const done = migration(qmp, 'completed');
  await qmp.execute('migrate-continue', { state: 'pre-switchover' });
  await done;
  while ((await qmp.execute<{ status: string }>('query-status')).status === 'finish-migrate') await sleep(1);
  const resumed = qmp.nextEvent('RESUME');
  await qmp.execute('cont');
  await resumed;
  off();
  return { pauseMs: stamps.get('RESUME')! - stamps.get('STOP')!, totalMs: performance.now() - t0, state };
}

export async function runtimeSection(workDir: string): Promise<BenchRow[]> {
  const ours = { start: [] as number[], pause: [] as number[], snap: [] as number[], revert: [] as number[], stateBytes: 0 };
  const floor = { start: [] as number[], pause: [] as number[], snap: [] as number[], revert: [] as number[] };
  for (let run = 0; run < RUNS; run++) {
    // Ours: startMachine, snapshotRunning, stop, startFromState.
    const m = machine(workDir, `ours-${run}`);
    const started = await startMachine(m, { accel: ACCEL });
    ours.start.push(started.startMs);
    try {
      await sleep(500); // let the guest boot and count
      const snap = await snapshotRunning(m.folder, { newTops: [join(m.folder, 'top-1.qcow2')], stateFile: join(m.folder, 's.state') });
      ours.pause.push(snap.pauseMs);
      ours.snap.push(snap.totalMs);
      ours.stateBytes = snap.stateBytes;
      await stopMachine(m.folder, { force: true });
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'top-0.qcow2', '-F', 'qcow2', join(m.folder, 'top-2.qcow2')]);
      const reverted = await startFromState({ ...m, disks: [join(m.folder, 'top-2.qcow2')], machineType: snap.machineType }, snap.stateFile!, { accel: ACCEL });
      ours.revert.push(reverted.totalMs);
    } finally {
      await stopMachine(m.folder, { force: true });
    }

    // The floor: the same QEMU command line and QMP steps on a bare connection, nothing checked or recorded.
    const f = machine(workDir, `floor-${run}`);
    const raw = await rawStart(f);
    floor.start.push(raw.ms);
    await sleep(500);
    const s = await rawSnapshot(raw.qmp, f.folder, 0);
    floor.pause.push(s.pauseMs);
    floor.snap.push(s.totalMs);
    await rawQuit(raw.qmp);
    // QEMU waited for cat to exit before it resumed the guest: the state file is complete.
    if (!existsSync(s.state) || statSync(s.state).size === 0) throw new Error(`no state in ${s.state}`);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'top-0.qcow2', '-F', 'qcow2', join(f.folder, 'top-2.qcow2')]);
    const t0 = performance.now();
    const back = await rawStart({ ...f, disks: [join(f.folder, 'top-2.qcow2')] }, { incoming: s.state });
    while ((await back.qmp.execute<{ status: string }>('query-status')).status === 'inmigrate') await sleep(2);
    await back.qmp.execute('cont');
    floor.revert.push(performance.now() - t0);
    await rawQuit(back.qmp);
  }
  const mib = (ours.stateBytes / 1024 / 1024).toFixed(1);
  return [
    { operation: `power on (${MEMORY_MIB} MiB, ${ACCEL}) until QMP answers`, oursMs: median(ours.start), qemuMs: median(floor.start) },
    { operation: `running snapshot with memory: guest paused (state ${mib} MiB)`, oursMs: median(ours.pause), qemuMs: median(floor.pause), target: '< 100 ms', met: median(ours.pause) < 100 },
    { operation: 'running snapshot with memory: whole call', oursMs: median(ours.snap), qemuMs: median(floor.snap) },
    { operation: 'revert to running snapshot: start until running', oursMs: median(ours.revert), qemuMs: median(floor.revert) },
  ];
}

/**
 * What a thumbnail adds to a running snapshot's pause: a machine with a screen (std VGA) snapshotted with and
 * without one, back to back and in turns, so both see the same guest. `npm run bench -- thumbnails`.
 */
export async function thumbnailSection(workDir: string): Promise<BenchRow[]> {
  const thumb = { pause: [] as number[], plainPause: [] as number[], screen: [] as number[], snap: [] as number[] };
  // Pairs on a few machines: QEMU describes a long chain of running snapshots' layers in a name it cuts at 4 KiB.
  for (let m = 0; m < THUMBNAIL_MACHINES; m++) {
    const d = { ...machine(workDir, `screen-${m}`), display: 'std' as const };
    await startMachine(d, { accel: ACCEL });
    try {
      await sleep(500); // let the guest boot: SeaBIOS's text is on the screen
      for (let pair = 0; pair < THUMBNAIL_PAIRS; pair++) {
        for (const withThumb of pair % 2 === 0 ? [true, false] : [false, true]) {
          const tag = `${withThumb ? 'thumb' : 'plain'}-${pair}`;
          const t = await snapshotRunning(d.folder, {
            newTops: [join(d.folder, `top-${tag}.qcow2`)],
            stateFile: join(d.folder, `${tag}.state`),
            thumbnail: withThumb ? join(d.folder, `${tag}.png`) : null,
          });
          if (withThumb && t.thumbnail === null) throw new Error('no thumbnail: the machine has no screen to dump');
          (withThumb ? thumb.pause : thumb.plainPause).push(t.pauseMs);
          if (withThumb) {
            thumb.screen.push(t.screenMs);
            thumb.snap.push(t.totalMs);
          }
        }
      }
    } finally {
      await stopMachine(d.folder, { force: true });
    }
  }
  const added = median(thumb.pause) - median(thumb.plainPause);
  return [
    { operation: `running snapshot (${MEMORY_MIB} MiB, std VGA) with thumbnail: guest paused (qemu column: without)`, oursMs: median(thumb.pause), qemuMs: median(thumb.plainPause) },
    { operation: 'thumbnail: pause added (median with - without; below 0: noise)', oursMs: added, qemuMs: null, target: '< 10 ms', met: added < 10 },
    { operation: 'thumbnail: raw screendump inside the pause', oursMs: median(thumb.screen), qemuMs: null, target: '< 10 ms', met: median(thumb.screen) < 10 },
    { operation: 'running snapshot + thumbnail: whole call (PNG made after the resume)', oursMs: median(thumb.snap), qemuMs: null },
  ];
}
