import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { ComparePanel } from '../../src/extension/compare/compare-panel';
import type { TestHandle } from '../../src/extension/test-handle';
import { answering, extensionApi, type FreshLibrary, machineWithSnapshots, MiB, until, useFreshLibrary } from './running-extension';

describe('Comparison table (webview)', () => {
  let api: TestHandle;
  let library: FreshLibrary;

  before(async () => {
    api = await extensionApi();
  });

  beforeEach(async () => {
    library = await useFreshLibrary(api);
  });

  afterEach(async () => {
    api.comparePanel()?.dispose();
    await library.dispose();
  });

  /** Asks the webview until what it shows satisfies `check` (it renders after each state message). */
  async function shown(panel: ComparePanel, check: (r: Awaited<ReturnType<ComparePanel['probe']>>) => boolean, what: string) {
    let last: Awaited<ReturnType<ComparePanel['probe']>> | undefined;
    await until(
      async () => {
        // A webview that is slow to start (a busy machine) still answers within the wait.
        last = await panel.probe(20_000);
        return check(last);
      },
      what,
      20_000,
    );
    return last!;
  }

  it('renders the family’s rows with the seed’s attributes, the legend and the snapshot tree', async () => {
    const { machine, installed } = await machineWithSnapshots(library.lib);
    const clone = await library.lib.clone(machine.id, 'lc', { kind: 'linked', from: installed.id });
    const panel = await vscode.commands.executeCommand<ComparePanel>('vmsnap.openComparison', machine.id);
    const view = await shown(panel, (r) => r.rows.length === 4, 'the four rows');
    assert.deepEqual(view.headers, ['Kind', 'Name', 'Created', 'Size on disk', 'Depends on', 'Description', 'Actions']);
    const byName = new Map(view.rows.map((r) => [r[1], r]));
    assert.equal(byName.get('dev-vm')?.[0], 'machine');
    assert.equal(byName.get('Installed')?.[0], 'snapshot');
    assert.equal(byName.get('Installed')?.[5], 'tools installed');
    const lc = byName.get('lc');
    assert.equal(lc?.[0], 'linked clone');
    assert.equal(lc?.[4], 'snapshot "Installed" of "dev-vm"');
    // Machine-level facts once per machine, not on every snapshot's row.
    assert.deepEqual(view.machineHeaders, ['Machine', 'Kind', 'Runs alongside its source', 'UUID', 'MAC']);
    assert.deepEqual(view.machineRows, [
      ['dev-vm', 'machine', '—', machine.id, machine.macAddress],
      ['lc', 'linked clone', 'yes', clone.machine.id, clone.machine.macAddress],
    ]);
    // machine + 2 snapshots + You are here, clone machine + its You are here, and the clone hanging off Installed
    assert.ok(view.treeNodes >= 6, `tree has ${view.treeNodes} nodes`);
  });

  it('draws the tree with no label over another node or label, and a legend of its colours', async () => {
    const m = await library.lib.createMachine('dev-vm', { diskSize: 16 * MiB });
    await library.lib.takeSnapshot(m.id, 'Base');
    // A long checkpoint name right before "You are here" (it overprinted it), a branch, and a linked clone.
    const long = await library.lib.takeSnapshot(m.id, 'Checkpoint 2026-12-06 before npm upgrade');
    await library.lib.clone(m.id, 'test-runner-with-a-long-name', { kind: 'linked', from: long.id });
    const panel = await vscode.commands.executeCommand<ComparePanel>('vmsnap.openComparison', m.id);
    const view = await shown(panel, (r) => r.treeNodes >= 5, 'the drawn tree');
    assert.deepEqual(view.treeOverlaps, []);
    assert.deepEqual(view.nodeLegend, [
      'machine',
      'snapshot',
      'the current state descends from it',
      'locked by a linked clone',
      'You are here (current state)',
      'linked clone (dashed line)',
    ]);
  });

  it('follows the library live: a snapshot taken elsewhere appears without reopening', async () => {
    const { machine } = await machineWithSnapshots(library.lib);
    const panel = await vscode.commands.executeCommand<ComparePanel>('vmsnap.openComparison', machine.id);
    await shown(panel, (r) => r.rows.length === 3, 'three rows');
    await library.lib.takeSnapshot(machine.id, 'Later');
    await shown(panel, (r) => r.rows.some((row) => row[1] === 'Later'), 'the new snapshot’s row');
  });

  it('is one panel per library, and Show in Comparison Table selects the snapshot’s row', async () => {
    const { machine, base } = await machineWithSnapshots(library.lib);
    const first = await vscode.commands.executeCommand<ComparePanel>('vmsnap.openComparison', machine.id);
    const again = await vscode.commands.executeCommand<ComparePanel>('vmsnap.showInComparison', { machine: machine.id, snapshot: base.id });
    assert.equal(again, first);
    await shown(first, (r) => r.selectedRowId === base.id, 'the Base row to be selected');
  });

  it('a locked snapshot’s row shows the lock instead of Delete; others keep Delete', async () => {
    const { machine, base } = await machineWithSnapshots(library.lib);
    await library.lib.clone(machine.id, 'runner', { kind: 'linked', from: base.id });
    const panel = await vscode.commands.executeCommand<ComparePanel>('vmsnap.openComparison', machine.id);
    await shown(panel, (r) => r.rows.some((row) => row[1] === 'runner'), 'the clone’s row');
    const reply = await shown(panel, (r) => r.rows.some((row) => row[1] === 'Base'), 'the Base row');
    const actions = (name: string): string => reply.rows.find((row) => row[1] === name)?.at(-1) ?? '';
    assert.match(actions('Base'), /Locked/);
    assert.doesNotMatch(actions('Base'), /Delete/);
    assert.match(actions('Installed'), /Delete/);
  });

  it('row actions go through the message protocol to the same commands (Revert asks only when changes would be lost)', async () => {
    const { machine, base } = await machineWithSnapshots(library.lib);
    const panel = await vscode.commands.executeCommand<ComparePanel>('vmsnap.openComparison', machine.id);
    await shown(panel, (r) => r.rows.length === 3, 'three rows');
    await answering(api, [], () => panel.receive({ type: 'action', requestId: 1, action: 'revert', machineId: machine.id, snapshotId: base.id }));
    assert.equal((await library.lib.show(machine.id)).current, base.id);
    await answering(api, ['Delete'], () => panel.receive({ type: 'action', requestId: 2, action: 'delete', machineId: machine.id, snapshotId: base.id }));
    assert.deepEqual((await library.lib.show(machine.id)).snapshots.map((s) => s.name), ['Installed']);
  });
});
