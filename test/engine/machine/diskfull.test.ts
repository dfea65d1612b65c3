// The product promise under a full disk: every library operation that runs out of space fails with NO_SPACE
// (saying to free space), leaves the library exactly as it was, and succeeds once space is freed. The disk is
// real: a small tmpfs mounted for the suite and filled by a filler file, so ENOSPC comes from the kernel.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, statfsSync, statSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { isMachineError, Library, type MachineDetails, type MachineSummary } from '../../../src/engine/machine';
import type { OperationOptions } from '../../../src/engine/qcow2/disk';
import { qemuImg, qemuIo, qemuSame, requireTool, run, scratchDir } from '../../support/qemu';
import { checkLibrary, MiB } from './library-oracles';

/** Big enough that the up-front free-space checks (which want 64 MiB of slack) pass, so the disk fills mid-way. */
const TMPFS_MIB = 160;
const DISK = 64 * MiB;
const PAGE = 4096;

// ------------------------------------------------------------------ the full disk

function mountTmpfs(dir: string, mib: number): void {
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) {
    // Never skipped: CI runs as root precisely so that this suite runs.
    throw new Error(`The full-disk tests need a small tmpfs, but \`mount -t tmpfs -o size=${mib}m tmpfs ${dir}\` failed (${r.stderr.trim() || `status ${r.status}`}): run them as root (or with CAP_SYS_ADMIN).`);
  }
}

/** Grows or shrinks the filler `file` so that about `leave` bytes (whole pages) are free on its file system. */
function fill(file: string, leave: number): void {
  const fs = statfsSync(dirname(file));
  let want = fs.bavail * fs.bsize - leave;
  if (want < 0) {
    truncateSync(file, Math.max(0, (existsSync(file) ? statSync(file).size : 0) + want));
    return;
  }
  const chunk = Buffer.alloc(MiB, 0xee);
  const fd = openSync(file, 'a');
  try {
    while (want > 0) want -= writeSync(fd, chunk, 0, Math.min(chunk.length, want));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    closeSync(fd);
  }
}

/** Progress options that fill the disk once the operation has written its first chunk: it runs out halfway. */
function fillWhenUnderway(file: string): OperationOptions & { filled: () => boolean } {
  let filled = false;
  return {
    onProgress: (done) => {
      if (filled || done === 0) return;
      filled = true;
      fill(file, 0);
    },
    filled: () => filled,
  };
}

// ------------------------------------------------------------------ what "exactly as before" means

interface Picture {
  list: MachineSummary[];
  machines: MachineDetails[];
  /** Every file and folder of the library, with its mode (frozen layers are read-only) and size. */
  files: string[];
  /** A raw copy (outside the tmpfs) of what each state reads, by the path of the layer that shows it. */
  contents: Map<string, string>;
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p);
      out.push(`${relative(dir, p)} ${(st.mode & 0o777).toString(8)}${st.isDirectory() ? '/' : ` ${st.size}`}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

let copies = 0;

async function picture(lib: Library, refs: string): Promise<Picture> {
  const list = await lib.list();
  const machines: MachineDetails[] = [];
  const contents = new Map<string, string>();
  for (const s of list) {
    const m = await lib.show(s.id);
    machines.push(m);
    for (const layer of [m.disks[0]!.path, ...m.snapshots.map((x) => x.layers[0]!)]) {
      const copy = join(refs, `state-${++copies}.raw`);
      run('qemu-img', ['convert', '-U', '-O', 'raw', layer, copy]);
      contents.set(layer, copy);
    }
  }
  return { list, machines, files: listFiles(lib.dir), contents };
}

/** Names of what an operation may leave behind when it does not clean up. */
const DEBRIS = /machine\.lock|library\.lock|operation\.json|\.partial|\.tmp|\.vmsnap-undo|\.staging-|\.deleting-|\.stale-/;

async function expectUnchanged(lib: Library, before: Picture): Promise<void> {
  const files = listFiles(lib.dir);
  assert.deepEqual(files.filter((f) => DEBRIS.test(f)), [], 'no lock, journal or temporary file is left');
  assert.deepEqual(files, before.files, 'the library folder holds the same files, modes and sizes');
  assert.deepEqual(await lib.list(), before.list);
  for (const m of before.machines) assert.deepEqual(await lib.show(m.id), m);
  await checkLibrary(lib);
  for (const [layer, copy] of before.contents) assert.ok(qemuSame(copy, layer), `${layer} reads as before`);
}

/** The operation's error is NO_SPACE and tells the way out. */
async function expectNoSpace(op: Promise<unknown>): Promise<void> {
  try {
    await op;
  } catch (e) {
    assert.ok(isMachineError(e), `expected a MachineError NO_SPACE, got ${String(e)}`);
    assert.equal(e.code, 'NO_SPACE', e.message);
    assert.match(e.message, /disk is full|not enough free disk space/i);
    assert.match(e.message, /free some space and try again/);
    return;
  }
  assert.fail('expected the operation to fail with NO_SPACE');
}

// ------------------------------------------------------------------ the suite

describe('a full disk', function () {
  let mnt = '';
  let mounted = false;
  let refs: ReturnType<typeof scratchDir>;
  let lib: Library;
  let filler = '';
  let base: MachineDetails;

  before(function () {
    requireTool('qemu-img');
    requireTool('qemu-io');
    mnt = mkdtempSync(join(tmpdir(), 'vmsnap-full-'));
    mountTmpfs(mnt, TMPFS_MIB);
    mounted = true;
  });
  after(() => {
    if (mounted) spawnSync('umount', ['-l', mnt]);
    if (mnt !== '') rmSync(mnt, { recursive: true, force: true });
  });

  // Every test starts from a machine "Base" on the tmpfs: 20 MiB in snapshot S1, 8 MiB more in its current state.
  beforeEach(async () => {
    refs = scratchDir('vmsnap-full-refs-');
    filler = join(mnt, 'filler');
    lib = await Library.open(join(mnt, 'lib'));
    base = await lib.createMachine('Base', { diskSize: DISK });
    qemuIo(await lib.diskPath(base.id), ['write -P 0x5a 0 20M']);
    await lib.takeSnapshot(base.id, 'S1');
    qemuIo(await lib.diskPath(base.id), ['write -P 0x11 24M 8M']);
    base = await lib.show(base.id);
  });
  afterEach(() => {
    rmSync(join(mnt, 'lib'), { recursive: true, force: true });
    rmSync(filler, { force: true });
    refs.cleanup();
  });

  /**
   * For operations that need only a few pages (new empty layers, journal, manifest): runs `op` with 0, 1, 2, ...
   * pages free, so the disk fills at each of its steps in turn; every failure must change nothing. Ends with the
   * first success (the filler shrunk, i.e. space freed), which shows that the space was all it lacked.
   */
  async function sweep<T>(op: () => Promise<T>): Promise<T> {
    const before = await picture(lib, refs.dir);
    // Page by page while the small records (lock, journal, manifest) are written, then in steps of 4 pages.
    for (let leave = 0; leave < 512 * PAGE; leave += leave < 8 * PAGE ? PAGE : 4 * PAGE) {
      fill(filler, leave);
      let result: T;
      try {
        result = await op();
      } catch (e) {
        if (!isMachineError(e) || e.code !== 'NO_SPACE') throw new Error(`with ${leave} bytes free: ${String(e)}`, { cause: e });
        await expectNoSpace(Promise.reject(e));
        await expectUnchanged(lib, before);
        continue;
      }
      assert.ok(leave > 0, 'the operation failed at least once for lack of space');
      rmSync(filler);
      return result;
    }
    assert.fail('the operation still failed with 2 MiB free');
  }

  /**
   * For operations that copy data: runs `op` with the disk filling up once it is underway; it must fail with
   * NO_SPACE and change nothing. Then, with the space back, it runs again and its result is returned.
   */
  async function fillsUpUnderway<T>(what: string, op: (options: OperationOptions) => Promise<T>): Promise<{ before: Picture; result: T }> {
    const before = await picture(lib, refs.dir);
    const progress = fillWhenUnderway(filler);
    await expectNoSpace(op(progress));
    assert.ok(progress.filled(), `the disk filled up during the ${what}`);
    await expectUnchanged(lib, before);
    rmSync(filler);
    return { before, result: await op({}) };
  }

  it('taking a snapshot', async () => {
    const s = await sweep(() => lib.takeSnapshot(base.id, 'S2'));
    const m = await lib.show(base.id);
    assert.equal(m.current, s.id);
    assert.deepEqual(m.snapshots.map((x) => x.name), ['S1', 'S2']);
    await checkLibrary(lib);
  });

  it('reverting to a snapshot (saving the current state)', async () => {
    const r = await sweep(() => lib.revert(base.id, 'S1', { saveCurrentAs: 'Before revert' }));
    const m = await lib.show(base.id);
    assert.equal(m.current, base.snapshots[0]!.id);
    assert.equal(r.saved?.name, 'Before revert');
    assert.ok(qemuSame(m.disks[0]!.path, base.snapshots[0]!.layers[0]!));
    await checkLibrary(lib);
  });

  it('a linked clone of the current state (which also takes a snapshot of the source)', async () => {
    const r = await sweep(() => lib.clone(base.id, 'Linked', { kind: 'linked' }));
    assert.notEqual(r.takenSnapshot, null);
    assert.ok(qemuSame(r.machine.disks[0]!.path, base.disks[0]!.path));
    await checkLibrary(lib);
  });

  it('a full clone that runs out of space while copying', async () => {
    const before = await picture(lib, refs.dir);
    fill(filler, 8 * MiB); // the clone copies 28 MiB
    await expectNoSpace(lib.clone(base.id, 'Full', { kind: 'full' }));
    await expectUnchanged(lib, before);
    rmSync(filler);
    const r = await lib.clone(base.id, 'Full', { kind: 'full' });
    assert.ok(qemuSame(r.machine.disks[0]!.path, before.contents.get(base.disks[0]!.path)!));
    await checkLibrary(lib);
  });

  it('importing an image that does not fit', async () => {
    // The image lies outside the full disk: only the library's copy runs out of space.
    const image = join(refs.dir, 'image.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', image, String(DISK));
    qemuIo(image, ['write -P 0x77 0 20M']);
    const before = await picture(lib, refs.dir);
    fill(filler, 8 * MiB);
    await expectNoSpace(lib.importMachine('Imported', image));
    await expectUnchanged(lib, before);
    rmSync(filler);
    const r = await lib.importMachine('Imported', image);
    assert.ok(qemuSame(r.machine.disks[0]!.path, image));
    await checkLibrary(lib);
  });

  it('deleting a snapshot whose child is committed into its layer', async () => {
    // The current state (8 MiB where S1 has nothing) is smaller than S1: it is committed into S1's layer.
    const { before, result: r } = await fillsUpUnderway('merge', (options) => lib.deleteSnapshot(base.id, 'S1', options));
    assert.equal(r.merges[0]?.strategy, 'commit');
    const m = await lib.show(base.id);
    assert.deepEqual(m.snapshots, []);
    assert.ok(qemuSame(m.disks[0]!.path, before.contents.get(base.disks[0]!.path)!));
    await checkLibrary(lib);
  });

  it('deleting a snapshot whose data is copied into its bigger child', async () => {
    // S2 holds 12 MiB; the current state on it 24 MiB more: S2's data is copied up into the current state.
    qemuIo(await lib.diskPath(base.id), ['write -P 0x22 32M 4M']);
    await lib.takeSnapshot(base.id, 'S2');
    qemuIo(await lib.diskPath(base.id), ['write -P 0x33 36M 24M']);
    base = await lib.show(base.id);
    const { before, result: r } = await fillsUpUnderway('merge', (options) => lib.deleteSnapshot(base.id, 'S2', options));
    assert.equal(r.merges[0]?.strategy, 'rebase');
    const m = await lib.show(base.id);
    assert.deepEqual(m.snapshots.map((s) => s.name), ['S1']);
    assert.ok(qemuSame(m.disks[0]!.path, before.contents.get(base.disks[0]!.path)!));
    await checkLibrary(lib);
  });

  it('promoting a linked clone', async () => {
    // The clone reads S1's 20 MiB through its backing file: promoting copies them into the clone's own layer.
    const clone = (await lib.clone(base.id, 'Linked', { kind: 'linked', from: 'S1' })).machine;
    qemuIo(await lib.diskPath(clone.id), ['write -P 0x44 40M 2M']);
    const { before, result: m } = await fillsUpUnderway('copy', (options) => lib.promote(clone.id, options));
    assert.equal(m.clonedFrom?.kind, 'full');
    assert.ok(qemuSame(m.disks[0]!.path, before.contents.get(clone.disks[0]!.path)!));
    await checkLibrary(lib);
  });
});
