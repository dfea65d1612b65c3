// The offline delete plan turned into QEMU block jobs (livePlan), on hand-made manifests: no QEMU, no disk.
import { strict as assert } from 'node:assert';
import { measurementsNeeded, planSnapshotDeletion } from '../../../src/engine/machine/delete-planner';
import { livePlan } from '../../../src/engine/machine/live-delete';
import type { Manifest, SnapshotRecord } from '../../../src/engine/machine/manifest';

function snap(id: string, parentId: string | null, layers: string[]): SnapshotRecord {
  return { id, name: id.toUpperCase(), description: '', parentId, createdAt: '2024-01-01T00:00:00.000Z', takenWhileRunning: true, layers, stateFile: null, vm: null };
}

function machine(snapshots: SnapshotRecord[], current: string): Manifest {
  return {
    format: 'vmsnap-machine',
    version: 1,
    revision: 3,
    id: 'm1',
    name: 'Dev',
    macAddress: '52:54:00:00:00:01',
    cpus: 1,
    memoryMiB: 64,
    powerState: 'running',
    createdAt: '2024-01-01T00:00:00.000Z',
    note: '',
    disks: [{ virtualSize: 1 << 30, top: 'top' }],
    snapshots,
    current,
    clonedFrom: null,
  };
}

function planFor(m: Manifest, id: string, sizes: Record<string, number>, children = false): ReturnType<typeof livePlan> {
  const target = m.snapshots.find((s) => s.id === id)!;
  const need = measurementsNeeded(m, target, children);
  const plan = planSnapshotDeletion({
    manifest: m,
    target,
    children,
    linkedClones: [],
    bytes: new Map(need.bytes.map((f) => [f, sizes[f] ?? 1000])),
    allocated: new Map(need.allocated.map((f) => [f, sizes[f] ?? 1000])),
  });
  return livePlan(m, plan);
}

describe('machine: deleting while running, planned as block jobs (pure)', () => {
  // A <- B <- {C (QEMU's chain, current), X (a branch QEMU does not read)}
  const m = machine([snap('a', null, ['la']), snap('b', 'a', ['lb']), snap('x', 'b', ['lx']), snap('c', 'b', ['lc'])], 'c');

  it('a smaller dependant commits into the snapshot\'s layer, which the manifest then names for it', () => {
    const p = planFor(m, 'a', { la: 5000, lb: 100 });
    assert.deepEqual(p.live.map((s) => ({ ...s, job: '' })), [{ kind: 'commit', job: '', disk: 0, top: 'lb', base: 'la', overlay: 'lc', repoint: ['lx'] }]);
    assert.deepEqual(p.after.snapshots.find((s) => s.id === 'b')!.layers, ['la']);
    assert.ok(p.obsolete.includes('lb') && !p.obsolete.includes('la'));
    assert.ok(p.freeze.includes('la') && p.freeze.includes('lc'), 'the merged layer and the re-pointed overlay are frozen again');
    assert.ok(p.thawed.includes('lc'));
  });

  it('a bigger dependant takes the layer by a stream into it; branches QEMU does not read are rebased offline', () => {
    const p = planFor(m, 'b', {});
    assert.deepEqual(p.live.map((s) => s.kind), ['stream']);
    assert.deepEqual(p.live.map((s) => (s.kind === 'stream' ? [s.layer, s.from, s.onto] : [])), [['lc', 'lb', 'la']]);
    assert.deepEqual(p.offline.map((s) => (s.kind === 'rebase' ? s.layer : '')), ['lx']);
  });

  it('the current state\'s parent: an active commit of the top, or a stream into it', () => {
    const commit = planFor(m, 'c', { lc: 5000, top: 10 });
    assert.deepEqual(commit.live.map((s) => (s.kind === 'commit' ? [s.top, s.base, s.overlay] : [])), [['top', 'lc', null]]);
    assert.equal(commit.after.disks[0]!.top, 'lc');
    const stream = planFor(m, 'c', { lc: 10, top: 5000 });
    assert.deepEqual(stream.live.map((s) => (s.kind === 'stream' ? [s.layer, s.onto] : [])), [['top', 'lb']]);
    const reclaim = planFor(m, 'c', { top: 0 });
    assert.deepEqual(reclaim.live.map((s) => (s.kind === 'commit' ? [s.top, s.base, s.overlay] : [])), [['top', 'lc', null]], 'an empty top too: QEMU carries what the guest wrote since');
  });
});
