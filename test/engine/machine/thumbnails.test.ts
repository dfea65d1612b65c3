// Snapshot thumbnails on a real QEMU: the boot-sector guest's VGA screen (SeaBIOS's boot text) in a running
// snapshot, the last screen before power-off in a snapshot taken while off, copies in clones, removal with the
// snapshot, and recovery of a running snapshot killed at every step leaving no orphan picture.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { Library, type MachineDetails, type SnapshotInfo } from '../../../src/engine/machine';
import { measurementsNeeded, planSnapshotDeletion } from '../../../src/engine/machine/delete-planner';
import { validateManifest, type SnapshotRecord } from '../../../src/engine/machine/manifest';
import { countColours, decodePng, encodePng, RUNTIME_FILE_NAMES, RUNTIME_FILES, THUMBNAIL_WIDTH } from '../../../src/engine/runtime';
import { scratchDir } from '../../support/qemu';
import { ACCEL, libraryWithCountingGuest, logSize, stopEveryMachine, waitForCounts } from '../../support/guest-machines';

/** A thumbnail file that is a PNG of a real screen: 240 px wide, 4:3 or VGA text's 9:5, not one flat colour. */
function expectScreenThumbnail(file: string | null, what: string): void {
  assert.ok(file !== null, `${what}: no thumbnail`);
  assert.ok(existsSync(file), `${what}: ${file} is missing`);
  const img = decodePng(readFileSync(file));
  assert.equal(img.width, THUMBNAIL_WIDTH, what);
  assert.ok(img.height >= 100 && img.height <= 200, `${what}: ${img.width}×${img.height}`);
  assert.ok(countColours(img) > 1, `${what}: a blank screen`);
}

const inode = (f: string): number => statSync(f).ino;

describe('machine library: snapshot thumbnails (QEMU, TCG, VGA)', function () {
  this.timeout(180000);
  const scratch = scratchDir('vmsnap-thumbs-');
  let lib: Library;
  let m: MachineDetails;
  const snap = async (name: string): Promise<SnapshotInfo> => (await lib.show('guest')).snapshots.find((s) => s.name === name)!;

  before(async () => {
    ({ lib, machine: m } = await libraryWithCountingGuest(join(scratch.dir, 'lib'), scratch.path('guest.raw')));
  });

  after(async () => {
    await stopEveryMachine(lib);
    scratch.cleanup();
  });

  it('a running snapshot (with memory or disks only) keeps a PNG of the screen; a snapshot before any run has none', async () => {
    const cold = await lib.takeSnapshot('guest', 'never ran');
    assert.equal(cold.thumbnail, null);
    const started = await lib.startMachine('guest');
    await waitForCounts(started.serialLog, 5);
    const live = await lib.takeSnapshot('guest', 'live');
    assert.equal(live.hasMemory, true);
    expectScreenThumbnail(live.thumbnail, 'with memory');
    if (process.env['VMSNAP_TRACE_THUMBS']) copyFileSync(live.thumbnail!, '/tmp/vmsnap-thumb-sample.png');
    assert.equal(live.thumbnail, join(m.folder, `thumb-${live.id}.png`));
    const disks = await lib.takeSnapshot('guest', 'disks', { diskOnly: true });
    expectScreenThumbnail(disks.thumbnail, 'disks only');
    // The manifest names it, confined to the folder like the state file.
    const manifest = JSON.parse(readFileSync(join(m.folder, 'machine.json'), 'utf8')) as { snapshots: { id: string; thumbnail?: string }[] };
    assert.equal(manifest.snapshots.find((s) => s.id === live.id)?.thumbnail, `thumb-${live.id}.png`);
    assert.deepEqual(readdirSync(m.folder).filter((f) => f.startsWith('.')), [], 'no raw screendump left');
  });

  it('powered off through stop, the machine keeps its last screen; a snapshot taken while off gets its own copy', async () => {
    await lib.stopMachine('guest', { force: true });
    const last = join(m.folder, RUNTIME_FILES.lastScreen);
    expectScreenThumbnail(last, 'last screen');
    const off = await lib.takeSnapshot('guest', 'off');
    expectScreenThumbnail(off.thumbnail, 'taken while off');
    assert.ok(readFileSync(off.thumbnail!).equals(readFileSync(last)));
    assert.notEqual(inode(off.thumbnail!), inode(last), 'a copy, not a link');
  });

  it('full and linked clones each get their own copy; deleting the source snapshot leaves the clones\' pictures', async () => {
    const live = await snap('live');
    const full = (await lib.clone('guest', 'full copy', { kind: 'full', from: 'live' })).machine;
    const linked = (await lib.clone('guest', 'linked copy', { kind: 'linked', from: 'off' })).machine;
    const linkedNow = await lib.clone('guest', 'linked now', { kind: 'linked' });
    for (const [c, from] of [
      [full, live.thumbnail!],
      [linked, (await snap('off')).thumbnail!],
    ] as const) {
      const copy = join(c.folder, RUNTIME_FILES.lastScreen);
      expectScreenThumbnail(copy, c.name);
      assert.ok(readFileSync(copy).equals(readFileSync(from)), `${c.name}: the snapshot's picture`);
      assert.notEqual(inode(copy), inode(from));
      // The clone's own snapshot while off shows it: a file of the clone's.
      const s = await lib.takeSnapshot(c.name, 'first');
      expectScreenThumbnail(s.thumbnail, `${c.name}'s snapshot`);
      assert.ok(s.thumbnail!.startsWith(c.folder));
    }
    // A linked clone of the current state takes a snapshot of the source: it and the clone have their own copies.
    const taken = linkedNow.takenSnapshot!;
    expectScreenThumbnail(taken.thumbnail, 'the snapshot a linked clone of the current state takes');
    expectScreenThumbnail(join(linkedNow.machine.folder, RUNTIME_FILES.lastScreen), 'linked now');

    // A linked clone locks the snapshots above it: they go first.
    await lib.deleteMachine('linked now');
    await lib.deleteMachine('linked copy');
    await lib.deleteSnapshot('guest', live.id);
    assert.equal(existsSync(live.thumbnail!), false, 'deleted with its snapshot');
    expectScreenThumbnail(join(full.folder, RUNTIME_FILES.lastScreen), 'the full clone after the source snapshot went');
    expectScreenThumbnail((await lib.show('full copy')).snapshots[0]!.thumbnail, 'the full clone\'s snapshot');
  });

  it('delete --children removes every thumbnail of the subtree; a revert makes the snapshot\'s picture the last screen', async () => {
    const disks = await snap('disks');
    const off = await snap('off');
    await lib.revert('guest', 'never ran', { discardCurrent: true });
    assert.equal(existsSync(join(m.folder, RUNTIME_FILES.lastScreen)), false, 'that snapshot had no picture');
    await lib.revert('guest', 'disks', { discardCurrent: true });
    assert.ok(readFileSync(join(m.folder, RUNTIME_FILES.lastScreen)).equals(readFileSync(disks.thumbnail!)));
    await lib.revert('guest', 'never ran', { discardCurrent: true });
    await lib.deleteSnapshot('guest', 'disks', { children: true });
    assert.equal(existsSync(disks.thumbnail!), false);
    assert.equal(existsSync(off.thumbnail!), false);
    const pictures = readdirSync(m.folder).filter((f) => f.endsWith('.png'));
    assert.deepEqual(pictures, [], `left: ${pictures.join(', ')}`);
  });

  it('a headless machine (display none) snapshots without a thumbnail and keeps the last screen it had', async () => {
    const file = join(m.folder, 'machine.json');
    const pictureBefore = join(m.folder, RUNTIME_FILES.lastScreen);
    await lib.revert('guest', 'never ran', { discardCurrent: true });
    const started = await lib.startMachine('guest');
    await waitForCounts(started.serialLog, 3);
    await lib.stopMachine('guest', { force: true });
    const seen = readFileSync(pictureBefore);
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), display: 'none' }));
    const headless = await lib.startMachine('guest');
    await waitForCounts(headless.serialLog, 3, logSize(headless.serialLog));
    const s = await lib.takeSnapshot('guest', 'headless');
    assert.equal(s.hasMemory, true);
    assert.equal(s.thumbnail, null);
    await lib.stopMachine('guest', { force: true });
    assert.ok(readFileSync(pictureBefore).equals(seen), 'the last screen from before');
    await lib.deleteSnapshot('guest', s.id);
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), display: 'std' }));
  });

  it('a running snapshot killed at every step leaves no orphan thumbnail and no missing one', async () => {
    const child = scratch.path('crash-child.js');
    buildSync({ entryPoints: [join(__dirname, 'crash-child.ts')], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: child, logLevel: 'warning' });
    await lib.startMachine('guest');
    await waitForCounts(join(m.folder, 'serial.log'), 3);
    let completed = false;
    const outcomes: string[] = [];
    for (let n = 1; n <= 30 && !completed; n++) {
      const r = spawnSync(process.execPath, [child, lib.dir, 'take-running'], { encoding: 'utf8', env: { ...process.env, VMSNAP_CRASH_AFTER_STEP: String(n) } });
      completed = r.status === 0;
      if (!completed) assert.equal(r.signal, 'SIGKILL', `step ${n}: failed instead of being killed: ${r.stderr}`);
      const reopened = await Library.open(lib.dir, { qemu: { accel: ACCEL } });
      const d = await reopened.show('guest');
      const manifest = JSON.parse(readFileSync(join(m.folder, 'machine.json'), 'utf8')) as {
        disks: { top: string }[];
        snapshots: { layers: string[]; stateFile: string | null; thumbnail?: string }[];
      };
      const named = manifest.snapshots.flatMap((x) => (x.thumbnail === undefined ? [] : [x.thumbnail]));
      for (const t of named) assert.ok(existsSync(join(m.folder, t)), `step ${n}: ${t} is named but missing`);
      const known = new Set(['machine.json', ...manifest.disks.map((x) => x.top), ...manifest.snapshots.flatMap((x) => [...x.layers, ...(x.stateFile === null ? [] : [x.stateFile])]), ...named]);
      const leftovers = readdirSync(m.folder).filter((f) => !known.has(f) && !RUNTIME_FILE_NAMES.includes(f) && !f.endsWith('.lock'));
      assert.deepEqual(leftovers, [], `step ${n}: leftovers`);
      outcomes.push(`${n}:${d.snapshots.filter((s) => s.name === 'live').map((s) => (s.thumbnail ? 'T' : '-')).join('')}`);
    }
    assert.ok(completed, `did not complete within 30 steps: ${outcomes.join(' ')}`);
    if (process.env['VMSNAP_TRACE_THUMBS']) console.log(outcomes.join(' '));
    const lives = (await lib.show('guest')).snapshots.filter((s) => s.name === 'live');
    expectScreenThumbnail(lives[lives.length - 1]!.thumbnail, 'the completed snapshot');
    await lib.stopMachine('guest', { force: true });
  });
});

describe('machine library: thumbnails of snapshots taken while off, killed at every step (no QEMU)', function () {
  this.timeout(120000);
  const scratch = scratchDir('vmsnap-thumbs-off-');
  after(() => scratch.cleanup());

  /** Every thumbnail the manifest names exists; no thumbnail file is left that none names. */
  function expectPicturesConsistent(folder: string, what: string): string[] {
    const manifest = JSON.parse(readFileSync(join(folder, 'machine.json'), 'utf8')) as { snapshots: { thumbnail?: string }[] };
    const named = manifest.snapshots.flatMap((x) => (x.thumbnail === undefined ? [] : [x.thumbnail]));
    for (const t of named) assert.ok(existsSync(join(folder, t)), `${what}: ${t} is named but missing`);
    const files = readdirSync(folder).filter((f) => f.startsWith('thumb-') || (f.startsWith('.') && f.includes('thumb')));
    assert.deepEqual(files.filter((f) => !named.includes(f)), [], `${what}: orphan pictures`);
    return named;
  }

  for (const op of ['take', 'revert-save', 'delete-leaf', 'delete-children'] as const) {
    it(`${op}: a kill at any step leaves every named picture in place and no orphan`, async () => {
      const child = scratch.path('crash-child.js');
      buildSync({ entryPoints: [join(__dirname, 'crash-child.ts')], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: child, logLevel: 'warning' });
      const template = scratch.path(`template-${op}`);
      const lib = await Library.open(template);
      const vm = await lib.createMachine('vm', { diskSize: 8 * 1024 * 1024 });
      // The last screen a power-off left: snapshots taken while off copy it.
      writeFileSync(join(vm.folder, RUNTIME_FILES.lastScreen), encodePng({ width: 4, height: 3, data: new Uint8Array(36).fill(200) }));
      for (const name of ['A', 'B', 'C']) await lib.takeSnapshot('vm', name);
      await lib.revert('vm', 'B', { discardCurrent: true });
      assert.equal(expectPicturesConsistent(vm.folder, 'the template').length, 3, 'each snapshot taken while off has its picture');
      let completed = false;
      for (let n = 1; n <= 40 && !completed; n++) {
        const work = scratch.path(`work-${op}`);
        spawnSync('rm', ['-rf', work]);
        spawnSync('cp', ['-a', template, work]);
        const r = spawnSync(process.execPath, [child, work, op], { encoding: 'utf8', env: { ...process.env, VMSNAP_CRASH_AFTER_STEP: String(n) } });
        completed = r.status === 0;
        if (!completed) assert.equal(r.signal, 'SIGKILL', `step ${n}: failed instead of being killed: ${r.stderr}`);
        const reopened = await Library.open(work);
        const folder = (await reopened.show('vm')).folder;
        expectPicturesConsistent(folder, `${op}, step ${n}`);
      }
      assert.ok(completed, `${op} did not complete within 40 steps`);
    });
  }
});

describe('machine manifest and delete planner: snapshot thumbnails (pure)', () => {
  const base = {
    format: 'vmsnap-machine',
    version: 1,
    revision: 3,
    id: '0f0e0d0c-0b0a-4000-8000-000000000001',
    name: 'pics',
    macAddress: '52:54:00:aa:bb:cc',
    cpus: 1,
    memoryMiB: 64,
    powerState: 'off',
    createdAt: '2024-05-01T00:00:00.000Z',
    note: '',
    disks: [{ virtualSize: 1048576, top: 'disk0-b.qcow2' }],
    snapshots: [{ id: 's1', name: 'S', description: '', parentId: null, createdAt: '2024-05-01T00:00:00.000Z', takenWhileRunning: true, layers: ['disk0-a.qcow2'] }],
    current: 's1',
    clonedFrom: null,
  };
  const withThumb = (thumbnail: unknown): unknown => ({ ...base, snapshots: [{ ...base.snapshots[0], thumbnail }] });

  it('reads a thumbnail name, and manifests without one; refuses a name outside the folder or one used twice', () => {
    assert.equal(validateManifest(base, 'machine.json').snapshots[0]!.thumbnail, undefined);
    assert.equal(validateManifest(withThumb('thumb-s1.png'), 'machine.json').snapshots[0]!.thumbnail, 'thumb-s1.png');
    for (const bad of ['../thumb.png', '/etc/passwd', 'a/b.png', '', 7, null]) {
      assert.throws(() => validateManifest(withThumb(bad), 'machine.json'), /snapshots\[0\]\.thumbnail/, String(bad));
    }
    assert.throws(() => validateManifest(withThumb('disk0-a.qcow2'), 'machine.json'), /second time/);
  });

  it('deleting a snapshot, or a subtree, makes their thumbnails obsolete with their state files', () => {
    const s = (id: string, parentId: string | null, extra: Partial<SnapshotRecord>): SnapshotRecord => ({
      id, name: id, description: '', parentId, createdAt: '2024-01-01T00:00:00.000Z', takenWhileRunning: true, layers: [`l${id}`], stateFile: null, vm: null, ...extra,
    });
    const m = validateManifest(base, 'machine.json');
    const manifest = { ...m, snapshots: [s('a', null, { thumbnail: 'thumb-a.png' }), s('b', 'a', { stateFile: 'state-b.state', thumbnail: 'thumb-b.png' }), s('c', 'a', {})], current: 'a' };
    const plan = (id: string, children: boolean): string[] => {
      const target = manifest.snapshots.find((x) => x.id === id)!;
      const need = measurementsNeeded(manifest, target, children);
      return planSnapshotDeletion({
        manifest, target, children, linkedClones: [],
        bytes: new Map(need.bytes.map((f) => [f, 1000])),
        allocated: new Map(need.allocated.map((f) => [f, 1])),
      }).obsolete;
    };
    assert.deepEqual(plan('b', false), ['lb', 'state-b.state', 'thumb-b.png']);
    assert.deepEqual([...plan('a', true)].sort(), ['la', 'lb', 'lc', 'state-b.state', 'thumb-a.png', 'thumb-b.png'].sort());
  });
});
