// Workbench conventions: the Output channel's log of operations, F2 and Delete on the selected row, a small
// library shown expanded.
import * as assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import * as vscode from 'vscode';
import type { TestHandle } from '../../src/extension/test-handle';
import { answering, extensionApi, type FreshLibrary, machineWithSnapshots, MiB, until, useFreshLibrary } from './running-extension';

interface Keybinding {
  command: string;
  key: string;
  when?: string;
}

async function logText(api: TestHandle): Promise<string> {
  return readFile(api.logFile, 'utf8').catch(() => '');
}

describe('Workbench conventions', () => {
  let api: TestHandle;
  let library: FreshLibrary;

  before(async () => {
    api = await extensionApi();
    await vscode.commands.executeCommand('workbench.view.extension.vmsnap');
  });

  beforeEach(async () => {
    library = await useFreshLibrary(api);
    api.lastError = undefined;
  });

  afterEach(async () => {
    await library.dispose();
  });

  it('the "VM Snapshots" Output channel logs each operation with its duration, and a failure with its message', async () => {
    const { machine, installed } = await machineWithSnapshots(library.lib);
    await vscode.commands.executeCommand('vmsnap.takeSnapshot', machine.id, { name: 'Logged' });
    await library.lib.clone(machine.id, 'lc', { kind: 'linked', from: installed.id });
    await vscode.commands.executeCommand('vmsnap.deleteSnapshot', { machine: machine.id, snapshot: installed.id }, { confirmed: true });
    assert.equal(api.lastError?.code, 'LOCKED_BY_CLONES');
    await until(async () => /\[error\] deleteSnapshot “[^”]+ › [^”]+”: failed after \d+ ms: Snapshot “Installed” is locked/.test(await logText(api)), 'the failure in the log');
    const log = await logText(api);
    assert.match(log, /\[info\] takeSnapshot “[^”]+”: done in \d+ ms/);
  });

  it('F2 renames and Delete deletes the selected row in the Machines view, with the same questions', async () => {
    const ext = vscode.extensions.getExtension('vmsnap.vmsnap')!;
    const keys = (ext.packageJSON as { contributes: { keybindings: Keybinding[] } }).contributes.keybindings;
    const key = (command: string) => keys.find((k) => k.command === command);
    assert.equal(key('vmsnap.renameSelected')?.key, 'f2');
    assert.equal(key('vmsnap.deleteSelected')?.key, 'delete');
    for (const k of [key('vmsnap.renameSelected'), key('vmsnap.deleteSelected')]) assert.match(k?.when ?? '', /focusedView == vmsnap\.machines && !inputFocus/);

    const { machine, base, installed } = await machineWithSnapshots(library.lib);
    await api.revealSnapshot(machine.id, base.id);
    await until(() => api.view.selection[0]?.id === `snapshot/${machine.id}/${base.id}`, 'Base to be selected');
    await answering(api, ['Fresh'], () => vscode.commands.executeCommand('vmsnap.renameSelected'));
    assert.equal((await library.lib.show(machine.id)).snapshots[0]!.name, 'Fresh');

    await api.revealSnapshot(machine.id, installed.id);
    await until(() => api.view.selection[0]?.id === `snapshot/${machine.id}/${installed.id}`, 'Installed to be selected');
    const { asked } = await answering(api, ['Keep It'], () => vscode.commands.executeCommand('vmsnap.deleteSelected'));
    assert.match(asked[0]!, /^pick: Delete snapshot “Installed”\? \{\$\(circle-slash\) Keep It/);
    assert.equal((await library.lib.show(machine.id)).snapshots.length, 2);
    await answering(api, ['Delete'], () => vscode.commands.executeCommand('vmsnap.deleteSelected'));
    assert.deepEqual((await library.lib.show(machine.id)).snapshots.map((s) => s.name), ['Fresh']);
  });

  it('machines show expanded the first time when the library has three or fewer, collapsed when it has more', async () => {
    for (const name of ['a', 'b', 'c']) await library.lib.createMachine(name, { diskSize: 16 * MiB });
    api.tree.refresh();
    const states = async () => Promise.all((await api.tree.machineNodes()).map((n) => api.tree.getTreeItem(n).collapsibleState));
    assert.deepEqual(await states(), [vscode.TreeItemCollapsibleState.Expanded, vscode.TreeItemCollapsibleState.Expanded, vscode.TreeItemCollapsibleState.Expanded]);
    await library.lib.createMachine('d', { diskSize: 16 * MiB });
    api.tree.refresh();
    assert.ok((await states()).every((s) => s === vscode.TreeItemCollapsibleState.Collapsed));
  });
});
