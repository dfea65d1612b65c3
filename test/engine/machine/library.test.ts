import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Library, type MachineDetails } from '../../../src/engine/machine';
import { processStart } from '../../../src/engine/os';
import { qemuImg, qemuIo, qemuSame, requireTool, scratchDir } from '../../support/qemu';
import { backingOf, blank, checkLibrary, DISK_SIZE, expectRegions, MiB, rejects, snapshotLayer, writeRegions, type Regions } from './library-oracles';


/** The machine and every snapshot read as the model says. */
function expectMachine(m: MachineDetails, current: Regions, snapshots: Record<string, Regions>): void {
  expectRegions(m.disks[0]!.path, current, `${m.name} current state`);
  for (const [name, regions] of Object.entries(snapshots)) expectRegions(snapshotLayer(m, name), regions, `${m.name} snapshot ${name}`);
}

describe('machine library', function () {
  let scratch: ReturnType<typeof scratchDir>;
  let lib: Library;

  before(() => {
    requireTool('qemu-img');
    requireTool('qemu-io');
  });
  beforeEach(async () => {
    scratch = scratchDir('vmsnap-machine-');
    lib = await Library.open(join(scratch.dir, 'lib'));
  });
  afterEach(() => scratch.cleanup());

  it('creates a machine with a new UUID, a 52:54:00 MAC unique in the library, and a sparse disk in its own folder', async () => {
    const a = await lib.createMachine('Dev box', { diskSize: DISK_SIZE, cpus: 4, memoryMiB: 4096 });
    const b = await lib.createMachine('Dev box', { diskSize: DISK_SIZE });
    assert.match(a.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.notEqual(a.id, b.id);
    assert.match(a.macAddress, /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.notEqual(a.macAddress, b.macAddress);
    assert.equal(a.cpus, 4);
    assert.equal(a.memoryMiB, 4096);
    assert.equal(a.powerState, 'off');
    assert.equal(a.current, null);
    assert.equal(a.clonedFrom, null);
    assert.equal(relative(lib.dir, a.folder).includes('/'), false);
    assert.equal(qemuImg('info', '--output=json', a.disks[0]!.path).includes(`"virtual-size": ${DISK_SIZE}`), true);
    assert.equal(await lib.diskPath(a.id), a.disks[0]!.path);
    // Same name twice: the name is ambiguous, the ids are not.
    const err = await rejects(lib.show('Dev box'), 'AMBIGUOUS');
    assert.equal(err.candidates?.length, 2);
    assert.equal((await lib.show(a.id.slice(0, 8))).id, a.id);
    assert.deepEqual(
      (await lib.list()).map((m) => m.id),
      [a.id, b.id],
    );
    await checkLibrary(lib);
  });

  it('derives safe folder names from any display name, and refuses empty names and control characters', async () => {
    for (const name of ['../x', 'a/b', 'CON', '..', 'nul', 'Ünïcødé 日本 🚀', '.hidden', 'x'.repeat(128)]) {
      const m = await lib.createMachine(name, { diskSize: DISK_SIZE });
      assert.equal(m.name, name);
      assert.equal(relative(lib.dir, m.folder).split('/').length, 1, `${name} -> ${m.folder}`);
      assert.ok(!m.folder.split('/').pop()!.startsWith('.'), m.folder);
      assert.ok(!/^(con|nul)-/i.test(m.folder.split('/').pop()!) || /-vm-/.test(m.folder), m.folder);
      assert.ok(existsSync(join(m.folder, 'machine.json')));
    }
    await rejects(lib.createMachine('', { diskSize: DISK_SIZE }), 'INVALID_NAME');
    await rejects(lib.createMachine('   ', { diskSize: DISK_SIZE }), 'INVALID_NAME');
    await rejects(lib.createMachine('a\nb', { diskSize: DISK_SIZE }), 'INVALID_NAME');
    await rejects(lib.createMachine('x'.repeat(129), { diskSize: DISK_SIZE }), 'INVALID_NAME');
    assert.equal((await lib.list()).length, 8);
    assert.deepEqual(readdirSync(lib.dir).filter((f) => f.startsWith('.')), []);
  });

  it('takes snapshots in a tree, reverts to any of them, and every state keeps reading exactly as it was', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    const cur = blank();
    await writeRegions(lib, m.id, 0, 4, 1, cur);
    const base = [...cur];
    await lib.takeSnapshot(m.id, 'Base', { description: 'fresh install' });
    await writeRegions(lib, m.id, 2, 6, 2, cur);
    const s2 = [...cur];
    await lib.takeSnapshot(m.id, 'Second');
    await writeRegions(lib, m.id, 0, 1, 3, cur);
    let d = await lib.show(m.id);
    expectMachine(d, cur, { Base: base, Second: s2 });
    // Frozen layers are read-only on disk; the current top is not.
    assert.equal(statSync(snapshotLayer(d, 'Base')).mode & 0o777, 0o444);
    assert.equal(statSync(d.disks[0]!.path).mode & 0o222, 0o200);
    assert.equal(d.currentChangedBytes, MiB);

    await rejects(lib.revert(m.id, 'Base'), 'NEEDS_CONFIRMATION', /discard.*save it as a snapshot/);
    const r = await lib.revert(m.id, 'Base', { discardCurrent: true });
    assert.equal(r.discardedBytes, MiB);
    d = await lib.show(m.id);
    expectMachine(d, base, { Base: base, Second: s2 });
    assert.equal(d.current, d.snapshots.find((s) => s.name === 'Base')!.id);

    // A new branch under Base.
    const branch = [...base];
    await writeRegions(lib, m.id, 7, 8, 4, branch);
    const r2 = await lib.revert(m.id, 'Second', { saveCurrentAs: 'Branch' });
    assert.ok(r2.saved);
    d = await lib.show(m.id);
    expectMachine(d, s2, { Base: base, Second: s2, Branch: branch });
    const tree = await lib.snapshotTree(m.id);
    assert.equal(tree.roots.length, 1);
    assert.deepEqual(
      tree.roots[0]!.children.map((c) => c.name),
      ['Second', 'Branch'],
    );
    assert.deepEqual(
      tree.roots[0]!.children[0]!.children.map((c) => c.kind),
      ['current'],
    );
    assert.equal(tree.roots[0]!.children[0]!.isCurrentParent, true);
    await checkLibrary(lib);
  });

  it('resolves snapshots by id, unique name or id prefix, and lists the candidates of an ambiguous name with their tree paths', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    await lib.takeSnapshot(m.id, 'Base');
    const a = await lib.takeSnapshot(m.id, 'dup');
    await lib.revert(m.id, 'Base', { discardCurrent: true });
    const b = await lib.takeSnapshot(m.id, 'dup');
    const err = await rejects(lib.revert(m.id, 'dup', { discardCurrent: true }), 'AMBIGUOUS');
    assert.deepEqual([...(err.candidates ?? [])].sort(), [`Base > dup (id ${a.id})`, `Base > dup (id ${b.id})`].sort());
    await lib.revert(m.id, a.id, { discardCurrent: true });
    assert.equal((await lib.show(m.id)).current, a.id);
    await lib.revert(m.id, b.id.slice(0, 8), { discardCurrent: true });
    assert.equal((await lib.show(m.id)).current, b.id);
    await rejects(lib.revert(m.id, 'nope', { discardCurrent: true }), 'NOT_FOUND');
    const edited = await lib.editSnapshot(m.id, a.id, { name: 'first dup', description: 'line one\nline two' });
    assert.equal(edited.name, 'first dup');
    assert.equal(edited.description, 'line one\nline two');
    assert.equal((await lib.revert(m.id, 'dup', { discardCurrent: true })).snapshot.id, b.id);
    await rejects(lib.editSnapshot(m.id, b.id, { name: 'tab\there' }), 'INVALID_NAME');
  });

  it('deletes snapshots by merging their layers (commit or rebase), and every other state reads as before', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    const model: Record<string, Regions> = {};
    const cur = blank();
    await writeRegions(lib, m.id, 0, 8, 1, cur);
    model['A'] = [...cur];
    await lib.takeSnapshot(m.id, 'A');
    await writeRegions(lib, m.id, 1, 2, 2, cur);
    model['B'] = [...cur];
    await lib.takeSnapshot(m.id, 'B');
    await writeRegions(lib, m.id, 2, 7, 3, cur);
    model['C'] = [...cur];
    await lib.takeSnapshot(m.id, 'C');
    await writeRegions(lib, m.id, 3, 4, 4, cur);
    model['D'] = [...cur];
    await lib.takeSnapshot(m.id, 'D');
    await writeRegions(lib, m.id, 4, 5, 5, cur);
    const check = async (): Promise<MachineDetails> => {
      const d = await lib.show(m.id);
      expectMachine(d, cur, model);
      await checkLibrary(lib);
      return d;
    };
    await check();

    // C (5 MiB) has one dependant, D (1 MiB): D is committed into C's layer, which takes D's name.
    const dLayer = snapshotLayer(await lib.show(m.id), 'D');
    let r = await lib.deleteSnapshot(m.id, 'C');
    assert.deepEqual(r.merges.map((x) => x.strategy), ['commit']);
    delete model['C'];
    let d = await check();
    assert.equal(snapshotLayer(d, 'D'), dLayer);
    assert.equal(d.snapshots.find((s) => s.name === 'D')!.parentId, d.snapshots.find((s) => s.name === 'B')!.id);

    // A (8 MiB) has one dependant, B (1 MiB)... make B's dependant bigger instead: delete B, whose layer is small
    // and whose dependant D now holds 6 MiB: rebase D onto A.
    r = await lib.deleteSnapshot(m.id, 'B');
    assert.deepEqual(r.merges.map((x) => x.strategy), ['rebase']);
    delete model['B'];
    d = await check();
    assert.equal(backingOf(snapshotLayer(d, 'D')), relative(m.folder, snapshotLayer(d, 'A')));
    assert.ok(r.freedBytes > 0, 'disk space is given back');

    // Several dependants: a branch under A and the current state under D.
    await lib.revert(m.id, 'A', { saveCurrentAs: 'E' });
    model['E'] = [...cur];
    cur.splice(0, cur.length, ...model['A']!);
    await writeRegions(lib, m.id, 6, 8, 6, cur);
    model['F'] = [...cur];
    await lib.takeSnapshot(m.id, 'F');
    await lib.revert(m.id, 'D', { discardCurrent: true });
    cur.splice(0, cur.length, ...model['D']!);
    r = await lib.deleteSnapshot(m.id, 'A');
    assert.deepEqual(r.merges, [{ snapshotId: r.deleted[0]!.id, strategy: 'rebase', dependants: 2 }]);
    delete model['A'];
    d = await check();
    assert.equal(backingOf(snapshotLayer(d, 'D')), undefined, 'the new roots stand alone');

    // A leaf nothing depends on: its file just goes.
    r = await lib.deleteSnapshot(m.id, 'F');
    assert.deepEqual(r.merges.map((x) => x.strategy), ['none']);
    delete model['F'];
    d = await check();
    assert.equal(readdirSync(m.folder).filter((f) => f.endsWith('.qcow2')).length, 1 + d.snapshots.length);

    // The snapshot the current state descends from: the current state keeps its content.
    await writeRegions(lib, m.id, 0, 1, 7, cur);
    r = await lib.deleteSnapshot(m.id, 'E');
    delete model['E'];
    r = await lib.deleteSnapshot(m.id, 'D');
    delete model['D'];
    d = await check();
    assert.equal(d.snapshots.length, 0);
    assert.equal(d.current, null);
    assert.equal(backingOf(d.disks[0]!.path), undefined);
  });

  it('deletes a snapshot with its children; the current state keeps its content even when it was inside the subtree', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    const cur = blank();
    await writeRegions(lib, m.id, 0, 2, 1, cur);
    const root = [...cur];
    await lib.takeSnapshot(m.id, 'Root');
    await writeRegions(lib, m.id, 2, 4, 2, cur);
    await lib.takeSnapshot(m.id, 'Mid');
    await writeRegions(lib, m.id, 4, 5, 3, cur);
    await lib.takeSnapshot(m.id, 'Leaf');
    await lib.revert(m.id, 'Mid', { discardCurrent: true });
    await writeRegions(lib, m.id, 5, 6, 4, cur);
    cur[4] = 0;
    await lib.takeSnapshot(m.id, 'Other leaf');
    await writeRegions(lib, m.id, 6, 7, 5, cur);
    // Current (under "Other leaf" under Mid) is inside Mid's subtree.
    const r = await lib.deleteSnapshot(m.id, 'Mid', { children: true });
    assert.deepEqual(r.deleted.map((x) => x.name).sort(), ['Leaf', 'Mid', 'Other leaf']);
    const d = await lib.show(m.id);
    expectMachine(d, cur, { Root: root });
    assert.equal(d.current, d.snapshots[0]!.id);
    assert.equal(readdirSync(m.folder).filter((f) => f.endsWith('.qcow2')).length, 2);
    await checkLibrary(lib);

    // A subtree that does not hold the current state just goes.
    await lib.takeSnapshot(m.id, 'Keep');
    await lib.revert(m.id, 'Root', { discardCurrent: true });
    await writeRegions(lib, m.id, 7, 8, 9);
    await lib.takeSnapshot(m.id, 'Gone');
    await lib.takeSnapshot(m.id, 'Gone child');
    await lib.revert(m.id, 'Keep', { discardCurrent: true });
    await lib.deleteSnapshot(m.id, 'Gone', { children: true });
    expectMachine(await lib.show(m.id), cur, { Root: root, Keep: cur });
    await checkLibrary(lib);
  });

  it('makes linked clones with a new identity, locks the snapshot they hang on, and unlocks it when promoted', async () => {
    const src = await lib.createMachine('Source', { diskSize: DISK_SIZE, cpus: 3 });
    const cur = blank();
    await writeRegions(lib, src.id, 0, 3, 1, cur);
    const base = [...cur];
    await lib.takeSnapshot(src.id, 'Base');
    await writeRegions(lib, src.id, 3, 4, 2, cur);
    const s2 = [...cur];
    await lib.takeSnapshot(src.id, 'Second');
    await writeRegions(lib, src.id, 4, 5, 3, cur);

    const c1 = await lib.clone(src.id, 'Clone of Second', { kind: 'linked', from: 'Second' });
    assert.equal(c1.takenSnapshot, null);
    const clone = c1.machine;
    assert.notEqual(clone.id, src.id);
    assert.notEqual(clone.macAddress, src.macAddress);
    assert.equal(clone.cpus, 3);
    assert.deepEqual(clone.clonedFrom, { machineId: src.id, snapshotId: (await lib.show(src.id)).snapshots[1]!.id, kind: 'linked' });
    expectRegions(clone.disks[0]!.path, s2, 'linked clone');
    assert.ok(!backingOf(clone.disks[0]!.path)!.startsWith('/'), 'relative backing path');
    assert.ok(clone.currentSizeBytes < 1024 * 1024, 'almost no disk');
    // Writing into the clone changes nothing in the source.
    const cloneCur = [...s2];
    await writeRegions(lib, clone.id, 6, 7, 8, cloneCur);
    expectMachine(await lib.show(src.id), cur, { Base: base, Second: s2 });
    expectRegions(clone.disks[0]!.path, cloneCur);

    // Locked: the snapshot and the ones below it; the machine too.
    const locked = await rejects(lib.deleteSnapshot(src.id, 'Second'), 'LOCKED_BY_CLONES', /Clone of Second/);
    assert.equal(locked.candidates?.length, 1);
    await rejects(lib.deleteSnapshot(src.id, 'Base'), 'LOCKED_BY_CLONES');
    await rejects(lib.deleteMachine(src.id), 'LOCKED_BY_CLONES', /Clone of Second/);
    assert.deepEqual((await lib.show(src.id)).snapshots[1]!.lockedBy, [clone.id]);

    // A snapshot in the clone, then promote: its data is its own, the clone's states read the same.
    await lib.takeSnapshot(clone.id, 'In clone');
    const inClone = [...cloneCur];
    await writeRegions(lib, clone.id, 7, 8, 9, cloneCur);
    const promoted = await lib.promote(clone.id);
    assert.deepEqual(promoted.clonedFrom, { machineId: src.id, snapshotId: clone.clonedFrom!.snapshotId, kind: 'full' });
    expectMachine(promoted, cloneCur, { 'In clone': inClone });
    assert.equal(backingOf(snapshotLayer(promoted, 'In clone')), undefined);
    assert.equal(backingOf(promoted.disks[0]!.path), relative(promoted.folder, snapshotLayer(promoted, 'In clone')));
    await rejects(lib.promote(clone.id), 'INVALID_ARGUMENT');
    // Second is free now.
    assert.deepEqual((await lib.show(src.id)).snapshots[1]!.lockedBy, []);
    await lib.deleteSnapshot(src.id, 'Second');
    expectMachine(await lib.show(src.id), cur, { Base: base });
    expectMachine(await lib.show(clone.id), cloneCur, { 'In clone': inClone });

    // Linked clone of the current state: a snapshot of the source is taken first and reported.
    const c2 = await lib.clone(src.id, 'Now', { kind: 'linked' });
    assert.ok(c2.takenSnapshot);
    assert.match(c2.takenSnapshot.name, /Now/);
    const srcNow = await lib.show(src.id);
    assert.equal(srcNow.current, c2.takenSnapshot.id);
    expectRegions(c2.machine.disks[0]!.path, cur, 'clone of current');
    expectRegions(srcNow.disks[0]!.path, cur, 'source after clone');
    // A clone of the clone: its chain crosses two machine folders.
    const c3 = await lib.clone(c2.machine.id, 'Now of Now', { kind: 'linked' });
    expectRegions(c3.machine.disks[0]!.path, cur, 'clone of a clone');
    await rejects(lib.deleteMachine(c2.machine.id), 'LOCKED_BY_CLONES', /Now of Now/);
    await checkLibrary(lib);

    // Deleting the source with its clones: the linked clones go (deepest first), the promoted clone stays.
    const del = await lib.deleteMachine(src.id, { withClones: true });
    assert.deepEqual(del.deleted.map((x) => x.name), ['Now of Now', 'Now', 'Source']);
    assert.deepEqual((await lib.list()).map((x) => x.name), ['Clone of Second']);
    expectMachine(await lib.show(clone.id), cloneCur, { 'In clone': inClone });
    assert.deepEqual(readdirSync(lib.dir).filter((f) => f.startsWith('.')), []);
    await checkLibrary(lib);
  });

  it('makes full clones that share nothing, from the current state or a snapshot; a cancelled one leaves nothing', async () => {
    const src = await lib.createMachine('Source', { diskSize: DISK_SIZE });
    const cur = blank();
    await writeRegions(lib, src.id, 0, 3, 1, cur);
    const base = [...cur];
    await lib.takeSnapshot(src.id, 'Base');
    await writeRegions(lib, src.id, 2, 5, 2, cur);
    const before = readdirSync(src.folder).sort();

    const progress: number[] = [];
    const f1 = await lib.clone(src.id, 'Full now', { kind: 'full', onProgress: (done) => progress.push(done) });
    assert.ok(progress.length > 0);
    assert.equal(f1.takenSnapshot, null);
    assert.deepEqual(readdirSync(src.folder).sort(), before, 'the source is not changed');
    assert.equal(backingOf(f1.machine.disks[0]!.path), undefined);
    assert.ok(qemuSame(f1.machine.disks[0]!.path, (await lib.show(src.id)).disks[0]!.path));
    expectRegions(f1.machine.disks[0]!.path, cur);
    assert.deepEqual(f1.machine.clonedFrom, { machineId: src.id, snapshotId: null, kind: 'full' });
    assert.notEqual(f1.machine.macAddress, src.macAddress);

    const f2 = await lib.clone(src.id, 'Full base', { kind: 'full', from: 'Base' });
    expectRegions(f2.machine.disks[0]!.path, base);
    // A full clone does not lock anything.
    await lib.deleteSnapshot(src.id, 'Base');
    expectRegions(f2.machine.disks[0]!.path, base);

    const abort = new AbortController();
    abort.abort();
    const names = readdirSync(lib.dir).sort();
    await rejects(lib.clone(src.id, 'Cancelled', { kind: 'full', signal: abort.signal }), 'ABORTED');
    assert.deepEqual(readdirSync(lib.dir).sort(), names, 'nothing left behind');
    assert.equal((await lib.list()).length, 3);

    // Into another folder: registered in the library, listed, deletable.
    const outside = join(scratch.dir, 'elsewhere');
    const f3 = await lib.clone(src.id, 'Outside', { kind: 'linked', dir: outside });
    assert.ok(f3.machine.folder.startsWith(outside));
    expectRegions(f3.machine.disks[0]!.path, cur);
    const reopened = await Library.open(lib.dir);
    assert.ok((await reopened.list()).some((x) => x.id === f3.machine.id));
    await reopened.deleteMachine(f3.machine.id);
    assert.equal(readdirSync(outside).length, 0);
    await checkLibrary(lib);
  });

  // Refusals of a really running machine (QEMU) are in running.test.ts; the manifest alone is only the last known state.
  it('reads a manifest that says running while no QEMU runs as off (a crash left it stale) and lets operations proceed', async () => {
    const m = await lib.createMachine('Running', { diskSize: DISK_SIZE });
    await lib.takeSnapshot(m.id, 'S');
    const file = join(m.folder, 'machine.json');
    const json = JSON.parse(readFileSync(file, 'utf8')) as { powerState: string };
    json.powerState = 'running';
    writeFileSync(file, JSON.stringify(json));
    assert.equal((await lib.show(m.id)).powerState, 'off');
    assert.equal((await lib.list()).find((x) => x.id === m.id)?.powerState, 'off');
    await lib.clone(m.id, 'c', { kind: 'linked', from: 'S' });
    await lib.revert(m.id, 'S', { discardCurrent: true });
    assert.equal((await lib.machineStatus(m.id)).powerState, 'off');
    assert.equal((JSON.parse(readFileSync(file, 'utf8')) as { powerState: string }).powerState, 'off', 'the manifest is corrected');
    await lib.deleteMachine(m.id, { withClones: true });
    assert.equal((await lib.list()).some((x) => x.id === m.id), false);
  });

  it('reports a wrong manifest naming the file and the field', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    const file = join(m.folder, 'machine.json');
    const good = readFileSync(file, 'utf8');
    const cases: [(j: Record<string, unknown>) => void, RegExp][] = [
      [(j) => (j['macAddress'] = 'nope'), /"macAddress"/],
      [(j) => (j['version'] = 99), /"version"/],
      [(j) => ((j['disks'] as { top: string }[])[0]!.top = '../../etc/passwd'), /"disks\[0\]\.top"/],
      [(j) => (j['current'] = 'missing'), /"current"/],
    ];
    for (const [spoil, field] of cases) {
      const j = JSON.parse(good) as Record<string, unknown>;
      spoil(j);
      writeFileSync(file, JSON.stringify(j));
      const e = await rejects(lib.show(m.id), 'NOT_FOUND');
      assert.ok(e);
      const broken = await lib.broken();
      assert.equal(broken.length, 1);
      assert.match(broken[0]!.message, field);
      assert.ok(broken[0]!.message.includes(file));
    }
    writeFileSync(file, '{ not json');
    assert.match((await lib.broken())[0]!.message, /not valid JSON/);
  });

  it('keeps the links to the current disks (made for a libvirt domain) on the top through take, revert and delete', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    const plain = await lib.createMachine('other', { diskSize: DISK_SIZE });
    const [link] = await lib.linkCurrentDisks(m.id);
    assert.equal(link, join(m.folder, 'current-disk0.qcow2'));
    const top = async (): Promise<string> => (await lib.show(m.id)).disks[0]!.path;
    assert.equal(realpathSync(link!), await top());
    await lib.takeSnapshot(m.id, 'a');
    assert.equal(realpathSync(link!), await top());
    await lib.takeSnapshot(m.id, 'b');
    await lib.revert(m.id, 'a', { discardCurrent: true });
    assert.equal(realpathSync(link!), await top());
    await lib.deleteSnapshot(m.id, 'a');
    assert.equal(realpathSync(link!), await top());
    assert.ok(readdirSync(m.folder).every((n) => !n.endsWith('.partial')), readdirSync(m.folder).join(', '));
    assert.equal(existsSync(join(plain.folder, 'current-disk0.qcow2')), false, 'a machine nobody linked gets no link');
    await lib.takeSnapshot(plain.id, 'p');
    assert.equal(existsSync(join(plain.folder, 'current-disk0.qcow2')), false);
  });

  it('refuses to change a machine whose disk another program writes to (a QEMU outside vmsnap), naming the program', async function () {
    requireTool('qemu-io');
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    await lib.takeSnapshot(m.id, 'base');
    const shown = await lib.show(m.id);
    const top = shown.disks[0]!.path;
    // Another QEMU writing into a snapshot's frozen layer (a libvirt domain left pointing at an old top) or the top.
    for (const file of [snapshotLayer(shown, 'base'), top]) {
      const writer = spawn('qemu-io', ['-c', 'sleep 60000', file], { stdio: 'ignore' });
      try {
        const until = Date.now() + 10_000;
        while (!readFileSync('/proc/locks', 'utf8').includes(`:${statSync(file).ino} `) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
        const before = readFileSync(top);
        await rejects(lib.takeSnapshot(m.id, 'during'), 'BUSY', new RegExp(`in use by another program \\(pid ${writer.pid}: qemu-io -c sleep 60000 .*\\), outside vmsnap`));
        await rejects(lib.revert(m.id, 'base', { discardCurrent: true }), 'BUSY', /outside vmsnap/);
        assert.deepEqual(readFileSync(top), before, 'the top is untouched');
        assert.deepEqual((await lib.show(m.id)).snapshots.map((s) => s.name), ['base']);
      } finally {
        writer.kill('SIGKILL');
        await new Promise((r) => writer.once('exit', r));
      }
    }
    // A reader (qemu-img info, a linked clone's QEMU reading a frozen layer) holds no write permission: no refusal.
    const reader = spawn('qemu-io', ['-r', '-c', 'sleep 60000', snapshotLayer(shown, 'base')], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 500));
      await lib.takeSnapshot(m.id, 'after');
    } finally {
      reader.kill('SIGKILL');
    }
  });

  it('locks a machine across processes: a live holder is waited for, then makes it BUSY; a dead one is taken over', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    const lockFile = join(m.folder, 'machine.lock');
    const since = new Date().toISOString();
    writeFileSync(lockFile, JSON.stringify({ pid: process.ppid, host: (await import('node:os')).hostname(), operation: 'full clone', since, token: 'x' }));
    await rejects(lib.takeSnapshot(m.id, 's'), 'BUSY', new RegExp(`is busy: full clone since ${since.replace(/[.]/g, '\\.')} \\(pid ${process.ppid}\\)`));
    // Opening the library meanwhile (another window, the CLI) leaves the holder alone and does not wait for it.
    const opening = Date.now();
    await Library.open(lib.dir);
    assert.ok(Date.now() - opening < 1000, `opening waited ${Date.now() - opening} ms for the lock`);
    assert.ok(existsSync(lockFile), 'the live holder keeps its lock');
    // pid 2^22+ is beyond Linux's pid_max default, so no process has it.
    writeFileSync(lockFile, JSON.stringify({ pid: 4194303, host: (await import('node:os')).hostname(), operation: 'take snapshot', since, token: 'y' }));
    await lib.takeSnapshot(m.id, 's');
    assert.equal(existsSync(lockFile), false);
    // A live pid that another process got after the holder died: its start time differs, so the lock is stale.
    const host = (await import('node:os')).hostname();
    const parentStart = processStart(process.ppid);
    assert.ok(parentStart !== null, '/proc tells when a process started');
    writeFileSync(lockFile, JSON.stringify({ pid: process.ppid, started: parentStart, host, operation: 'full clone', since, token: 'z' }));
    await rejects(lib.takeSnapshot(m.id, 't'), 'BUSY', /is busy: full clone/);
    writeFileSync(lockFile, JSON.stringify({ pid: process.ppid, started: String(Number(parentStart) + 1), host, operation: 'full clone', since, token: 'w' }));
    await lib.takeSnapshot(m.id, 't');
    assert.equal(existsSync(lockFile), false);
    // A live holder that lets go within the wait (a status read, another window's recovery check): the operation
    // waits for it instead of failing.
    writeFileSync(lockFile, JSON.stringify({ pid: process.ppid, started: parentStart, host, operation: 'status', since, token: 'v' }));
    const released = new Promise<void>((resolve) =>
      setTimeout(() => {
        rmSync(lockFile);
        resolve();
      }, 300),
    );
    await lib.takeSnapshot(m.id, 'after the wait');
    await released;
    // Two operations at once in one process: one after the other, not interleaved.
    await Promise.all([lib.takeSnapshot(m.id, 'a'), lib.takeSnapshot(m.id, 'b')]);
    const names = (await lib.show(m.id)).snapshots.map((s) => s.name);
    for (const name of ['after the wait', 'a', 'b']) assert.ok(names.includes(name), names.join(', '));
    await checkLibrary(lib);
  });

  it('imports raw and qcow2 images; internal snapshots are listed, flattened, or converted into a snapshot chain', async () => {
    const raw = join(scratch.dir, 'disk.raw');
    qemuImg('create', '-q', '-f', 'raw', raw, String(DISK_SIZE));
    const rawModel = blank();
    qemuIo(raw, ['write -P 5 0 1048576'], 'raw');
    rawModel[0] = 5;
    const r1 = await lib.importMachine('From raw', raw);
    expectRegions(r1.machine.disks[0]!.path, rawModel);
    assert.deepEqual(r1.internalSnapshots, []);

    const q = join(scratch.dir, 'disk.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', q, String(DISK_SIZE));
    const m1 = blank();
    qemuIo(q, ['write -P 1 0 2097152']);
    m1[0] = m1[1] = 1;
    qemuImg('snapshot', '-c', 'first', q);
    const m2 = [...m1];
    qemuIo(q, ['write -P 2 1048576 2097152']);
    m2[1] = m2[2] = 2;
    qemuImg('snapshot', '-c', 'second', q);
    const now = [...m2];
    qemuIo(q, ['write -z 0 1048576', 'write -P 3 7340032 1048576']);
    now[0] = 0;
    now[7] = 3;
    const sum = qemuImg('info', '--output=json', q);

    const flat = await lib.importMachine('Flat', q);
    assert.deepEqual(flat.internalSnapshots.map((s) => s.name), ['first', 'second']);
    assert.equal(flat.convertedSnapshots, false);
    assert.equal(flat.machine.snapshots.length, 0);
    expectRegions(flat.machine.disks[0]!.path, now);

    const conv = await lib.importMachine('Converted', q, { internalSnapshots: 'convert' });
    assert.equal(conv.convertedSnapshots, true);
    expectMachine(conv.machine, now, { first: m1, second: m2 });
    assert.equal(conv.machine.current, conv.machine.snapshots[1]!.id);
    assert.equal(conv.machine.snapshots[1]!.parentId, conv.machine.snapshots[0]!.id);
    assert.equal(qemuImg('info', '--output=json', q), sum, 'the imported image is only read');
    await rejects(lib.importMachine('Missing', join(scratch.dir, 'nope.qcow2')), 'IMAGE_ERROR');
    await checkLibrary(lib);
  });

  it('reports sizes, what changed between two states, and the comparison table of a family', async () => {
    const m = await lib.createMachine('Src', { diskSize: DISK_SIZE, note: 'the original' });
    await writeRegions(lib, m.id, 0, 2, 1);
    await lib.takeSnapshot(m.id, 'A', { description: 'two MiB' });
    await writeRegions(lib, m.id, 4, 5, 2);
    await lib.takeSnapshot(m.id, 'B');
    await writeRegions(lib, m.id, 6, 7, 3);
    const sizes = await lib.sizes(m.id);
    assert.equal(sizes.current.changedBytes, MiB);
    assert.ok(sizes.snapshots[0]!.sizeBytes >= 2 * MiB && sizes.snapshots[0]!.sizeBytes < 3 * MiB, String(sizes.snapshots[0]!.sizeBytes));
    assert.ok(sizes.snapshots[1]!.sizeBytes >= MiB && sizes.snapshots[1]!.sizeBytes < 2 * MiB);

    const ab = await lib.diff(m.id, 'A', 'B');
    assert.equal(ab.bytes, MiB);
    assert.deepEqual(ab.disks[0]!.ranges, [{ offset: 4 * MiB, length: MiB }]);
    const ac = await lib.diff(m.id, 'A', 'current', { exact: true });
    assert.equal(ac.bytes, 2 * MiB);
    assert.equal((await lib.diff(m.id, 'B', 'B')).bytes, 0);

    const linked = await lib.clone(m.id, 'Linked', { kind: 'linked', from: 'A' });
    const full = await lib.clone(linked.machine.id, 'Full of linked', { kind: 'full' });
    const rows = await lib.compare(full.machine.id);
    assert.deepEqual(
      rows.map((r) => [r.kind, r.name, r.canRunAlongsideSource]),
      [
        ['machine', 'Src', true],
        ['snapshot', 'A', false],
        ['snapshot', 'B', false],
        ['linked', 'Linked', true],
        ['full', 'Full of linked', true],
      ],
    );
    assert.deepEqual(rows[3]!.dependsOn, { kind: 'snapshot', snapshotId: rows[1]!.id, snapshotName: 'A', machineId: rows[0]!.id, machineName: 'Src' });
    assert.deepEqual(rows[4]!.dependsOn, { kind: 'nothing' });
    assert.equal(rows[1]!.description, 'two MiB');
    assert.equal(new Set(rows.filter((r) => r.kind !== 'snapshot').map((r) => r.macAddress)).size, 3);
    assert.ok(rows[4]!.sizeBytes >= 2 * MiB && rows[3]!.sizeBytes < MiB);
  });
});

