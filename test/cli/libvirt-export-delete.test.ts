// `vmsnap vm delete` of a machine `vm export --libvirt` defined as a domain, on a real libvirtd (qemu:///system):
// refused while the domain still reads the folder (nothing removed), --undefine-libvirt removes both (not while the
// domain runs), --keep-libvirt-domain leaves the domain; a domain gone or re-pointed is no obstacle, and an
// unreadable connection is one sentence that --keep-libvirt-domain gets past. Checked with virsh's own view.
import { strict as assert } from 'node:assert';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Library } from '../../src/engine/machine';
import { writeCountingGuest } from '../support/counting-guest';
import { requireLibvirt, shareWithQemu, startDaemons, SYSTEM_URI, testPrefix, virsh, virshOk, type Daemons } from '../support/libvirt';
import { scratchDir } from '../support/qemu';
import { runCaptured } from './in-process';

const C = ['--connect', SYSTEM_URI];

describe('vmsnap vm delete of a machine exported to libvirt', function () {
  this.timeout(360000);
  const scratch = scratchDir('vmsnap-cli-libvirt-delete-');
  const prefix = testPrefix();
  const libDir = join(scratch.dir, 'lib');
  let daemons: Daemons;
  let lib: Library;

  before(async function () {
    requireLibvirt(this);
    shareWithQemu(scratch.dir);
    daemons = await startDaemons();
    lib = await Library.open(libDir);
    shareWithQemu(libDir);
    writeCountingGuest(scratch.path('guest.raw'));
  });

  after(async () => {
    const names = virsh(SYSTEM_URI, 'list', '--all', '--name').stdout.split('\n').map((l) => l.trim()).filter((n) => n.startsWith(prefix));
    for (const n of names) {
      virsh(SYSTEM_URI, 'destroy', n);
      virsh(SYSTEM_URI, 'undefine', n, '--snapshots-metadata');
    }
    await daemons?.stop();
    scratch.cleanup();
  });

  const vmsnap = (...args: string[]) => runCaptured(['--library', libDir, ...args]);
  /** A machine of ours, exported with the CLI; its id (the domain's UUID) and folder. */
  const exported = async (name: string): Promise<{ id: string; folder: string }> => {
    const m = (await lib.importMachine(name, scratch.path('guest.raw'), { cpus: 1, memoryMiB: 48 })).machine;
    shareWithQemu(m.folder);
    // TCG: these hosts' /dev/kvm does not run guests for libvirt's QEMU user.
    const r = await vmsnap('vm', 'export', name, '--libvirt', '--accel', 'tcg', ...C);
    assert.equal(r.status, 0, r.stderr);
    return { id: m.id, folder: m.folder };
  };
  const domainExists = (ref: string): boolean => virsh(SYSTEM_URI, 'dominfo', ref).status === 0;

  it('records the export in the manifest, and refuses the delete naming the domain, the connection and both flags; nothing is removed', async () => {
    const name = `${prefix}refused`;
    const m = await exported(name);
    const manifest = JSON.parse(readFileSync(join(m.folder, 'machine.json'), 'utf8')) as { libvirtExports?: unknown };
    assert.deepEqual(manifest.libvirtExports, [{ connection: SYSTEM_URI, domain: name }]);
    const files = readdirSync(m.folder).sort();
    const r = await vmsnap('vm', 'delete', name);
    assert.equal(r.status, 1);
    assert.equal(
      r.stderr,
      `Machine "${name}" is exported to libvirt as domain "${name}" on ${SYSTEM_URI}; pass --undefine-libvirt to remove that domain too, or --keep-libvirt-domain to leave it (it will point at missing files).\n`,
    );
    assert.deepEqual(readdirSync(m.folder).sort(), files, 'nothing in the folder changed');
    assert.ok(domainExists(m.id));
    const json = await vmsnap('vm', 'delete', name, '--json');
    assert.equal((JSON.parse(json.stdout) as { error: { code: string } }).error.code, 'NEEDS_CONFIRMATION');
    const both = await vmsnap('vm', 'delete', name, '--undefine-libvirt', '--keep-libvirt-domain');
    assert.equal(both.status, 2);
    assert.match(both.stderr, /^Give only one of --undefine-libvirt or --keep-libvirt-domain\./);
    assert.ok(existsSync(m.folder));
  });

  it('--undefine-libvirt undefines the domain and deletes the machine', async () => {
    const name = `${prefix}undefine`;
    const m = await exported(name);
    const r = await vmsnap('vm', 'delete', name, '--undefine-libvirt');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `Deleted machine "${name}". Undefined libvirt domain "${name}" on ${SYSTEM_URI}.\n`);
    const info = virsh(SYSTEM_URI, 'dominfo', m.id);
    assert.notEqual(info.status, 0);
    assert.match(info.stderr, /failed to get domain/);
    assert.ok(!existsSync(m.folder));
  });

  it('--keep-libvirt-domain deletes the machine and leaves the domain, which says so', async () => {
    const name = `${prefix}keep`;
    const m = await exported(name);
    const r = await vmsnap('vm', 'delete', name, '--keep-libvirt-domain');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `Deleted machine "${name}". Left libvirt domain "${name}" on ${SYSTEM_URI}, pointing at missing files (virsh undefine removes it).\n`);
    assert.ok(!existsSync(m.folder));
    assert.match(virshOk(SYSTEM_URI, 'dumpxml', m.id), new RegExp(`<source file='${m.folder}/current-disk0.qcow2'`));
    virshOk(SYSTEM_URI, 'undefine', m.id);
  });

  it('a running domain is not undefined: the delete is refused until it is shut off', async () => {
    const name = `${prefix}running`;
    const m = await exported(name);
    virshOk(SYSTEM_URI, 'start', m.id);
    try {
      const r = await vmsnap('vm', 'delete', name, '--undefine-libvirt');
      assert.equal(r.status, 1);
      assert.equal(
        r.stderr,
        `Machine "${name}" is exported to libvirt as domain "${name}" on ${SYSTEM_URI}, which is running: shut it off first (\`virsh -c ${SYSTEM_URI} shutdown ${name}\`), then delete again.\n`,
      );
      assert.equal(virshOk(SYSTEM_URI, 'domstate', m.id).trim(), 'running');
      assert.ok(existsSync(join(m.folder, 'machine.json')));
    } finally {
      virsh(SYSTEM_URI, 'destroy', m.id);
    }
    const r = await vmsnap('vm', 'delete', name, '--undefine-libvirt');
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!domainExists(m.id));
  });

  it('--with-clones looks at the linked clones too: an exported clone refuses the delete, and --undefine-libvirt removes its domain', async () => {
    const base = (await lib.importMachine(`${prefix}base`, scratch.path('guest.raw'))).machine;
    shareWithQemu(base.folder);
    await lib.takeSnapshot(base.id, 'one');
    const clone = (await lib.clone(base.id, `${prefix}lc`, { kind: 'linked', from: 'one' })).machine;
    shareWithQemu(clone.folder);
    assert.equal((await vmsnap('vm', 'export', clone.name, '--libvirt', '--accel', 'tcg', ...C)).status, 0);
    let r = await vmsnap('vm', 'delete', base.name, '--with-clones');
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`^Machine "${clone.name}" is exported to libvirt as domain "${clone.name}" on qemu:///system; pass --undefine-libvirt`));
    assert.ok(existsSync(clone.folder) && existsSync(base.folder), 'neither the clone nor its source is deleted');
    r = await vmsnap('vm', 'delete', base.name, '--with-clones', '--undefine-libvirt');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `Deleted machine "${base.name}", and 1 linked clone: "${clone.name}". Undefined libvirt domain "${clone.name}" on ${SYSTEM_URI}.\n`);
    assert.ok(!domainExists(clone.id));
  });

  it('a domain undefined by hand, or re-pointed at other disks, does not hold up the delete', async () => {
    const gone = await exported(`${prefix}gone`);
    virshOk(SYSTEM_URI, 'undefine', gone.id);
    let r = await vmsnap('vm', 'delete', `${prefix}gone`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `Deleted machine "${prefix}gone".\n`);
    const moved = await exported(`${prefix}moved`);
    const elsewhere = scratch.path('elsewhere.qcow2');
    writeFileSync(elsewhere, '');
    const xml = virshOk(SYSTEM_URI, 'dumpxml', moved.id).replace(`${moved.folder}/current-disk0.qcow2`, elsewhere);
    writeFileSync(scratch.path('moved.xml'), xml);
    virshOk(SYSTEM_URI, 'define', scratch.path('moved.xml'));
    r = await vmsnap('vm', 'delete', `${prefix}moved`);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!existsSync(moved.folder));
    assert.ok(domainExists(moved.id), 'a domain that no longer reads the folder is not ours to remove');
  });

  it('a connection that cannot be read is one sentence; --keep-libvirt-domain deletes anyway', async () => {
    const name = `${prefix}unread`;
    const m = (await lib.importMachine(name, scratch.path('guest.raw'))).machine;
    const uri = `qemu:///system?socket=${scratch.path('none.sock')}`;
    await lib.linkCurrentDisks(m.id, { exportedTo: { connection: uri, domain: name } });
    let r = await vmsnap('vm', 'delete', name);
    assert.equal(r.status, 1);
    assert.equal(
      r.stderr,
      `Cannot check whether machine "${name}" is still exported to libvirt as domain "${name}" on ${uri}: the libvirt daemon of ${uri} is not running (its socket does not answer): start libvirtd (or virtqemud) there. Try again when that connection answers, or pass --keep-libvirt-domain to delete the machine anyway (the domain, if it still exists, will point at missing files).\n`,
    );
    r = await vmsnap('vm', 'delete', name, '--undefine-libvirt');
    assert.equal(r.status, 1, 'undefining needs the connection');
    assert.ok(existsSync(m.folder));
    r = await vmsnap('vm', 'delete', name, '--keep-libvirt-domain');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `Deleted machine "${name}".\n`);
    assert.ok(!existsSync(m.folder));
  });
});
