// `vmsnap vm|snapshot|clone|compare|diff` end to end: the built binary on a temporary library, data written and
// checked with qemu-io, every image checked with qemu-img. One story, in order: each step builds on the last.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { CompareTableRow as CompareRow } from '../../src/cli/compare';
import type { MachineDetails as Machine, SnapshotInfo as Snapshot, SnapshotTreeNode as TreeNode, StateDiff } from '../../src/engine/machine';
import { qemuInfo, qemuSame, requireTool, run, scratchDir } from '../support/qemu';
import { buildCli, interruptWhen, isOneSentence, vmsnap, vmsnapJson, type Result } from './vmsnap';

const MiB = 1024 * 1024;
const KiB = 1024;

/** Checks what a qcow2 file (with its chain) reads: [pattern byte, offset, length] per range; 0 for zeros. */
function expectReads(file: string, ranges: [number, number, number][]): void {
  const args = ['-r', '-U', '-f', 'qcow2'];
  for (const [pattern, offset, length] of ranges) args.push('-c', `read -P ${pattern} ${offset} ${length}`);
  const out = run('qemu-io', [...args, file]);
  assert.doesNotMatch(out, /Pattern verification failed|error|failed/i, `${file}: ${out}`);
  assert.equal(out.match(/^read \d+\/\d+ bytes/gm)?.length, ranges.length, out);
}

function write(file: string, pattern: number, offset: number, length: number): void {
  const out = run('qemu-io', ['-f', 'qcow2', '-c', `write -P ${pattern} ${offset} ${length}`, file]);
  assert.match(out, /^wrote /m, out);
}

/** Every qcow2 file under `dir`. */
function layersUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...layersUnder(p));
    else if (entry.name.endsWith('.qcow2')) out.push(p);
  }
  return out;
}

/** `qemu-img check` on every layer of the library, in parallel (each tool start costs more than the check). */
async function checkAll(dir: string): Promise<void> {
  const files = layersUnder(dir);
  assert.ok(files.length > 0);
  const results = await Promise.all(
    files.map(
      (f) =>
        new Promise<{ file: string; status: number; out: string }>((resolve) => {
          const child = spawn('qemu-img', ['check', '-U', f]);
          let out = '';
          child.stdout.on('data', (d: Buffer) => (out += d.toString()));
          child.stderr.on('data', (d: Buffer) => (out += d.toString()));
          child.on('close', (status) => resolve({ file: f, status: status ?? -1, out }));
        }),
    ),
  );
  for (const r of results) assert.equal(r.status, 0, `qemu-img check ${r.file}: ${r.out}`);
}

describe('vmsnap vm, snapshot, clone, compare, diff (end to end)', function () {
  const scratch = scratchDir('vmsnap-cli-machine-');
  const lib = scratch.path('library');
  const v = (...args: string[]): Result => vmsnap(['--library', lib, ...args]);
  const vj = <T>(...args: string[]): { status: number; doc: T; stderr: string } => vmsnapJson<T>(['--library', lib, ...args]);
  const show = (vm: string): Machine => {
    const r = vj<Machine>('vm', 'show', vm);
    assert.equal(r.status, 0, r.stderr);
    return r.doc;
  };
  const diskOf = (vm: string): string => {
    const r = v('vm', 'disk', vm);
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trimEnd();
  };
  /** A refusal: exit 1, one readable line on stderr, nothing on stdout. */
  const refused = (r: Result, message: RegExp): void => {
    assert.equal(r.status, 1, `${r.stdout}${r.stderr}`);
    assert.ok(isOneSentence(r.stderr), r.stderr);
    assert.match(r.stderr.trimEnd(), message);
    assert.equal(r.stdout, '');
  };
  const wrongUsage = (r: Result, message: RegExp): void => {
    assert.equal(r.status, 2, `${r.stdout}${r.stderr}`);
    assert.ok(isOneSentence(r.stderr), r.stderr);
    assert.match(r.stderr.trimEnd(), message);
  };

  // Ids learnt along the way.
  let dev: Machine;
  let baseId = '';
  let updatedId = '';
  /** Disk paths of the clones (they change only when a clone's own snapshots do, and these clones take none). */
  const clonePath: Record<string, string> = {};

  before(async function () {
    requireTool('qemu-img');
    requireTool('qemu-io');
    await buildCli();
  });
  after(() => scratch.cleanup());

  it('lists the machine verbs in the help and refuses wrong usage with exit 2', () => {
    const top = vmsnap(['help']);
    assert.equal(top.status, 0);
    for (const c of ['vm create', 'vm import', 'vm rename', 'vm delete', 'vm list', 'vm show', 'vm disk', 'vm promote', 'snapshot take', 'snapshot list', 'snapshot show', 'snapshot revert', 'snapshot delete', 'snapshot edit', 'clone', 'compare', 'diff', 'image create']) {
      assert.match(top.stdout, new RegExp(`^  ${c}\\s`, 'm'), c);
    }
    assert.match(vmsnap(['clone', '--help']).stdout, /^Usage: vmsnap clone VM NEW_NAME \(--linked \| --full\) \[--from SNAP\] \[--dir DIR\]$/m);
    assert.match(vmsnap(['snapshot', 'revert', '--help']).stdout, /^Usage: vmsnap snapshot revert VM SNAP \(--discard-current \| --save-current NAME\)$/m);
    wrongUsage(v('vm', 'create'), /"vmsnap vm create" is missing its NAME argument/);
    wrongUsage(v('clone', 'a', 'b'), /Say which kind of clone to make: give one of --linked or --full\./);
    wrongUsage(v('clone', 'a', 'b', '--linked', '--full'), /Give only one of --linked or --full\./);
    wrongUsage(v('vm', 'create', 'x', '--disk-size', '12X'), /--disk-size "12X" is not a size/);
    wrongUsage(v('vm', 'create', 'x', '--cpus', 'two'), /--cpus "two" is not a whole number/);
    wrongUsage(v('snapshot', 'edit', 'x', 'y'), /Nothing to change: give --name NEW, --description TEXT, or both\./);
  });

  it('creates a machine: --json shape, a fresh UUID and MAC, its disk path, listed by vm list', () => {
    const r = v('vm', 'create', 'dev', '--disk-size', '64M', '--cpus', '1', '--memory', '512');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Created machine "dev" \(id [0-9a-f]{8}, MAC [0-9a-f:]{17}\): 1 CPUs, 512 MiB, a 64 MiB disk\.\nDisk 0: \/.*\.qcow2\n$/);
    dev = show('dev');
    assert.match(dev.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.match(dev.macAddress, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    assert.equal(dev.powerState, 'off');
    assert.deepEqual(dev.snapshots, []);
    assert.equal(dev.current, null);
    assert.equal(dev.clonedFrom, null);
    assert.equal(dev.disks.length, 1);
    assert.equal(dev.disks[0]!.virtualSize, 64 * MiB);
    assert.equal(diskOf('dev'), dev.disks[0]!.path);
    assert.equal(qemuInfo(dev.disks[0]!.path)['virtual-size'], 64 * MiB);

    const list = vj<{ id: string; name: string }[]>('vm', 'list');
    assert.deepEqual(list.doc.map((m) => [m.id, m.name]), [[dev.id, 'dev']]);
    assert.match(v('vm', 'list').stdout, /^NAME +ID +POWER +SNAPSHOTS +CLONE OF +MAC +CREATED\ndev +[0-9a-f]{8} +off +0 +- /);
    // VMSNAP_LIBRARY stands in for --library.
    const viaEnv = vmsnap(['vm', 'list', '--json'], { env: { VMSNAP_LIBRARY: lib } });
    assert.equal(viaEnv.status, 0, viaEnv.stderr);
    assert.deepEqual((JSON.parse(viaEnv.stdout) as { id: string }[]).map((m) => m.id), [dev.id]);
  });

  it('takes snapshots of data written through the vm disk path, and draws the tree', () => {
    write(diskOf('dev'), 0x11, 0, MiB);
    const base = vj<Snapshot>('snapshot', 'take', 'dev', 'Base', '--description', 'fresh install');
    assert.equal(base.status, 0, base.stderr);
    baseId = base.doc.id;
    assert.deepEqual([base.doc.name, base.doc.description, base.doc.parentId], ['Base', 'fresh install', null]);
    assert.ok(base.doc.sizeBytes >= MiB, `the snapshot holds its megabyte: ${base.doc.sizeBytes}`);
    assert.ok(!Number.isNaN(Date.parse(base.doc.createdAt)) && base.doc.createdAt.endsWith('Z'));

    write(diskOf('dev'), 0x22, MiB, MiB);
    const updated = v('snapshot', 'take', 'dev', 'Updated');
    assert.equal(updated.status, 0, updated.stderr);
    assert.match(updated.stdout, /^Took snapshot "Updated" \(id [0-9a-f]{8}\) of "dev"\.\n$/);
    // One snapshot's details; a machine that never ran has no screen: no thumbnail.
    const shown = v('snapshot', 'show', 'dev', 'Base');
    assert.equal(shown.status, 0, shown.stderr);
    assert.match(shown.stdout, /^Snapshot: {4}Base\nId: {10}[0-9a-f-]{36}\nDescription: fresh install\n[\s\S]*^Thumbnail: {3}none$/m);
    assert.equal(vj<Snapshot & { thumbnail: string | null }>('snapshot', 'show', 'dev', baseId).doc.thumbnail, null);
    write(diskOf('dev'), 0x33, 2 * MiB, 512 * KiB);

    dev = show('dev');
    updatedId = dev.snapshots[1]!.id;
    assert.deepEqual(dev.snapshots.map((s) => [s.name, s.parentId]), [['Base', null], ['Updated', baseId]]);
    assert.equal(dev.current, updatedId);
    assert.equal(dev.currentChangedBytes, 512 * KiB);
    // Each state reads as it was: the snapshots through their frozen layers, the current state through its top.
    expectReads(dev.disks[0]!.path, [[0x11, 0, MiB], [0x22, MiB, MiB], [0x33, 2 * MiB, 512 * KiB], [0, 3 * MiB, MiB]]);

    const text = v('snapshot', 'list', 'dev');
    assert.equal(text.status, 0, text.stderr);
    const lines = text.stdout.trimEnd().split('\n');
    assert.equal(lines[0], 'Snapshots of "dev":');
    assert.match(lines[1]!, /^ {2}Base {2}\([0-9a-f]{8}, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\)$/);
    assert.match(lines[2]!, /Updated \*/);
    assert.match(lines[3]!, /You are here/);
    assert.match(lines[4]!, /^The current state changed 512 KiB since its snapshot\.$/);

    const tree = vj<{ machineId: string; roots: TreeNode[] }>('snapshot', 'list', 'dev');
    assert.equal(tree.doc.machineId, dev.id);
    const root = tree.doc.roots[0]!;
    assert.deepEqual([root.kind, root.id, root.children.length], ['snapshot', baseId, 1]);
    const child = root.children[0]!;
    assert.deepEqual([child.id, child.isCurrentParent, child.children.map((c) => c.kind)], [updatedId, true, ['current']]);
  });

  it('diffs two states from the allocation maps, current allowed, with ranges', () => {
    const snaps = vj<StateDiff>('diff', 'dev', 'Base', 'Updated');
    assert.equal(snaps.status, 0, snaps.stderr);
    assert.equal(snaps.doc.bytes, MiB);
    assert.deepEqual(snaps.doc.disks[0]!.ranges, [{ offset: MiB, length: MiB }]);
    assert.deepEqual([snaps.doc.a.snapshotId, snaps.doc.b.snapshotId], [baseId, updatedId]);
    const toCurrent = vj<StateDiff>('diff', 'dev', 'Updated', 'current');
    assert.deepEqual(toCurrent.doc.disks[0]!.ranges, [{ offset: 2 * MiB, length: 512 * KiB }]);
    assert.equal(toCurrent.doc.b.snapshotId, null);
    const text = v('diff', 'dev', 'Base', 'current');
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /^1\.5 MiB \(1572864 bytes\) differ between snapshot "Base" and the current state of "dev"\.$/m);
    assert.match(text.stdout, /^OFFSET +AT +LENGTH +END$/m);
    assert.match(text.stdout, /^0x100000 +1 MiB +1\.5 MiB +2\.5 MiB$/m);
    refused(v('diff', 'dev', 'Base', 'Nope'), /Machine "dev" has no snapshot "Nope"/);
  });

  it('refuses to revert without --discard-current or --save-current, then reverts either way', () => {
    const bare = v('snapshot', 'revert', 'dev', 'Base');
    wrongUsage(bare, /^Reverting throws away the current state: give one of --discard-current or --save-current NAME\./);
    assert.equal(show('dev').current, updatedId, 'nothing changed');

    const saved = vj<{ snapshot: Snapshot; saved: Snapshot | null; discardedBytes: number }>('snapshot', 'revert', 'dev', 'Base', '--save-current', 'Work');
    assert.equal(saved.status, 0, saved.stderr);
    assert.equal(saved.doc.snapshot.id, baseId);
    assert.equal(saved.doc.saved?.name, 'Work');
    dev = show('dev');
    assert.equal(dev.current, baseId);
    const work = dev.snapshots.find((s) => s.name === 'Work')!;
    assert.equal(work.parentId, updatedId);
    expectReads(dev.disks[0]!.path, [[0x11, 0, MiB], [0, MiB, 3 * MiB]]);
    // The saved state still reads as the current state did.
    expectReads(work.layers[0]!, [[0x11, 0, MiB], [0x22, MiB, MiB], [0x33, 2 * MiB, 512 * KiB]]);

    write(dev.disks[0]!.path, 0x44, 4 * MiB, MiB);
    const discard = v('snapshot', 'revert', 'dev', 'Updated', '--discard-current');
    assert.equal(discard.status, 0, discard.stderr);
    assert.match(discard.stdout, /^Reverted "dev" to snapshot "Updated" \(id [0-9a-f]{8}\)\. 1 MiB of unsaved changes were discarded\.\n$/);
    expectReads(diskOf('dev'), [[0x11, 0, MiB], [0x22, MiB, MiB], [0, 2 * MiB, 4 * MiB]]);
  });

  it('edits a snapshot\'s name and description', () => {
    const r = vj<Snapshot>('snapshot', 'edit', 'dev', updatedId.slice(0, 8), '--name', 'Updated v2', '--description', 'apt upgrade');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual([r.doc.id, r.doc.name, r.doc.description], [updatedId, 'Updated v2', 'apt upgrade']);
    const s = show('dev').snapshots.find((x) => x.id === updatedId)!;
    assert.deepEqual([s.name, s.description], ['Updated v2', 'apt upgrade']);
  });

  it('names the candidates of an ambiguous snapshot name, with their tree paths, and deletes a leaf by id', async () => {
    assert.equal(v('snapshot', 'take', 'dev', 'Base').status, 0);
    dev = show('dev');
    const dup = dev.snapshots.find((s) => s.name === 'Base' && s.id !== baseId)!;
    refused(
      v('snapshot', 'revert', 'dev', 'Base', '--discard-current'),
      new RegExp(`2 snapshots of "dev" are named "Base".*Candidates: Base \\(id ${baseId}\\); Base > Updated v2 > Base \\(id ${dup.id}\\)\\.$`),
    );
    refused(v('vm', 'show', 'nope'), /^There is no machine "nope" in the library: list them with `vmsnap vm list`\.$/);

    // The duplicate is the current state's parent: deleting it merges its (empty) layer, the current state keeps its content.
    write(dev.disks[0]!.path, 0x66, 5 * MiB, 256 * KiB);
    const del = v('snapshot', 'delete', 'dev', dup.id.slice(0, 8));
    assert.equal(del.status, 0, del.stderr);
    assert.match(del.stdout, /^Deleted snapshot "Base" of "dev"/);
    dev = show('dev');
    assert.deepEqual(dev.snapshots.map((s) => s.name), ['Base', 'Updated v2', 'Work']);
    assert.equal(dev.current, updatedId);
    expectReads(dev.disks[0]!.path, [[0x11, 0, MiB], [0x22, MiB, MiB], [0, 2 * MiB, 3 * MiB], [0x66, 5 * MiB, 256 * KiB]]);
    await checkAll(lib);
  });

  it('makes linked and full clones, from the current state and from snapshots, with new identities', async () => {
    const lt = vj<{ machine: Machine; takenSnapshot: Snapshot | null }>('clone', 'dev', 'lt', '--linked', '--from', 'Updated v2');
    assert.equal(lt.status, 0, lt.stderr);
    assert.equal(lt.doc.takenSnapshot, null);
    assert.deepEqual(lt.doc.machine.clonedFrom, { machineId: dev.id, snapshotId: updatedId, kind: 'linked' });
    const ltInfo = qemuInfo(lt.doc.machine.disks[0]!.path);
    assert.ok(ltInfo['backing-filename']?.startsWith('../'), `relative backing: ${ltInfo['backing-filename']}`);

    const lc = v('clone', 'dev', 'lc', '--linked');
    assert.equal(lc.status, 0, lc.stderr);
    assert.match(lc.stdout, /^Took snapshot ".*" \(id [0-9a-f]{8}\) of "dev" first/);
    assert.match(lc.stdout, /^Made linked clone "lc" \(id [0-9a-f]{8}, MAC [0-9a-f:]{17}\) of "dev" from snapshot /m);

    const fc = vj<{ machine: Machine; takenSnapshot: Snapshot | null }>('clone', 'dev', 'fc', '--full');
    assert.equal(fc.status, 0, fc.stderr);
    assert.equal(fc.doc.takenSnapshot, null);
    assert.equal(fc.doc.machine.clonedFrom?.kind, 'full');
    const fsDir = scratch.path('elsewhere');
    const fs = vj<{ machine: Machine }>('clone', 'dev', 'fs', '--full', '--from', baseId, '--dir', fsDir);
    assert.equal(fs.status, 0, fs.stderr);
    assert.deepEqual(fs.doc.machine.clonedFrom, { machineId: dev.id, snapshotId: baseId, kind: 'full' });
    assert.equal(dirname(fs.doc.machine.folder), fsDir);

    dev = show('dev');
    const clones = ['lt', 'lc', 'fc', 'fs'].map(show);
    for (const c of clones) clonePath[c.name] = c.disks[0]!.path;
    const devPath = dev.disks[0]!.path;
    const ids = new Set([dev.id, ...clones.map((c) => c.id)]);
    const macs = new Set([dev.macAddress, ...clones.map((c) => c.macAddress)]);
    assert.equal(ids.size, 5, 'every clone has a new UUID');
    assert.equal(macs.size, 5, 'every clone has a new MAC');
    for (const c of [fc.doc.machine, fs.doc.machine]) assert.equal(qemuInfo(c.disks[0]!.path)['backing-filename'], undefined, 'full clones stand alone');

    // Contents: each clone reads as the state it was made from.
    const current = [[0x11, 0, MiB], [0x22, MiB, MiB], [0, 2 * MiB, 3 * MiB], [0x66, 5 * MiB, 256 * KiB]] as [number, number, number][];
    expectReads(clonePath['lt']!, [[0x11, 0, MiB], [0x22, MiB, MiB], [0, 2 * MiB, 4 * MiB]]);
    expectReads(clonePath['lc']!, current);
    expectReads(clonePath['fc']!, current);
    expectReads(clonePath['fs']!, [[0x11, 0, MiB], [0, MiB, 5 * MiB]]);
    assert.ok(qemuSame(clonePath['fc']!, devPath));
    // The source is untouched by clones, and writing into a clone changes only the clone.
    expectReads(devPath, current);
    write(clonePath['lt']!, 0x55, 0, 64 * KiB);
    expectReads(clonePath['lt']!, [[0x55, 0, 64 * KiB], [0x11, 64 * KiB, MiB - 64 * KiB]]);
    expectReads(devPath, current);
    await checkAll(lib);
    await checkAll(fsDir);
  });

  // A really running machine's clone is refused in machine-runtime.test.ts; the manifest alone is only the last known state.
  it('reads a manifest that says running while no QEMU runs as off', () => {
    const manifest = join(dev.folder, 'machine.json');
    const original = readFileSync(manifest, 'utf8');
    writeFileSync(manifest, original.replace('"powerState": "off"', '"powerState": "running"'));
    try {
      assert.equal(show('dev').powerState, 'off');
      assert.equal(vj<{ name: string; powerState: string }[]>('vm', 'list').doc.find((m) => m.name === 'dev')?.powerState, 'off');
    } finally {
      writeFileSync(manifest, original);
    }
  });

  it('refuses to delete a snapshot a linked clone depends on, naming the clone', () => {
    refused(v('snapshot', 'delete', 'dev', 'Updated v2'), /^Snapshot "Updated v2" is locked: the linked clones? .*"lt".* depends? on it/);
    refused(v('snapshot', 'delete', 'dev', 'Base', '--children'), /^Snapshot "Base" is locked: .*"lt"/);
    const tree = v('snapshot', 'list', 'dev').stdout;
    assert.match(tree, /Updated v2 {2}\([0-9a-f]{8}, [^)]*\) {2}\[locked by 1 linked clone\]/);
    assert.equal(show('dev').snapshots.length, 4);
  });

  it('compares the family as an aligned table and as JSON rows', () => {
    const rows = vj<CompareRow[]>('compare', 'lt');
    assert.equal(rows.status, 0, rows.stderr);
    const byName = new Map(rows.doc.map((r) => [r.name, r]));
    assert.deepEqual(rows.doc[0] && [rows.doc[0].kind, rows.doc[0].name, rows.doc[0].uuid], ['machine', 'dev', dev.id], 'starts at the original');
    assert.deepEqual(
      ['dev', 'Base', 'Updated v2', 'Work', 'lt', 'lc', 'fc', 'fs'].map((n) => byName.get(n)?.kind),
      ['machine', 'snapshot', 'snapshot', 'snapshot', 'linked clone', 'linked clone', 'full clone', 'full clone'],
    );
    const lt = byName.get('lt')!;
    assert.match(lt.dependsOn, /Updated v2.*dev/);
    assert.equal(lt.canRunAlongsideSource, true);
    assert.equal(byName.get('Base')!.canRunAlongsideSource, false);
    assert.equal(byName.get('Base')!.description, 'fresh install');
    assert.equal(byName.get('fc')!.dependsOn, 'nothing');
    assert.ok(byName.get('Base')!.sizeBytes >= MiB);

    const text = v('compare', 'dev');
    assert.equal(text.status, 0, text.stderr);
    const lines = text.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^KIND +NAME +CREATED +SIZE ON DISK +DEPENDS ON +RUNS ALONGSIDE SOURCE +UUID +MAC +DESCRIPTION$/);
    assert.equal(lines.length, 1 + rows.doc.length);
    // Aligned: every row's UUID starts in the header's UUID column.
    const col = lines[0]!.indexOf('UUID');
    for (const line of lines.slice(1)) assert.match(line.slice(col), /^[0-9a-f]{8}-/, line);
    assert.match(text.stdout, /^snapshot +Base +.* +fresh install$/m);
  });

  it('promotes a linked clone to a full one, which unlocks the source snapshot for it', async () => {
    const r = vj<Machine>('vm', 'promote', 'lt');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.doc.clonedFrom?.kind, 'full');
    clonePath['lt'] = r.doc.disks[0]!.path;
    const chain = run('qemu-img', ['info', '-U', '--backing-chain', '--output=json', clonePath['lt']]);
    for (const layer of JSON.parse(chain) as { filename: string }[]) assert.ok(layer.filename.startsWith(r.doc.folder), `${layer.filename} is the clone's own`);
    expectReads(clonePath['lt'], [[0x55, 0, 64 * KiB], [0x11, 64 * KiB, MiB - 64 * KiB], [0x22, MiB, MiB], [0, 2 * MiB, 4 * MiB]]);
    refused(v('vm', 'promote', 'lt'), /is not a linked clone/);
    await checkAll(lib);
  });

  it('refuses to delete a machine with linked clones (naming them), deletes snapshots with merges and with --children', async () => {
    refused(v('vm', 'delete', 'dev'), /^Machine "dev" cannot be deleted: linked clones depend on it \("lc"\);.* --with-clones/);
    const gone = v('vm', 'delete', 'lc');
    assert.equal(gone.status, 0, gone.stderr);
    assert.match(gone.stdout, /^Deleted machine "lc"\.\n$/);

    // "Updated v2" has two dependants now (Work, the snapshot taken for lc): its data goes into both.
    const current = [[0x11, 0, MiB], [0x22, MiB, MiB], [0, 2 * MiB, 3 * MiB], [0x66, 5 * MiB, 256 * KiB]] as [number, number, number][];
    const del = vj<{ deleted: { name: string }[]; merges: { strategy: string; dependants: number }[] }>('snapshot', 'delete', 'dev', 'Updated v2');
    assert.equal(del.status, 0, del.stderr);
    assert.deepEqual(del.doc.deleted.map((d) => d.name), ['Updated v2']);
    dev = show('dev');
    assert.ok(!dev.snapshots.some((s) => s.name === 'Updated v2'));
    assert.ok(dev.snapshots.filter((s) => s.parentId === baseId).length >= 2, 'its children hang on Base now');
    expectReads(dev.disks[0]!.path, current);
    expectReads(dev.snapshots.find((s) => s.name === 'Work')!.layers[0]!, [[0x11, 0, MiB], [0x22, MiB, MiB], [0x33, 2 * MiB, 512 * KiB]]);
    await checkAll(lib);

    const all = v('snapshot', 'delete', 'dev', 'Base', '--children');
    assert.equal(all.status, 0, all.stderr);
    assert.match(all.stdout, /^Deleted snapshot "Base" of "dev" and \d snapshots? below it/);
    dev = show('dev');
    assert.deepEqual([dev.snapshots, dev.current], [[], null]);
    expectReads(dev.disks[0]!.path, current);
    assert.equal(qemuInfo(dev.disks[0]!.path)['backing-filename'], undefined);
    await checkAll(lib);
  });

  it('deletes a machine with its linked clones only with --with-clones; full clones stay', async () => {
    assert.equal(v('snapshot', 'take', 'dev', 'Again').status, 0);
    const lc2 = show(vj<{ machine: Machine }>('clone', 'dev', 'lc2', '--linked', '--from', 'Again').doc.machine.id);
    refused(v('vm', 'delete', 'dev'), /"lc2"/);
    const r = vj<{ deleted: { id: string; name: string }[] }>('vm', 'delete', 'dev', '--with-clones');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.doc.deleted.map((d) => d.name), ['lc2', 'dev']);
    assert.ok(!existsSync(dev.folder) && !existsSync(lc2.folder));
    assert.deepEqual(vj<{ name: string }[]>('vm', 'list').doc.map((m) => m.name).sort(), ['fc', 'fs', 'lt']);
    expectReads(clonePath['fc']!, [[0x11, 0, MiB], [0x22, MiB, MiB], [0x66, 5 * MiB, 256 * KiB]]);
    expectReads(clonePath['fs']!, [[0x11, 0, MiB]]);
    expectReads(clonePath['lt']!, [[0x55, 0, 64 * KiB], [0x22, MiB, MiB]]);
    await checkAll(lib);
  });

  it('renames a machine, and imports an image', () => {
    const r = v('vm', 'rename', 'fc', 'full copy');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(show('full copy').name, 'full copy');
    const image = scratch.path('outside.qcow2');
    run('qemu-img', ['create', '-f', 'qcow2', image, '32M']);
    run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x77 0 1M', image]);
    run('qemu-img', ['snapshot', '-c', 'installed', image]);
    const imp = vj<{ machine: Machine; internalSnapshots: { name: string }[]; convertedSnapshots: boolean }>('vm', 'import', 'imported', image);
    assert.equal(imp.status, 0, imp.stderr);
    assert.deepEqual(imp.doc.internalSnapshots.map((s) => s.name), ['installed']);
    assert.equal(imp.doc.convertedSnapshots, false);
    expectReads(diskOf('imported'), [[0x77, 0, MiB], [0, MiB, MiB]]);
  });

  it('stops a full clone on Ctrl-C: exit 130, says so, and leaves no clone behind', async () => {
    assert.equal(v('vm', 'create', 'big', '--disk-size', '512M').status, 0);
    write(diskOf('big'), 0x5a, 0, 160 * MiB);
    const before = readdirSync(lib).sort();
    const r = await interruptWhen(['--library', lib, 'clone', 'big', 'big-copy', '--full'], /Cloning big: \d+%/, { VMSNAP_PROGRESS: '1' });
    assert.ok(r.interrupted, `never saw progress: ${r.stderr}`);
    assert.equal(r.status, 130, r.stderr);
    assert.match(r.stderr, /cancelled/i);
    assert.doesNotMatch(r.stderr, /\bat .+:\d+:\d+/);
    assert.deepEqual(readdirSync(lib).sort(), before);
    assert.ok(!vj<{ name: string }[]>('vm', 'list').doc.some((m) => m.name === 'big-copy'));
    await checkAll(lib);
  });

  it('never prints a control character raw: an unreadable folder named with ESC is listed escaped', () => {
    const evil = join(lib, 'evil\u001b[31mred');
    mkdirSync(evil, { recursive: true });
    writeFileSync(join(evil, 'machine.json'), 'not json');
    try {
      const r = v('vm', 'list');
      assert.equal(r.status, 0, r.stderr);
      assert.ok(!(r.stdout + r.stderr).includes('\u001b'), 'an ESC was printed raw');
      assert.match(r.stdout + r.stderr, /evil\\u001b\[31mred/);
    } finally {
      rmSync(evil, { recursive: true });
    }
  });
});
