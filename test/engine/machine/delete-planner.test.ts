// The snapshot delete planner on hand-made manifests: no QEMU, no disk. Layer names stand for files; the sizes
// given are what the executor would have measured.
import { strict as assert } from 'node:assert';
import { isMachineError } from '../../../src/engine/machine';
import { measurementsNeeded, planSnapshotDeletion, type DeletePlanInput, type LinkedCloneRef } from '../../../src/engine/machine/delete-planner';
import type { Manifest, SnapshotRecord } from '../../../src/engine/machine/manifest';

function snap(id: string, parentId: string | null, layers: string[], stateFile: string | null = null): SnapshotRecord {
  return { id, name: id.toUpperCase(), description: '', parentId, createdAt: '2024-01-01T00:00:00.000Z', takenWhileRunning: false, layers, stateFile, vm: null };
}

/** One disk unless `tops` says otherwise; `current` names the snapshot the current state descends from. */
function machine(snapshots: SnapshotRecord[], current: string | null, tops = ['top0']): Manifest {
  return {
    format: 'vmsnap-machine',
    version: 1,
    revision: 7,
    id: 'm1',
    name: 'Dev',
    macAddress: '52:54:00:00:00:01',
    cpus: 2,
    memoryMiB: 2048,
    powerState: 'off',
    createdAt: '2024-01-01T00:00:00.000Z',
    note: '',
    disks: tops.map((top) => ({ virtualSize: 1 << 30, top })),
    snapshots,
    current,
    clonedFrom: null,
  };
}

/** A plan with every file measured at `size` bytes unless `bytes` says otherwise, and `allocated` for the tops. */
function plan(m: Manifest, targetId: string, opts: { children?: boolean; bytes?: Record<string, number>; allocated?: Record<string, number>; clones?: LinkedCloneRef[]; size?: number } = {}): ReturnType<typeof planSnapshotDeletion> {
  const target = m.snapshots.find((s) => s.id === targetId)!;
  const children = opts.children === true;
  const need = measurementsNeeded(m, target, children);
  const input: DeletePlanInput = {
    manifest: m,
    target,
    children,
    linkedClones: opts.clones ?? [],
    bytes: new Map(need.bytes.map((f) => [f, opts.bytes?.[f] ?? opts.size ?? 1000])),
    allocated: new Map(need.allocated.map((f) => [f, opts.allocated?.[f] ?? 1])),
  };
  return planSnapshotDeletion(input);
}

describe('machine: the snapshot delete planner (pure)', () => {
  it('removes a snapshot nothing depends on, and nothing else', () => {
    // A -> B, current on A: B is a leaf the current state does not read.
    const m = machine([snap('a', null, ['la']), snap('b', 'a', ['lb'], 'state-b.state')], 'a');
    const p = plan(m, 'b', { allocated: { top0: 5 } });
    assert.deepEqual(p.merge, []);
    assert.deepEqual(p.obsolete, ['lb', 'state-b.state']);
    assert.deepEqual(p.merges, [{ snapshotId: 'b', strategy: 'none', dependants: 0 }]);
    assert.deepEqual(p.deleted, [{ id: 'b', name: 'B' }]);
    assert.deepEqual(p.after.snapshots.map((s) => s.id), ['a']);
    assert.equal(p.after.revision, 8);
    assert.equal(p.needSpace, 0);
    assert.equal(m.snapshots.length, 2, 'the input manifest is not changed');
  });

  it('gives the snapshot layer back as the top when the current state changed nothing since it', () => {
    const m = machine([snap('a', null, ['la'])], 'a');
    assert.deepEqual(measurementsNeeded(m, m.snapshots[0]!, false).allocated, ['top0']);
    const p = plan(m, 'a', { allocated: { top0: 0 } });
    assert.deepEqual(p.merge, [], 'no data moves');
    assert.deepEqual(p.reclaimed, ['la']);
    assert.deepEqual(p.thawed, ['la']);
    assert.deepEqual(p.obsolete, ['top0']);
    assert.equal(p.after.disks[0]!.top, 'la');
    assert.equal(p.after.current, null);
    assert.deepEqual(p.merges, [{ snapshotId: 'a', strategy: 'commit', dependants: 1 }]);
  });

  it('commits the one dependant into the snapshot when it is the smaller, and rebases it when it is the bigger', () => {
    const m = machine([snap('a', null, ['la']), snap('b', 'a', ['lb'])], 'b');
    const commit = plan(m, 'a', { bytes: { la: 5000, lb: 1000 } });
    assert.deepEqual(commit.merge, [{ kind: 'commit', from: 'lb', into: 'la', frozen: true }]);
    assert.deepEqual(commit.thawed, ['la']);
    assert.deepEqual(commit.freeze, ['lb']);
    assert.deepEqual(commit.obsolete, []);
    assert.equal(commit.needSpace, 2000, 'the data and its undo copy');
    assert.deepEqual(commit.merges, [{ snapshotId: 'a', strategy: 'commit', dependants: 1 }]);
    assert.equal(commit.after.snapshots[0]!.parentId, null, 'B hangs on what A hung on');

    const rebase = plan(m, 'a', { bytes: { la: 1000, lb: 5000 } });
    assert.deepEqual(rebase.merge, [{ kind: 'rebase', layer: 'lb', from: 'la', onto: null, frozen: true }]);
    assert.deepEqual(rebase.obsolete, ['la']);
    assert.deepEqual(rebase.thawed, ['lb']);
    assert.deepEqual(rebase.freeze, ['lb']);
    assert.equal(rebase.needSpace, 1000);
    assert.deepEqual(rebase.merges, [{ snapshotId: 'a', strategy: 'rebase', dependants: 1 }]);
  });

  it('rebases each of several dependants onto the layer below, rebases before commits', () => {
    // root -> a -> (b, c), current on a: three dependants of a.
    const m = machine([snap('root', null, ['lr']), snap('a', 'root', ['la']), snap('b', 'a', ['lb']), snap('c', 'a', ['lc'])], 'a');
    const p = plan(m, 'a', { size: 10 });
    assert.deepEqual(p.merge, [
      { kind: 'rebase', layer: 'lb', from: 'la', onto: 'lr', frozen: true },
      { kind: 'rebase', layer: 'lc', from: 'la', onto: 'lr', frozen: true },
      { kind: 'rebase', layer: 'top0', from: 'la', onto: 'lr', frozen: false },
    ]);
    assert.deepEqual(p.thawed, ['lb', 'lc'], 'the current top is not frozen');
    assert.deepEqual(p.obsolete, ['la']);
    assert.equal(p.needSpace, 30);
    assert.equal(p.after.current, 'root');
    assert.deepEqual(p.after.snapshots.map((s) => [s.id, s.parentId]), [['root', null], ['b', 'root'], ['c', 'root']]);
    assert.deepEqual(p.merges, [{ snapshotId: 'a', strategy: 'rebase', dependants: 3 }]);
  });

  it('plans each disk on its own', () => {
    const m = machine([snap('a', null, ['la0', 'la1']), snap('b', 'a', ['lb0', 'lb1'])], 'b', ['t0', 't1']);
    const p = plan(m, 'a', { bytes: { la0: 10, lb0: 5, la1: 5, lb1: 10 } });
    assert.deepEqual(p.merge, [
      { kind: 'rebase', layer: 'lb1', from: 'la1', onto: null, frozen: true },
      { kind: 'commit', from: 'lb0', into: 'la0', frozen: true },
    ]);
    assert.deepEqual(p.obsolete, ['la1']);
  });

  it('refuses a snapshot a linked clone hangs on, or one below it, naming the clones', () => {
    const m = machine([snap('a', null, ['la']), snap('b', 'a', ['lb'])], 'b');
    const clones = [{ id: 'c1', name: 'Clone one', snapshotId: 'b' }, { id: 'c2', name: 'Clone two', snapshotId: 'b' }];
    for (const target of ['a', 'b']) {
      assert.throws(
        () => plan(m, target, { clones }),
        (e: unknown) => isMachineError(e) && e.code === 'LOCKED_BY_CLONES' && /"Clone one", "Clone two" depend on it/.test(e.message) && e.candidates.length === 2,
      );
    }
    // A clone of an unrelated branch does not lock it.
    const p = plan(m, 'b', { clones: [{ id: 'c3', name: 'Elsewhere', snapshotId: 'zzz' }] });
    assert.deepEqual(p.deleted, [{ id: 'b', name: 'B' }]);
  });

  it('deletes a whole subtree; the current state inside it keeps its content by a rebase onto the layer above', () => {
    // root -> a -> b -> c, current on b; also a -> d. Deleting a with children: a, b, c, d go.
    const m = machine([snap('root', null, ['lr']), snap('a', 'root', ['la']), snap('b', 'a', ['lb'], 'sb.state'), snap('c', 'b', ['lc']), snap('d', 'a', ['ld'])], 'b');
    assert.deepEqual(measurementsNeeded(m, m.snapshots[1]!, true).bytes, ['la', 'lb'], 'the doomed layers the current state reads through');
    const p = plan(m, 'a', { children: true, bytes: { la: 100, lb: 20 } });
    assert.deepEqual(p.deleted.map((d) => d.id), ['a', 'b', 'c', 'd']);
    assert.deepEqual(p.merge, [{ kind: 'rebase', layer: 'top0', from: 'lb', onto: 'lr', frozen: false }]);
    assert.deepEqual([...p.obsolete].sort(), ['la', 'lb', 'lc', 'ld', 'sb.state']);
    assert.equal(p.needSpace, 120);
    assert.equal(p.after.current, 'root');
    assert.deepEqual(p.after.snapshots.map((s) => s.id), ['root']);
    assert.deepEqual(p.merges, [{ snapshotId: 'a', strategy: 'rebase', dependants: 1 }]);

    // The current state outside the subtree: only files go.
    const outside = plan(machine(m.snapshots, 'root'), 'a', { children: true });
    assert.deepEqual(outside.merge, []);
    assert.deepEqual(outside.merges, [{ snapshotId: 'a', strategy: 'none', dependants: 0 }]);
    assert.equal(outside.after.current, 'root');
  });

  it('rebases the lowest snapshot of a linked clone onto the source layer it hangs on', () => {
    const m = machine([snap('a', null, ['la']), snap('b', 'a', ['lb'])], 'b');
    m.clonedFrom = { machineId: 'src', snapshotId: 's', kind: 'linked', baseLayers: ['../src/ls'] };
    const p = plan(m, 'a', { bytes: { la: 1, lb: 5 } });
    assert.deepEqual(p.merge, [{ kind: 'rebase', layer: 'lb', from: 'la', onto: '../src/ls', frozen: true }]);
  });
});
