// The compact tree: a straight run of snapshots at one indent, lines that branch off indented under their snapshot.
import * as assert from 'node:assert/strict';
import * as vscode from 'vscode';
import type { TestHandle } from '../../src/extension/test-handle';
import { extensionApi, type FreshLibrary, MiB, treeText, until, useFreshLibrary } from './running-extension';

describe('Compact snapshot chains', () => {
  let api: TestHandle;
  let library: FreshLibrary;

  before(async () => {
    api = await extensionApi();
    await vscode.commands.executeCommand('workbench.view.extension.vmsnap');
  });

  beforeEach(async () => {
    library = await useFreshLibrary(api);
  });

  afterEach(async () => {
    await vscode.commands.executeCommand('vmsnap.indentEverySnapshot');
    await library.dispose();
  });

  it('the view action shows a chain at one indent, each line that branches off under its snapshot, and back', async () => {
    const m = await library.lib.createMachine('dev-vm', { diskSize: 16 * MiB });
    await library.lib.takeSnapshot(m.id, 'Base');
    const s2 = await library.lib.takeSnapshot(m.id, 'S2');
    await library.lib.takeSnapshot(m.id, 'S3');
    const s4 = await library.lib.takeSnapshot(m.id, 'S4');
    await library.lib.revert(m.id, s2.id, { discardCurrent: true });
    await library.lib.takeSnapshot(m.id, 'Branch');
    api.tree.refresh();
    const full = ['dev-vm', '  Base', '    S2', '      S3', '        S4', '      Branch', '        You are here'];
    assert.deepEqual(await treeText(api), full);

    await vscode.commands.executeCommand('vmsnap.compactChains');
    await until(async () => (await treeText(api)).length === full.length && (await treeText(api))[2] === '  S2', 'the compact tree');
    assert.deepEqual(await treeText(api), ['dev-vm', '  Base', '  S2', '    S3', '    S4', '    Branch', '    You are here']);
    // Where a line starts under a branching snapshot, the row says so; rows that continue a line say nothing.
    const branch = (await api.tree.descendants(m.id)).find((n) => n.kind === 'snapshot' && n.snapshot.name === 'Branch')!;
    assert.match(String(api.tree.getTreeItem(branch).description), /^from “S2” · /);
    const s4Row = (await api.tree.snapshotNode(m.id, s4.id))!;
    assert.doesNotMatch(String(api.tree.getTreeItem(s4Row).description), /from/);
    assert.equal(api.tree.getTreeItem(s4Row).collapsibleState, vscode.TreeItemCollapsibleState.None);
    // The parent VS Code is told is the row it is shown under, so reveal finds S4.
    assert.equal(api.tree.getParent(s4Row)?.id, `snapshot/${m.id}/${s2.id}`);
    await api.revealSnapshot(m.id, s4.id);
    await until(() => api.view.selection[0]?.id === s4Row.id, 'S4 to be selected');

    await vscode.commands.executeCommand('vmsnap.indentEverySnapshot');
    await until(async () => (await treeText(api))[2] === '    S2', 'the full tree');
    assert.deepEqual(await treeText(api), full);
  });
});
