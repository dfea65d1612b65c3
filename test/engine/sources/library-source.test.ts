// Our library as a machine source: the adapter hands every call to the Library and reports what the Library
// reports (its own tree, ids and errors), with the library's capabilities.
import { strict as assert } from 'node:assert';
import { join } from 'node:path';
import { isMachineError, Library } from '../../../src/engine/machine';
import { CAPABILITY_NAMES, LibrarySource, type SourceSnapshotNode } from '../../../src/engine/sources';
import { scratchDir } from '../../support/qemu';

describe('machine sources: the library through LibrarySource', () => {
  const scratch = scratchDir('vmsnap-library-source-');
  let lib: Library;
  let source: LibrarySource;

  before(async () => {
    lib = await Library.open(join(scratch.dir, 'lib'));
    source = new LibrarySource(lib);
    await lib.createMachine('dev', { diskSize: 16 * 1024 * 1024 });
  });
  after(() => scratch.cleanup());

  it('says what the library can do, every capability named', () => {
    assert.deepEqual(Object.keys(source.capabilities).sort(), [...CAPABILITY_NAMES].sort());
    assert.equal(source.capabilities.promote, true);
    assert.equal(source.kind, 'library');
  });

  it('lists, takes, edits, reverts, clones and deletes as the Library does', async () => {
    const [m] = await source.listMachines();
    assert.ok(m);
    assert.equal(m.name, 'dev');
    const a = await source.takeSnapshot(m.ref, 'a', { description: 'first' });
    const b = await source.takeSnapshot(m.ref, 'b');
    assert.equal(b.parentId, a.id);
    const shape = (nodes: readonly SourceSnapshotNode[]): string => nodes.map((n) => (n.kind === 'current' ? '*' : `${n.snapshot?.name}(${shape(n.children)})`)).join(',');
    assert.equal(shape((await source.snapshotTree(m.ref)).roots), 'a(b(*))');
    assert.deepEqual((await lib.snapshotTree('dev')).roots.map((r) => r.id), [a.id], 'the same ids as the library');
    assert.equal((await source.editSnapshot(m.ref, 'a', { name: 'A', description: 'renamed' })).name, 'A');
    await assert.rejects(source.revert(m.ref, 'A'), (e: unknown) => isMachineError(e) && e.code === 'NEEDS_CONFIRMATION');
    const r = await source.revert(m.ref, 'A', { discardCurrent: true });
    assert.equal(r.powerState, 'off');
    assert.equal(shape((await source.snapshotTree(m.ref)).roots), 'A(b(),*)');
    const clone = await source.clone(m.ref, 'dev-linked', { kind: 'linked', from: 'b' });
    assert.notEqual(clone.machine.uuid, m.uuid);
    const locked = (await source.showMachine(m.ref)).snapshots.find((s) => s.name === 'b');
    assert.match(locked?.refusals.delete ?? '', /Linked clones hang on snapshot "b"/);
    await assert.rejects(source.deleteSnapshot(m.ref, 'b'), (e: unknown) => isMachineError(e) && e.code === 'LOCKED_BY_CLONES');
    const c = await source.takeSnapshot(m.ref, 'c');
    assert.deepEqual(await source.deleteSnapshot(m.ref, 'c'), [c.id]);
    assert.equal((await source.listMachines()).length, 2);
  });
});
