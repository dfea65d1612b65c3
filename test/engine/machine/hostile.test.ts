// Hostile names, hand-edited manifests, symlinks and races (issue 15): each case was found by an attack campaign.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Library } from '../../../src/engine/machine';
import { MachineLock } from '../../../src/engine/machine/lock';
import { requireTool, scratchDir } from '../../support/qemu';
import { DISK_SIZE, rejects } from './library-oracles';


function editManifest(folder: string, change: (m: Record<string, unknown>) => void): void {
  const file = join(folder, 'machine.json');
  const m = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  change(m);
  writeFileSync(file, JSON.stringify(m, null, 2));
}

describe('machine library against hostile input', function () {
  let scratch: ReturnType<typeof scratchDir>;
  let lib: Library;
  let libDir: string;

  before(() => requireTool('qemu-img'));
  beforeEach(async () => {
    scratch = scratchDir('vmsnap-hostile-');
    libDir = join(scratch.dir, 'lib');
    lib = await Library.open(libDir);
  });
  afterEach(() => scratch.cleanup());

  it('refuses a reference that names one snapshot by name and another by id, listing both', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    const a = await lib.takeSnapshot('vm', 'A');
    const b = await lib.takeSnapshot('vm', 'B');
    // A hand-edited manifest names B like A's short id (new names like that are refused, below).
    editManifest(m.folder, (raw) => {
      const snaps = raw['snapshots'] as { id: string; name: string }[];
      snaps.find((s) => s.id === b.id)!.name = a.id.slice(0, 8);
    });
    const err = await rejects(lib.deleteSnapshot('vm', a.id.slice(0, 8)), 'AMBIGUOUS', /name.*id|id.*name/);
    assert.equal(err.candidates?.length, 2);
    assert.ok(err.candidates!.some((c) => c.includes(a.id)) && err.candidates!.some((c) => c.includes(b.id)));
    // Both are still there; the whole id still names one.
    assert.equal((await lib.show('vm')).snapshots.length, 2);
    assert.equal((await lib.deleteSnapshot('vm', a.id)).deleted.length >= 1, true);
  });

  it('refuses a reference that names one machine by name and another by id prefix', async () => {
    const a = await lib.createMachine('a', { diskSize: DISK_SIZE });
    const b = await lib.createMachine('b', { diskSize: DISK_SIZE });
    editManifest(b.folder, (raw) => (raw['name'] = a.id.slice(0, 8)));
    const err = await rejects(lib.show(a.id.slice(0, 8)), 'AMBIGUOUS');
    assert.equal(err.candidates?.length, 2);
  });

  it('refuses a new snapshot or machine name that reads as an id of the same machine\'s objects', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    const a = await lib.takeSnapshot('vm', 'A');
    const short = a.id.slice(0, 8);
    await rejects(lib.takeSnapshot('vm', short), 'INVALID_NAME', /id/);
    await rejects(lib.takeSnapshot('vm', a.id.toUpperCase()), 'INVALID_NAME', /id/);
    await lib.takeSnapshot('vm', 'B');
    await rejects(lib.editSnapshot('vm', 'B', { name: short }), 'INVALID_NAME', /id/);
    await rejects(lib.createMachine(m.id.slice(0, 8), { diskSize: DISK_SIZE }), 'INVALID_NAME', /id/);
    await rejects(lib.renameMachine('vm', m.id), 'INVALID_NAME', /id/);
    await rejects(lib.clone('vm', m.id.slice(0, 8), { kind: 'linked' }), 'INVALID_NAME', /id/);
  });

  it('refuses bidirectional overrides and invisible characters in new names', async () => {
    for (const name of ['evil\u202Etxt', 'a\u2066b', 'zero\u200Bwidth', 'joiner\u200D', 'word\u2060joiner', 'bom\uFEFF']) {
      await rejects(lib.createMachine(name, { diskSize: DISK_SIZE }), 'INVALID_NAME');
    }
    await lib.createMachine('vm', { diskSize: DISK_SIZE });
    await rejects(lib.takeSnapshot('vm', 'x\u202Dy'), 'INVALID_NAME');
  });

  it('validates names loaded from a hand-edited manifest as on create', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    await lib.takeSnapshot('vm', 'A');
    for (const bad of ['esc\u001b[31mred', 'new\nline', 'nul\u0000', 'rtl\u202E']) {
      editManifest(m.folder, (raw) => (raw['name'] = bad));
      assert.equal((await lib.list()).length, 0, JSON.stringify(bad));
      const broken = await lib.broken();
      assert.equal(broken.length, 1);
      assert.match(broken[0]!.message, /"name"/);
    }
    editManifest(m.folder, (raw) => {
      raw['name'] = 'vm';
      (raw['snapshots'] as { name: string }[])[0]!.name = 'a\u001bb';
    });
    assert.match((await lib.broken())[0]?.message ?? '', /snapshots\[0\]\.name/);
  });

  it('refuses a clone whose clonedFrom.baseLayers point outside the library', async () => {
    await lib.createMachine('vm', { diskSize: DISK_SIZE });
    await lib.takeSnapshot('vm', 'A');
    const c = await lib.clone('vm', 'c', { kind: 'linked', from: 'A' });
    const outside = join(scratch.dir, 'outside.qcow2');
    writeFileSync(outside, '');
    for (const path of [outside, '../../outside.qcow2', '../x/../../outside.qcow2']) {
      editManifest(c.machine.folder, (raw) => ((raw['clonedFrom'] as { baseLayers: string[] }).baseLayers = [path]));
      assert.deepEqual((await lib.list()).map((x) => x.name), ['vm'], path);
      assert.match((await lib.broken())[0]?.message ?? '', /baseLayers/);
    }
  });

  it('never changes the target of a layer that is a symlink out of the library', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    const top = m.disks[0]!.path;
    const outside = join(scratch.dir, 'victim.qcow2');
    renameSync(top, outside);
    symlinkSync(outside, top);
    const before = statSync(outside).mode & 0o777;
    await rejects(lib.takeSnapshot('vm', 'A'), 'INVALID_MANIFEST', /symbolic link|symlink/);
    assert.equal(statSync(outside).mode & 0o777, before, 'the symlink target was chmodded');
    chmodSync(outside, 0o644);
  });

  it('shows a machine folder that is a symlink as unreadable, with the reason', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    const elsewhere = join(scratch.dir, 'elsewhere');
    renameSync(m.folder, elsewhere);
    symlinkSync(elsewhere, m.folder);
    assert.equal((await lib.list()).length, 0);
    const broken = await lib.broken();
    assert.equal(broken.length, 1);
    assert.equal(broken[0]!.folder, m.folder);
    assert.match(broken[0]!.message, /symbolic link/);
  });

  it('a reader racing a writer gets the state before or after, never a missing file', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    const top = m.disks[0]!.path;
    // A writer holds the lock and has a layer out of place for a moment.
    const lock = await MachineLock.acquire(m.folder, 'vm', 'test writer');
    renameSync(top, `${top}.moved`);
    setTimeout(() => {
      renameSync(`${top}.moved`, top);
      void lock.release();
    }, 300);
    const shown = await lib.show('vm');
    assert.equal(shown.id, m.id);
  });

  it('a clone of a machine deleted meanwhile is NOT_FOUND, not IO_ERROR', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    const lock = await MachineLock.acquire(m.folder, 'vm', 'test delete');
    setTimeout(() => {
      rmSync(m.folder, { recursive: true, force: true });
    }, 200);
    await rejects(lib.clone('vm', 'c', { kind: 'linked' }), 'NOT_FOUND');
    void lock;
  });

  it('recovery removes every temporary file a killed operation can leave in a machine folder', async () => {
    const m = await lib.createMachine('vm', { diskSize: DISK_SIZE });
    const top = m.disks[0]!.path.split('/').pop()!;
    const temps = ['.machine.json.0123456789ab.partial', '.machine.json.99.tmp', '.operation.json.0123456789ab.partial', '.operation.json.4.tmp', `.${top}.new-123-456`, `.${top}.99999.deadbeef.tmp`];
    for (const t of temps) writeFileSync(join(m.folder, t), 'x');
    // Killed after it took the lock: a lock of a dead process is left.
    writeFileSync(join(m.folder, 'machine.lock'), JSON.stringify({ pid: 2 ** 22 + 1, host: hostname(), operation: 'take', since: new Date().toISOString(), token: 't' }));
    await Library.open(libDir);
    assert.deepEqual(readdirSync(m.folder).filter((f) => f.startsWith('.')), []);
    // Without a lock too (an earlier version's leftovers).
    for (const t of temps) writeFileSync(join(m.folder, t), 'x');
    await Library.open(libDir);
    assert.deepEqual(readdirSync(m.folder).filter((f) => f.startsWith('.')), []);
    assert.ok(existsSync(join(m.folder, 'machine.json')));
  });
});
