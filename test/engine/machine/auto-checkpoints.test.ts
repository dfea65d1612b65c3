// Automatic checkpoints with a fake clock: the interval, skipping an unchanged machine, the retention, pruning
// that never deletes the user's own snapshots or one a clone needs, and two schedulers making one checkpoint.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AutoScheduler, Library, type AutoCheckpointOutcome, type Clock, type MachineDetails } from '../../../src/engine/machine';
import { pruneCandidates, retainedIds } from '../../../src/engine/machine/auto-policy';
import { MANIFEST_FILE, type Manifest, type SnapshotRecord } from '../../../src/engine/machine/manifest';
import { requireTool, scratchDir } from '../../support/qemu';
import { blank, checkLibrary, DISK_SIZE, expectRegions, rejects, writeRegions, type Regions } from './library-oracles';

const MINUTE = 60_000;

/** A clock the test moves; sleeping moves it too, at once. */
class FakeClock implements Clock {
  constructor(public t: number) {}
  now(): Date {
    return new Date(this.t);
  }
  sleep(ms: number): Promise<void> {
    this.t += ms;
    return Promise.resolve();
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** A manifest holding only automatic snapshots at these local times (a chain, oldest first). */
function autoChain(times: Date[]): Manifest {
  const snapshots: SnapshotRecord[] = times.map((t, i) => ({
    id: `s${i}`,
    name: `Auto ${i}`,
    description: '',
    parentId: i === 0 ? null : `s${i - 1}`,
    createdAt: t.toISOString(),
    takenWhileRunning: false,
    layers: [`disk0-${i}.qcow2`],
    stateFile: null,
    vm: null,
    auto: true,
  }));
  return {
    format: 'vmsnap-machine',
    version: 1,
    revision: 1,
    id: '00000000-0000-4000-8000-000000000000',
    name: 'vm',
    macAddress: '52:54:00:00:00:01',
    cpus: 1,
    memoryMiB: 64,
    powerState: 'off',
    createdAt: times[0]!.toISOString(),
    note: '',
    disks: [{ virtualSize: DISK_SIZE, top: 'disk0-top.qcow2' }],
    snapshots,
    current: snapshots.at(-1)?.id ?? null,
    clonedFrom: null,
  };
}

describe('automatic checkpoints: retention (pure)', function () {
  it('keeps the newest N, plus the newest of each of the D most recent days and W most recent weeks that have one', () => {
    // Wednesday 2026-12-09 is the newest day; 2026-12-07 is that week's Monday.
    const times = [
      new Date(2026, 10, 25, 9), // s0: a Wednesday two weeks before
      new Date(2026, 10, 26, 9), // s1: the day after, same week
      new Date(2026, 11, 3, 9), // s2: last week's Thursday
      new Date(2026, 11, 3, 17), // s3: later that Thursday
      new Date(2026, 11, 8, 9), // s4: Tuesday
      new Date(2026, 11, 8, 18), // s5: Tuesday evening
      new Date(2026, 11, 9, 8), // s6: Wednesday
      new Date(2026, 11, 9, 9), // s7
      new Date(2026, 11, 9, 10), // s8
    ];
    const m = autoChain(times);
    const ids = (p: { keep: number; daily: number; weekly: number }): string[] => [...retainedIds({ everySeconds: 1800, ...p }, m)].sort();
    assert.deepEqual(ids({ keep: 2, daily: 0, weekly: 0 }), ['s7', 's8']);
    // Days with a checkpoint, newest first: Wednesday (s8), Tuesday (s5), last Thursday (s3).
    assert.deepEqual(ids({ keep: 2, daily: 3, weekly: 0 }), ['s3', 's5', 's7', 's8']);
    // Weeks, newest first: this week (s8), last week (s3), the week before (s1).
    assert.deepEqual(ids({ keep: 1, daily: 0, weekly: 3 }), ['s1', 's3', 's8']);
    assert.deepEqual(ids({ keep: 1, daily: 2, weekly: 2 }), ['s3', 's5', 's8']);
    // The candidates are the rest, oldest first; a user's own snapshot is never one.
    assert.deepEqual(pruneCandidates({ everySeconds: 1800, keep: 2, daily: 3, weekly: 0 }, m).map((s) => s.id), ['s0', 's1', 's2', 's4', 's6']);
    const withOwn = autoChain(times);
    delete withOwn.snapshots[0]!.auto;
    assert.deepEqual(pruneCandidates({ everySeconds: 1800, keep: 2, daily: 0, weekly: 0 }, withOwn).map((s) => s.id), ['s1', 's2', 's3', 's4', 's5', 's6']);
  });
});

describe('automatic checkpoints (fake clock, real images)', function () {
  let scratch: ReturnType<typeof scratchDir>;
  let lib: Library;
  let clock: FakeClock;
  let vm: MachineDetails;
  /** The disk's content the test wrote, region by region (see library-oracles). */
  let cur: Regions;
  let pattern = 1;

  const auto = (options: { trigger?: { kind: 'event'; reason: string }; freeBytes?: () => Promise<number | null> } = {}): Promise<AutoCheckpointOutcome> =>
    lib.autoCheckpoint(vm.id, { clock, ...options });
  const change = async (): Promise<void> => {
    const at = pattern % 8;
    await writeRegions(lib, vm.id, at, at + 1, pattern++, cur);
  };
  const autos = async (): Promise<{ id: string; name: string; layers: string[] }[]> => (await lib.show(vm.id)).snapshots.filter((s) => s.auto);

  before(() => {
    requireTool('qemu-img');
    requireTool('qemu-io');
  });
  beforeEach(async () => {
    scratch = scratchDir('vmsnap-auto-');
    lib = await Library.open(join(scratch.dir, 'lib'));
    clock = new FakeClock(new Date(2026, 11, 9, 9, 0, 0).getTime());
    vm = await lib.createMachine('dev', { diskSize: DISK_SIZE });
    cur = blank();
    pattern = 1;
  });
  afterEach(() => scratch.cleanup());

  it('is off by default; vm edit turns it on with defaults, validates it, and turns it off', async () => {
    assert.equal(vm.autoCheckpoints, null);
    assert.equal((await auto()).result, 'no-policy');
    const on = await lib.editMachine(vm.id, { autoCheckpoints: { everySeconds: 600 } });
    assert.deepEqual(on.autoCheckpoints, { everySeconds: 600, keep: 8, daily: 0, weekly: 0 });
    const more = await lib.editMachine(vm.id, { autoCheckpoints: { daily: 3 } });
    assert.deepEqual(more.autoCheckpoints, { everySeconds: 600, keep: 8, daily: 3, weekly: 0 }, 'fields left out keep their value');
    await rejects(lib.editMachine(vm.id, { autoCheckpoints: { everySeconds: 0 } }), 'INVALID_ARGUMENT', /every/);
    await rejects(lib.editMachine(vm.id, { autoCheckpoints: { keep: 0 } }), 'INVALID_ARGUMENT', /keep/);
    assert.equal((await lib.editMachine(vm.id, { autoCheckpoints: null })).autoCheckpoints, null);
    // A hand-edited manifest is held to the same bounds.
    const file = join(vm.folder, MANIFEST_FILE);
    const m = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify({ ...m, autoCheckpoints: { everySeconds: 60, keep: -1, daily: 0, weekly: 0 } }));
    const broken = await lib.broken();
    assert.match(broken[0]?.message ?? '', /autoCheckpoints\.keep/);
  });

  it('takes one per interval, skips an unchanged machine, and marks what it takes as automatic', async () => {
    await lib.editMachine(vm.id, { autoCheckpoints: { everySeconds: 1800, keep: 100 } });
    assert.equal((await auto()).result, 'unchanged', 'an empty disk is not worth a checkpoint');
    await change();
    const first = await auto();
    assert.equal(first.result, 'taken', first.message);
    assert.equal(first.snapshot?.auto, true);
    assert.equal(first.snapshot?.createdAt, clock.now().toISOString(), 'stamped with the schedule\'s clock');
    assert.match(first.snapshot!.name, /^Auto 2026-12-09 09:00:00$/);
    await change();
    clock.advance(29 * MINUTE);
    assert.equal((await auto()).result, 'not-due');
    clock.advance(MINUTE);
    assert.equal((await auto()).result, 'taken');
    clock.advance(30 * MINUTE);
    assert.equal((await auto()).result, 'unchanged', 'nothing written since the last checkpoint');
    assert.equal((await autos()).length, 2);
    // An event (a branch switch) does not wait for the interval, only for a short gap.
    await change();
    clock.advance(30 * MINUTE);
    assert.equal((await auto()).result, 'taken');
    await change();
    clock.advance(10_000);
    assert.equal((await auto({ trigger: { kind: 'event', reason: 'branch switched to main' } })).result, 'not-due');
    clock.advance(MINUTE);
    const ev = await auto({ trigger: { kind: 'event', reason: 'branch switched to main' } });
    assert.equal(ev.result, 'taken');
    assert.equal(ev.snapshot?.description, 'Automatic checkpoint: branch switched to main.');
    await checkLibrary(lib);
  });

  it('the schedule over a day of ticks takes one checkpoint per interval while the machine changes', async () => {
    await lib.editMachine(vm.id, { autoCheckpoints: { everySeconds: 3600, keep: 100 } });
    const seen: AutoCheckpointOutcome[] = [];
    const scheduler = new AutoScheduler(lib, { clock, onOutcome: (o) => seen.push(o), maxSleepMs: 10 * MINUTE });
    const end = clock.t + 5 * 60 * MINUTE;
    while (clock.t < end) {
      await change();
      await clock.sleep(await scheduler.tick());
    }
    const taken = seen.filter((o) => o.result === 'taken').map((o) => o.snapshot!.createdAt);
    assert.equal(taken.length, 5, taken.join(', '));
    for (let i = 1; i < taken.length; i++) assert.equal(Date.parse(taken[i]!) - Date.parse(taken[i - 1]!), 60 * MINUTE);
  });

  it('prunes beyond the retention, merging only automatic layers: every other state reads as before, the user\'s own stay', async () => {
    await lib.editMachine(vm.id, { autoCheckpoints: { everySeconds: 60, keep: 2 } });
    const states = new Map<string, Regions>();
    const tick = async (): Promise<AutoCheckpointOutcome> => {
      await change();
      clock.advance(MINUTE);
      const o = await auto();
      assert.equal(o.result, 'taken', o.message);
      states.set(o.snapshot!.id, [...cur]);
      return o;
    };
    const a1 = await tick();
    await tick();
    const a3 = await tick();
    assert.deepEqual(a3.pruned.map((p) => p.id), [a1.snapshot!.id], 'keep 2: the oldest goes once a third is taken');
    await change();
    const mine = await lib.takeSnapshot(vm.id, 'Mine');
    states.set(mine.id, [...cur]);
    const a4 = await tick();
    assert.equal(a4.pruned.length, 1, 'the second one goes: only an automatic checkpoint depended on it');
    const a5 = await tick();
    // The third one is let go by the retention, but the user's snapshot hangs on it: it stays.
    assert.deepEqual(a5.kept.map((k) => [k.id, k.reason]), [[a3.snapshot!.id, "a snapshot of yours depends on it (deleting it would rewrite that snapshot's layer)"]]);
    const left = (await lib.show(vm.id)).snapshots;
    assert.deepEqual(
      left.map((s) => s.name === 'Mine' ? 'Mine' : s.id === a3.snapshot!.id ? 'a3' : s.id === a4.snapshot!.id ? 'a4' : s.id === a5.snapshot!.id ? 'a5' : '?'),
      ['a3', 'Mine', 'a4', 'a5'],
    );
    for (const s of left) expectRegions(s.layers[0]!, states.get(s.id)!, s.name);
    expectRegions((await lib.show(vm.id)).disks[0]!.path, cur, 'current state');
    await checkLibrary(lib);
  });

  it('never prunes one a linked clone needs, one a snapshot of the user\'s depends on, or the parent of a changed current state', async () => {
    await lib.editMachine(vm.id, { autoCheckpoints: { everySeconds: 60, keep: 1 } });
    await change();
    clock.advance(MINUTE);
    const a = (await auto()).snapshot!;
    // A user's snapshot on top of the automatic one: deleting it would rewrite the user's layer.
    await change();
    await lib.takeSnapshot(vm.id, 'Mine');
    await change();
    clock.advance(MINUTE);
    const b = (await auto()).snapshot!;
    await lib.clone(vm.id, 'clone of b', { kind: 'linked', from: b.id });
    await change();
    clock.advance(MINUTE);
    const c = await auto();
    assert.equal(c.result, 'taken');
    const kept = new Map(c.kept.map((k) => [k.id, k.reason]));
    assert.match(kept.get(a.id) ?? '', /snapshot of yours depends on it/);
    assert.match(kept.get(b.id) ?? '', /linked clone depends on it/);
    assert.deepEqual(c.pruned, []);
    await checkLibrary(lib);
  });

  it('keeps the checkpoint a changed current state descends from, and prunes it once that state is let go', async () => {
    await lib.editMachine(vm.id, { autoCheckpoints: { everySeconds: 60, keep: 5 } });
    await change();
    clock.advance(MINUTE);
    const a = (await auto()).snapshot!;
    await change();
    clock.advance(MINUTE);
    const b = (await auto()).snapshot!;
    const atB = [...cur];
    // Back to the older one, and work there: deleting it now would merge into the current state.
    await lib.revert(vm.id, a.id, { discardCurrent: true });
    await writeRegions(lib, vm.id, 7, 8, 99);
    await lib.editMachine(vm.id, { autoCheckpoints: { keep: 1 } });
    clock.advance(MINUTE);
    const skipped = await auto({ freeBytes: () => Promise.resolve(0) });
    assert.equal(skipped.result, 'no-space');
    assert.match(skipped.kept.find((k) => k.id === a.id)?.reason ?? '', /current state depends on it and has changed/);
    // Go to the newer one, throwing that work away: now nothing but an automatic checkpoint needs a's layer.
    await lib.revert(vm.id, b.id, { discardCurrent: true });
    clock.advance(MINUTE);
    const next = await auto();
    assert.equal(next.result, 'unchanged');
    assert.deepEqual(next.pruned.map((p) => p.id), [a.id]);
    expectRegions((await lib.show(vm.id)).snapshots[0]!.layers[0]!, atB, 'the kept checkpoint reads as before');
    await checkLibrary(lib);
  });

  it('a checkpoint the user renames or describes becomes the user\'s own and is never pruned', async () => {
    await lib.editMachine(vm.id, { autoCheckpoints: { everySeconds: 60, keep: 1 } });
    await change();
    clock.advance(MINUTE);
    const a = (await auto()).snapshot!;
    const renamed = await lib.editSnapshot(vm.id, a.id, { name: 'Good state' });
    assert.equal(renamed.auto, false);
    await change();
    clock.advance(MINUTE);
    const b = (await auto()).snapshot!;
    const described = await lib.editSnapshot(vm.id, b.id, { description: 'keep this one' });
    assert.equal(described.auto, false);
    for (let i = 0; i < 2; i++) {
      await change();
      clock.advance(MINUTE);
      assert.equal((await auto()).result, 'taken');
    }
    const left = (await lib.show(vm.id)).snapshots;
    assert.ok(left.some((s) => s.id === a.id) && left.some((s) => s.id === b.id), 'both stay');
    assert.equal(left.filter((s) => s.auto).length, 1, 'keep 1 of the automatic ones');
  });

  it('two schedulers at once (two processes\' libraries) make one checkpoint', async () => {
    await lib.editMachine(vm.id, { autoCheckpoints: { everySeconds: 1800, keep: 8 } });
    await change();
    const other = await Library.open(lib.dir);
    const results = await Promise.all([auto(), other.autoCheckpoint(vm.id, { clock }), auto(), other.autoCheckpoint(vm.id, { clock })]);
    assert.deepEqual(results.map((r) => r.result).sort(), ['not-due', 'not-due', 'not-due', 'taken'], results.map((r) => r.message).join('\n'));
    assert.equal((await autos()).length, 1);
  });

  it('skips a checkpoint that would run out of disk space, with a warning, and takes nothing', async () => {
    await lib.editMachine(vm.id, { autoCheckpoints: { everySeconds: 60, keep: 8 } });
    await change();
    const o = await auto({ freeBytes: () => Promise.resolve(16 * 1024 * 1024) });
    assert.equal(o.result, 'no-space');
    assert.match(o.message, /Skipped the automatic checkpoint of "dev".*16 MiB are free/);
    assert.equal((await lib.show(vm.id)).snapshots.length, 0);
  });
});
