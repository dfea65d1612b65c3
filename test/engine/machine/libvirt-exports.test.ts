// The manifest's record of the libvirt domains `vm export` defined from a machine: written with the links, one per
// connection, absent in older manifests, and a hand-edited wrong record named by its field. (Deleting such a machine
// against a real libvirtd: test/cli/libvirt-export-delete.test.ts.)
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Library } from '../../../src/engine/machine';
import { validateManifest } from '../../../src/engine/machine/manifest';
import { scratchDir } from '../../support/qemu';

describe('the libvirt export record in machine.json', () => {
  const scratch = scratchDir('vmsnap-libvirt-exports-');
  after(() => scratch.cleanup());

  const raw = (folder: string): Record<string, unknown> => JSON.parse(readFileSync(join(folder, 'machine.json'), 'utf8')) as Record<string, unknown>;

  it('is absent until an export, then one record per connection (a second export there replaces it)', async () => {
    const lib = await Library.open(scratch.path('lib'));
    const m = await lib.createMachine('dev', { diskSize: 1024 * 1024 });
    assert.equal(raw(m.folder)['libvirtExports'], undefined, 'a machine never exported has no record (as manifests written before it existed)');
    await lib.linkCurrentDisks(m.id);
    assert.equal(raw(m.folder)['libvirtExports'], undefined, 'links alone record nothing');
    await lib.linkCurrentDisks(m.id, { exportedTo: { connection: 'qemu:///system', domain: 'dev' } });
    await lib.linkCurrentDisks(m.id, { exportedTo: { connection: 'qemu:///session', domain: 'dev' } });
    await lib.renameMachine(m.id, 'dev2');
    await lib.linkCurrentDisks(m.id, { exportedTo: { connection: 'qemu:///system', domain: 'dev2' } });
    assert.deepEqual(raw(m.folder)['libvirtExports'], [
      { connection: 'qemu:///session', domain: 'dev' },
      { connection: 'qemu:///system', domain: 'dev2' },
    ]);
    // Snapshots and clones leave it alone; a clone is another machine, never exported with it.
    await lib.takeSnapshot(m.id, 'one');
    assert.equal((raw(m.folder)['libvirtExports'] as unknown[]).length, 2);
    const clone = await lib.clone(m.id, 'copy', { kind: 'linked', from: 'one' });
    assert.equal(raw(clone.machine.folder)['libvirtExports'], undefined);
  });

  it('a wrong record is refused naming its field', async () => {
    const lib = await Library.open(scratch.path('lib2'));
    const m = raw((await lib.createMachine('vm', { diskSize: 1024 * 1024 })).folder);
    const check = (libvirtExports: unknown) => () => validateManifest({ ...m, libvirtExports }, 'machine.json');
    assert.doesNotThrow(check([{ connection: 'qemu:///system', domain: 'vm' }]));
    assert.throws(check({}), /field "libvirtExports" must be a list/);
    assert.throws(check([{ connection: '/etc/passwd', domain: 'vm' }]), /field "libvirtExports\[0\]\.connection" must be a libvirt URI/);
    assert.throws(check([{ connection: 'qemu:///system', domain: 'a\nb' }]), /field "libvirtExports\[0\]\.domain" must be a domain name/);
    assert.throws(
      check([
        { connection: 'qemu:///system', domain: 'a' },
        { connection: 'qemu:///system', domain: 'b' },
      ]),
      /field "libvirtExports\[1\]\.connection" names qemu:\/\/\/system a second time/,
    );
  });
});
