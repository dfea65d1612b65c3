// `vmsnap --connect URI ...` on a real libvirtd (qemu:///system), and `vmsnap vm export NAME --libvirt`, checked
// against libvirt's own view (virsh snapshot-list --tree, snapshot-current, domstate, dumpxml).
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { RENAME_REASON } from '../../src/engine/libvirt';
import { Library } from '../../src/engine/machine';
import { imageWriters } from '../../src/engine/os';
import { writeCountingGuest } from '../support/counting-guest';
import { defineCountingDomain, removeTestDomains, requireLibvirt, shareWithQemu, startDaemons, SYSTEM_URI, testPrefix, virsh, virshOk, type Daemons } from '../support/libvirt';
import { qemuImg, scratchDir } from '../support/qemu';
import { runCaptured } from './in-process';

const C = ['--connect', SYSTEM_URI];

describe('vmsnap --connect: libvirt domains from the command line', function () {
  this.timeout(360000);
  const scratch = scratchDir('vmsnap-cli-libvirt-');
  const prefix = testPrefix();
  const vm = `${prefix}cli`;
  let daemons: Daemons;

  before(async function () {
    requireLibvirt(this);
    shareWithQemu(scratch.dir);
    daemons = await startDaemons();
    defineCountingDomain(SYSTEM_URI, scratch.dir, vm);
  });

  after(async () => {
    removeTestDomains(SYSTEM_URI, prefix);
    await daemons?.stop();
    scratch.cleanup();
  });

  it('vm list, vm start and vm show --json act on the connection', async () => {
    let r = await runCaptured([...C, 'vm', 'start', vm]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(virshOk(SYSTEM_URI, 'domstate', vm).trim(), 'running');
    r = await runCaptured([...C, 'vm', 'list']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${vm}\\s+${virshOk(SYSTEM_URI, 'domuuid', vm).trim()}\\s+running`));
    r = await runCaptured([...C, 'vm', 'show', vm, '--json']);
    const shown = JSON.parse(r.stdout) as { uuid: string; source: { capabilities: { renameSnapshot: boolean; linkedClones: boolean } } };
    assert.equal(shown.uuid, virshOk(SYSTEM_URI, 'domuuid', vm).trim());
    assert.deepEqual([shown.source.capabilities.renameSnapshot, shown.source.capabilities.linkedClones], [false, true]);
  });

  it('snapshot take, list, edit, revert and delete; a rename is refused with the reason', async () => {
    let r = await runCaptured([...C, 'snapshot', 'take', vm, 'one', '--description', 'first']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /with its memory/);
    await runCaptured([...C, 'snapshot', 'take', vm, 'two']);
    assert.equal(virshOk(SYSTEM_URI, 'snapshot-current', vm, '--name').trim(), 'two');
    r = await runCaptured([...C, 'snapshot', 'list', vm]);
    // A straight line of snapshots is drawn flat, as for the library's machines.
    assert.match(r.stdout, /\n {2}one {2}\(.*\[running, with memory\]\n {2}two \* {2}\(.*\n {2}▶ You are here\n$/);
    r = await runCaptured([...C, 'snapshot', 'edit', vm, 'one', '--description', 'edited']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(virshOk(SYSTEM_URI, 'snapshot-dumpxml', vm, 'one'), /<description>edited<\/description>/);
    r = await runCaptured([...C, 'snapshot', 'edit', vm, 'one', '--name', 'uno']);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `${RENAME_REASON}\n`);
    r = await runCaptured([...C, 'snapshot', 'revert', vm, 'one']);
    assert.equal(r.status, 2, 'a revert must say what becomes of the current state');
    r = await runCaptured([...C, 'snapshot', 'revert', vm, 'one', '--discard-current']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /it is running now/);
    assert.equal(virshOk(SYSTEM_URI, 'snapshot-current', vm, '--name').trim(), 'one');
    assert.equal(virshOk(SYSTEM_URI, 'domstate', vm).trim(), 'running');
    r = await runCaptured([...C, 'snapshot', 'delete', vm, 'one', '--children']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(virshOk(SYSTEM_URI, 'snapshot-list', vm, '--name').trim(), '');
  });

  it('vm stop asks the guest to shut down and powers it off after the time-out; --force at once; clone --full only while off', async () => {
    let r = await runCaptured([...C, 'clone', vm, `${prefix}copy`, '--full']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /is running: a clone is made of a powered-off domain/);
    // The boot-sector guest has no ACPI: it ignores `virsh shutdown`, as a hung guest would.
    r = await runCaptured([...C, 'vm', 'stop', vm, '--timeout', '3']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `Stopped "${vm}" on ${SYSTEM_URI} (the guest did not shut down within 3 s, so it was powered off).\n`);
    assert.equal(virshOk(SYSTEM_URI, 'domstate', vm).trim(), 'shut off');
    r = await runCaptured([...C, 'vm', 'stop', vm]);
    assert.equal(r.stdout, `"${vm}" is already off on ${SYSTEM_URI}.\n`);
    r = await runCaptured([...C, 'clone', vm, `${prefix}copy`, '--full', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const made = JSON.parse(r.stdout) as { machine: { uuid: string } };
    assert.equal(virshOk(SYSTEM_URI, 'domuuid', `${prefix}copy`).trim(), made.machine.uuid);
    virshOk(SYSTEM_URI, 'start', `${prefix}copy`);
    const t0 = Date.now();
    r = await runCaptured([...C, 'vm', 'stop', `${prefix}copy`, '--force', '--json']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual({ ...(JSON.parse(r.stdout) as object), ms: 0 }, { method: 'forced', timedOut: false, ms: 0, powerState: 'off' });
    assert.ok(Date.now() - t0 < 30000, 'no wait for the guest');
    assert.equal(virshOk(SYSTEM_URI, 'domstate', `${prefix}copy`).trim(), 'shut off');
  });

  it('errors are one sentence: no daemon, a verb --connect does not serve, an unknown domain', async () => {
    let r = await runCaptured(['--connect', `qemu:///system?socket=${scratch.path('none.sock')}`, 'vm', 'list']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^The libvirt daemon of qemu:\/\/\/system\?socket=\S+ is not running \(its socket does not answer\): start libvirtd \(or virtqemud\) there\.\n$/);
    r = await runCaptured([...C, 'vm', 'create', 'x']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--connect applies to vm list, vm show/);
    r = await runCaptured([...C, 'snapshot', 'list', `${prefix}nope`]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `There is no domain "${prefix}nope" on qemu:///system: list them with \`vmsnap --connect qemu:///system vm list\`.\n`);
  });

  it('vm export --libvirt defines a domain from one of our machines (same disk, MAC, UUID, memory, cpus) that runs, and stays on the current state', async () => {
    const libDir = join(scratch.dir, 'lib');
    const lib = await Library.open(libDir);
    const raw = scratch.path('guest.raw');
    writeCountingGuest(raw);
    const name = `${prefix}ours`;
    const m = (await lib.importMachine(name, raw, { cpus: 1, memoryMiB: 48 })).machine;
    shareWithQemu(libDir);
    shareWithQemu(m.folder);
    const before = readdirSync(m.folder).sort();
    // TCG: these hosts' /dev/kvm does not run guests for libvirt's QEMU user.
    const r = await runCaptured(['--library', libDir, 'vm', 'export', name, '--libvirt', '--accel', 'tcg', ...C]);
    assert.equal(r.status, 0, r.stderr);
    const xml = virshOk(SYSTEM_URI, 'dumpxml', m.id);
    assert.match(xml, new RegExp(`<uuid>${m.id}</uuid>`));
    assert.match(xml, new RegExp(`<mac address='${m.macAddress}'/>`));
    const link = join(m.folder, 'current-disk0.qcow2');
    assert.match(xml, new RegExp(`<source file='${link}'`));
    assert.equal(realpathSync(link), m.disks[0]?.path);
    assert.match(xml, /<memory unit='KiB'>49152<\/memory>/);
    assert.match(xml, /<vcpu placement='static'>1<\/vcpu>/);
    assert.match(xml, /<domain type='qemu'/);
    assert.equal(virsh(SYSTEM_URI, 'start', m.id).status, 0);
    assert.equal(virshOk(SYSTEM_URI, 'domstate', m.id).trim(), 'running');
    // While libvirt runs it, the library refuses to move the machine's layers from under its QEMU.
    const busy = await runCaptured(['--library', libDir, 'snapshot', 'take', name, 'during']);
    assert.notEqual(busy.status, 0);
    assert.match(busy.stderr, /is in use by another program \(pid \d+: .*qemu-system-x86_64.*\), outside vmsnap/);
    virsh(SYSTEM_URI, 'destroy', m.id);
    assert.deepEqual(readdirSync(m.folder).sort(), [...before, 'current-disk0.qcow2'].sort(), 'the machine folder stays ours, with one link more');
    // A snapshot here moves the link to the new top: the domain never writes into the frozen layer again.
    assert.equal((await runCaptured(['--library', libDir, 'snapshot', 'take', name, 'after libvirt'])).status, 0);
    const shown = await lib.show(m.id);
    assert.equal(realpathSync(link), shown.disks[0]?.path);
    const frozen = shown.snapshots[0]!.layers[0]!;
    const frozenBytes = readFileSync(frozen);
    assert.equal(virsh(SYSTEM_URI, 'start', m.id).status, 0);
    const writes = async (file: string): Promise<boolean> => (await imageWriters([file])).length > 0;
    assert.deepEqual([await writes(shown.disks[0]!.path), await writes(frozen)], [true, false], 'the domain writes into the new top only');
    virsh(SYSTEM_URI, 'destroy', m.id);
    assert.deepEqual(readFileSync(frozen), frozenBytes, 'the snapshot layer is untouched by the domain');
    qemuImg('check', shown.disks[0]!.path);
    const again = await runCaptured(['--library', libDir, 'vm', 'export', name, '--libvirt', '--accel', 'tcg', ...C]);
    assert.match(again.stdout, /^Redefined libvirt domain/);
  });
});
