// Delete Machine on a machine exported to libvirt (`vm export --libvirt`), against the real daemons
// (test/support/libvirt.ts): the question names the domain and offers to delete it too, keeping everything stays the
// first choice, and each answer is checked against libvirt's own view (virsh dominfo, dumpxml). Everything that
// runs a tool is asynchronous: the extension host must never block.
import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as vscode from 'vscode';
import { exportMachine, LibvirtSource } from '../../src/engine/libvirt';
import type { DeleteMachineResult, MachineDetails } from '../../src/engine/machine';
import type { ShownError, TestHandle } from '../../src/extension/test-handle';
import { removeTestDomainsAsync, requireLibvirt, shareWithQemu, startDaemons, SYSTEM_URI, testPrefix, virshAsync, virshOkAsync, type Daemons } from '../support/libvirt';
import { answering, extensionApi, useFreshLibrary, type FreshLibrary } from './running-extension';

describe('Delete Machine of a machine exported to libvirt', function () {
  this.timeout(300_000);
  let api: TestHandle;
  let daemons: Daemons | undefined;
  let library: FreshLibrary | undefined;
  const prefix = testPrefix();

  before(async function () {
    this.timeout(600_000);
    requireLibvirt(this);
    daemons = await startDaemons();
    api = await extensionApi();
    library = await useFreshLibrary(api);
    shareWithQemu(library.dir);
  });

  after(async function () {
    this.timeout(300_000);
    await removeTestDomainsAsync(SYSTEM_URI, prefix);
    await daemons?.stop();
    await library?.dispose();
  });

  /** A machine of ours defined as a libvirt domain the way `vm export --libvirt` does it (recorded in its manifest). */
  const exported = async (name: string): Promise<MachineDetails> => {
    const lib = library!.lib;
    const m = await lib.createMachine(`${prefix}${name}`, { diskSize: 64 * 1024 * 1024 });
    shareWithQemu(m.folder);
    await exportMachine(new LibvirtSource(SYSTEM_URI), m, { accel: 'tcg', linkDisks: () => lib.linkCurrentDisks(m.id, { exportedTo: { connection: SYSTEM_URI, domain: m.name } }) });
    return m;
  };
  const domainExists = async (id: string): Promise<boolean> => (await virshAsync(SYSTEM_URI, 'dominfo', id)).status === 0;
  const lastError = (): ShownError | undefined => api.lastError;

  it('names the domain and offers “Delete Machine and libvirt Domain” after Keep It; keeping changes nothing, the second deletes both', async () => {
    const m = await exported('both');
    const { asked } = await answering(api, ['Keep It'], () => vscode.commands.executeCommand('vmsnap.deleteMachine', m.id));
    assert.equal(asked.length, 1);
    assert.match(
      asked[0]!,
      new RegExp(
        `^pick: Delete machine “${m.name}”\\? \\{\\$\\(circle-slash\\) Keep It \\| \\$\\(trash\\) Delete “${m.name}” \\| \\$\\(trash\\) Delete Machine and libvirt Domain\\} — ` +
          `.*It is exported to libvirt as domain “${m.name}” on qemu:///system, which stays defined and will point at missing files\\. / .*Its libvirt domain “${m.name}” on qemu:///system is undefined too`,
      ),
    );
    assert.ok(existsSync(m.folder));
    assert.ok(await domainExists(m.id));
    const { result } = await answering(api, ['Delete Machine and libvirt Domain'], () => vscode.commands.executeCommand<DeleteMachineResult>('vmsnap.deleteMachine', m.id));
    assert.deepEqual(result.undefinedDomains, [{ connection: SYSTEM_URI, domain: m.name }]);
    assert.ok(!existsSync(m.folder));
    assert.ok(!(await domainExists(m.id)), 'virsh dominfo finds no domain');
  });

  it('plain Delete leaves the domain defined (pointing at the missing folder)', async () => {
    const m = await exported('keep');
    const { result } = await answering(api, [`Delete “${m.name}”`], () => vscode.commands.executeCommand<DeleteMachineResult>('vmsnap.deleteMachine', m.id));
    assert.deepEqual(result.keptDomains, [{ connection: SYSTEM_URI, domain: m.name }]);
    assert.ok(!existsSync(m.folder));
    assert.match(await virshOkAsync(SYSTEM_URI, 'dumpxml', m.id), new RegExp(`<source file='${m.folder}/current-disk0.qcow2'`));
    await virshOkAsync(SYSTEM_URI, 'undefine', m.id);
  });

  it('a caller that confirmed without saying what becomes of the domain is refused in the extension’s words', async () => {
    const m = await exported('asked');
    assert.equal(await vscode.commands.executeCommand('vmsnap.deleteMachine', m.id, { confirmed: true }), undefined);
    assert.equal(lastError()?.code, 'NEEDS_CONFIRMATION');
    assert.equal(lastError()?.message, `Machine “${m.name}” is exported to libvirt as domain “${m.name}” on qemu:///system: Delete Machine asks whether to delete that domain too or to leave it (it would point at missing files).`);
    assert.ok(existsSync(m.folder));
    const result = await vscode.commands.executeCommand<DeleteMachineResult>('vmsnap.deleteMachine', m.id, { confirmed: true, libvirtDomains: 'undefine' });
    assert.deepEqual(result.deleted.map((d) => d.id), [m.id]);
    assert.ok(!(await domainExists(m.id)));
  });
});
