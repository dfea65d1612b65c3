// The checks every libvirt connection passes (local and over SSH): each operation through LibvirtSource, then
// libvirt's own view (`virsh snapshot-list --tree`, `snapshot-current`, `domstate`, `dumpxml`) as the oracle.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { LibvirtSource, REMOTE_FULL_FROM_SNAPSHOT, REVERT_EXTERNAL, RENAME_REASON } from '../../../src/engine/libvirt';
import { isSourceError, type SourceSnapshotNode } from '../../../src/engine/sources';
import { countsAfterRestart, countsSince, last, logSize, waitForCounts } from '../../support/guest-machines';
import { defineCountingDomain, SYSTEM_URI, virshOk } from '../../support/libvirt';

export interface Setup {
  /** The connection under test. */
  uri: string;
  /** The scratch folder (readable by libvirt's QEMU user) and the domain name prefix. */
  dir: string;
  prefix: string;
}

export async function rejectsWith(p: Promise<unknown>, code: string, what: string, message?: string | RegExp): Promise<string> {
  let sentence = '';
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isSourceError(e), `${what}: a SourceError, got ${String(e)}`);
    assert.equal(e.code, code, `${what}: ${e.message}`);
    if (typeof message === 'string') assert.equal(e.message, message, what);
    else if (message !== undefined) assert.match(e.message, message, what);
    sentence = e.message;
    return true;
  });
  return sentence;
}

/** `virsh snapshot-list --tree` as nested names, from its indentation: "a(b,c(d))". */
function virshTree(uri: string, domain: string): string {
  const lines = virshOk(uri, 'snapshot-list', '--domain', domain, '--tree').split('\n').filter((l) => l.trim() !== '' && l.trim() !== '|');
  const items = lines.map((l) => {
    const m = /^(\s*)(\+- )?(.*)$/.exec(l) as RegExpExecArray;
    return { depth: (m[1] ?? '').length + (m[2] === undefined ? 0 : 3), name: (m[3] ?? '').trim() };
  });
  const render = (from: number, depth: number): [string, number] => {
    const parts: string[] = [];
    let i = from;
    while (i < items.length && (items[i] as { depth: number }).depth === depth) {
      const name = (items[i] as { name: string }).name;
      i++;
      if (i < items.length && (items[i] as { depth: number }).depth > depth) {
        const [inner, next] = render(i, (items[i] as { depth: number }).depth);
        parts.push(`${name}(${inner})`);
        i = next;
      } else parts.push(name);
    }
    return [parts.join(','), i];
  };
  return items.length === 0 ? '' : render(0, (items[0] as { depth: number }).depth)[0];
}

/** Our tree in the same notation, the "You are here" node as "*". */
function ourTree(nodes: readonly SourceSnapshotNode[]): string {
  return nodes.map((n) => (n.kind === 'current' ? '*' : n.children.length === 0 ? n.id : `${n.id}(${ourTree(n.children)})`)).join(',');
}

function domstate(uri: string, domain: string): string {
  return virshOk(uri, 'domstate', '--domain', domain).trim();
}

/** Registers the checks on `setup()` (called inside the tests, after the caller's before hook). */
export function sourceChecks(setup: () => Setup): void {
  let s: Setup;
  let source: LibvirtSource;
  let uri: string;
  let a: string; // the running domain with internal snapshots
  let serialLog: string;

  before(() => {
    s = setup();
    uri = s.uri;
    source = new LibvirtSource(uri);
    a = `${s.prefix}a`;
    serialLog = defineCountingDomain(SYSTEM_URI, s.dir, a).serialLog;
  });

  it('lists the domain with its UUID, MAC, memory and cpus as dumpxml has them, and powers it on', async () => {
    const listed = (await source.listMachines()).find((m) => m.name === a);
    assert.ok(listed, 'the new domain is listed');
    assert.equal(listed.uuid, virshOk(uri, 'domuuid', a).trim());
    assert.equal(listed.powerState, 'off');
    assert.equal(listed.memoryMiB, 32);
    assert.equal(listed.cpus, 1);
    assert.match(virshOk(uri, 'dumpxml', a), new RegExp(`<mac address='${listed.macAddresses[0]}'/>`));
    assert.equal(await source.power(a, 'start'), 'running');
    assert.equal(domstate(uri, a), 'running');
    await waitForCounts(serialLog, 5);
  });

  it('takes snapshots with memory; the tree and the current snapshot are libvirt\'s', async () => {
    const live = await source.takeSnapshot(a, 'live', { description: 'counting, with memory' });
    assert.equal(live.hasMemory, true);
    assert.equal(live.location, 'internal');
    assert.match(virshOk(uri, 'snapshot-dumpxml', a, 'live'), /<memory snapshot='internal'\/>/);
    assert.match(virshOk(uri, 'snapshot-dumpxml', a, 'live'), /<description>counting, with memory<\/description>/);
    await rejectsWith(source.takeSnapshot(a, 'live'), 'ALREADY_EXISTS', 'a second "live"');
    // A name virsh's own command-line parser must be given quoted: the listing batches commands in one line.
    const awkward = `it's "odd" \\ ; echo @@`;
    await source.takeSnapshot(a, awkward, { description: 'quotes; semicolons' });
    assert.ok((await source.snapshotTree(a)).roots[0]?.children.some((n) => n.snapshot?.name === awkward && n.snapshot.description === 'quotes; semicolons'));
    assert.deepEqual(await source.deleteSnapshot(a, awkward), [awkward]);
    assert.equal(virshOk(uri, 'snapshot-current', a, '--name').trim(), 'live', 'libvirt makes the parent current again');
    await source.takeSnapshot(a, 'second');
    assert.equal(virshTree(uri, a), 'live(second)');
    assert.equal(virshOk(uri, 'snapshot-current', a, '--name').trim(), 'second');
    const tree = await source.snapshotTree(a);
    assert.equal(ourTree(tree.roots), 'live(second(*))');
    assert.equal(domstate(uri, a), 'running', 'a memory snapshot leaves the domain running');
  });

  it('a revert to the running snapshot continues the guest\'s count from the snapshot\'s value', async () => {
    // The count at the snapshot lies between the last count before it and the first after it in the log; take
    // one more snapshot to measure that window precisely.
    await waitForCounts(serialLog, 3, logSize(serialLog));
    const before = last(countsSince(serialLog));
    await source.takeSnapshot(a, 'mark');
    const after = last(countsSince(serialLog));
    await waitForCounts(serialLog, 20, logSize(serialLog));
    const lastBefore = last(countsSince(serialLog));
    const from = logSize(serialLog);
    await rejectsWith(source.revert(a, 'mark'), 'NEEDS_CONFIRMATION', 'a revert without saying what happens to the current state');
    const r = await source.revert(a, 'mark', { discardCurrent: true });
    assert.equal(r.powerState, 'running');
    assert.equal(domstate(uri, a), 'running');
    const counts = await countsAfterRestart(serialLog, from, lastBefore, 5);
    const first = counts[0] as number;
    assert.ok(first >= before && first <= after + 2, `the count continues from the snapshot's ${before}..${after}, got ${first} (it was ${lastBefore})`);
    assert.equal(virshOk(uri, 'snapshot-current', a, '--name').trim(), 'mark');
    assert.equal(ourTree((await source.snapshotTree(a)).roots), 'live(second(mark(*)))');
  });

  it('describes a snapshot by redefining its XML; a rename is refused with the reason', async () => {
    const edited = await source.editSnapshot(a, 'live', { description: 'new words' });
    assert.equal(edited.description, 'new words');
    assert.match(virshOk(uri, 'snapshot-dumpxml', a, 'live'), /<description>new words<\/description>/);
    assert.equal(virshOk(uri, 'snapshot-current', a, '--name').trim(), 'mark', 'the current snapshot stays');
    await source.editSnapshot(a, 'mark', { description: 'current one' });
    assert.equal(virshOk(uri, 'snapshot-current', a, '--name').trim(), 'mark', 'redefining the current snapshot keeps it current');
    await rejectsWith(source.editSnapshot(a, 'live', { name: 'renamed' }), 'UNSUPPORTED', 'a rename', RENAME_REASON);
    assert.equal(virshTree(uri, a), 'live(second(mark))');
  });

  it('deletes a snapshot, and one with its children, while the domain runs', async () => {
    assert.deepEqual(await source.deleteSnapshot(a, 'second'), ['second']);
    assert.equal(virshTree(uri, a), 'live(mark)');
    await source.takeSnapshot(a, 'c1');
    await source.takeSnapshot(a, 'c2');
    assert.equal(virshTree(uri, a), 'live(mark(c1(c2)))');
    assert.deepEqual((await source.deleteSnapshot(a, 'c1', { children: true })).sort(), ['c1', 'c2']);
    assert.equal(virshTree(uri, a), 'live(mark)');
    assert.equal(domstate(uri, a), 'running');
    await rejectsWith(source.deleteSnapshot(a, 'nope'), 'NOT_FOUND', 'an unknown snapshot', /has no snapshot "nope"/);
  });

  it('pauses, resumes and forces off; a running domain is not cloned', async () => {
    assert.equal(await source.power(a, 'pause'), 'paused');
    assert.equal(domstate(uri, a), 'paused');
    assert.equal(await source.power(a, 'resume'), 'running');
    assert.equal(domstate(uri, a), 'running');
    await rejectsWith(source.clone(a, `${s.prefix}x`, { kind: 'full' }), 'POWERED_ON', 'a clone of a running domain');
    assert.equal(await source.power(a, 'force-off'), 'off');
    assert.equal(domstate(uri, a), 'shut off');
  });

  it('a full clone has a new UUID and MAC, its own standalone disk and serial log, and boots', async () => {
    const name = `${s.prefix}full`;
    const r = await source.clone(a, name, { kind: 'full' });
    const src = await source.showMachine(a);
    assert.notEqual(r.machine.uuid, src.uuid);
    assert.notDeepEqual(r.machine.macAddresses, src.macAddresses);
    assert.equal(virshOk(uri, 'domuuid', name).trim(), r.machine.uuid);
    const disk = r.machine.disks[0]?.path ?? '';
    assert.notEqual(disk, src.disks[0]?.path);
    const info = JSON.parse(spawnSync('qemu-img', ['info', '--output=json', '-U', disk], { encoding: 'utf8' }).stdout) as { 'backing-filename'?: string };
    assert.equal(info['backing-filename'], undefined, 'the full clone stands alone');
    const xml = virshOk(uri, 'dumpxml', name);
    const log = /<serial type='file'>\s*<source path='([^']+)'/.exec(xml)?.[1] ?? '';
    assert.ok(log !== serialLog && log.includes(name), `its own serial log (${log})`);
    await source.power(name, 'start');
    await waitForCounts(log, 3);
    await source.power(name, 'force-off');
    // From an internal snapshot: the disk as it was then, read on this computer; libvirt cannot read it remotely,
    // and the snapshot says so wherever it is read (a listing, a tree, one snapshot), so front ends do not offer it.
    const liveRefusals = [
      (await source.showMachine(a)).snapshots.find((x) => x.name === 'live')?.refusals,
      (await source.readAll()).find((v) => v.machine.name === a)?.snapshots.find((x) => x.name === 'live')?.refusals,
      (await source.snapshot(src.uuid, 'live')).refusals,
    ];
    for (const r of liveRefusals) assert.equal(r?.fullClone, source.isLocal ? undefined : REMOTE_FULL_FROM_SNAPSHOT, `a full clone from “live” is ${source.isLocal ? 'offered' : 'refused'}`);
    if (source.isLocal) {
      const fromSnap = await source.clone(a, `${s.prefix}fromlive`, { kind: 'full', from: 'live' });
      assert.ok(existsSync(fromSnap.machine.disks[0]?.path ?? ''));
      assert.match(spawnSync('qemu-img', ['check', '-U', fromSnap.machine.disks[0]?.path ?? ''], { encoding: 'utf8' }).stdout, /No errors were found/);
    } else {
      await rejectsWith(source.clone(a, `${s.prefix}fromlive`, { kind: 'full', from: 'live' }), 'UNSUPPORTED', 'a remote full clone of an internal snapshot', REMOTE_FULL_FROM_SNAPSHOT);
    }
    await rejectsWith(source.clone(a, `${s.prefix}linkedlive`, { kind: 'linked', from: 'live' }), 'UNSUPPORTED', 'a linked clone of an internal snapshot', /frozen layer/);
    await rejectsWith(source.clone(a, name, { kind: 'full' }), 'ALREADY_EXISTS', 'a clone name in use');
  });

  it('a linked clone is an overlay on a frozen layer (an external snapshot of the source), and boots', async () => {
    const b = `${s.prefix}b`;
    const base = defineCountingDomain(SYSTEM_URI, s.dir, b);
    const linked = `${s.prefix}linked`;
    const r = await source.clone(b, linked, { kind: 'linked' });
    assert.ok(r.takenSnapshot !== null && r.takenSnapshot.location === 'external');
    assert.equal(virshTree(uri, b), r.takenSnapshot.name);
    const disk = r.machine.disks[0]?.path ?? '';
    const info = JSON.parse(spawnSync('qemu-img', ['info', '--output=json', '-U', disk], { encoding: 'utf8' }).stdout) as { 'backing-filename'?: string };
    assert.equal(info['backing-filename'], base.disk, 'the clone reads the frozen layer');
    assert.notEqual(virshOk(uri, 'domblklist', b).includes(base.disk), true, 'the source writes to a new layer');
    await source.power(linked, 'start');
    const log = /<serial type='file'>\s*<source path='([^']+)'/.exec(virshOk(uri, 'dumpxml', linked))?.[1] ?? '';
    await waitForCounts(log, 3);
    await source.power(linked, 'force-off');
    await rejectsWith(source.revert(b, r.takenSnapshot.name, { discardCurrent: true }), 'UNSUPPORTED', 'a revert to an external snapshot', REVERT_EXTERNAL);
  });
}
