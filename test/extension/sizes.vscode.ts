// How sizes read in the tree: the current state of a machine with no snapshot above it, a snapshot's own size.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as vscode from 'vscode';
import type { TestHandle } from '../../src/extension/test-handle';
import { extensionApi, machineWithSnapshots, useFreshLibrary } from './running-extension';

describe('Sizes in the tree', () => {
  let api: TestHandle;
  let library: Awaited<ReturnType<typeof useFreshLibrary>>;

  before(async () => {
    api = await extensionApi();
  });

  beforeEach(async () => {
    library = await useFreshLibrary(api);
  });

  afterEach(async () => {
    await library.dispose();
  });

  it('a full clone with no snapshots says how much data it holds, not a change "since the snapshot"', async () => {
    const { machine } = await machineWithSnapshots(library.lib);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 7 0 1M', await library.lib.diskPath(machine.id)], { stdio: 'ignore' });
    await library.lib.takeSnapshot(machine.id, 'With data');
    const clone = await library.lib.clone(machine.id, 'standalone', { kind: 'full' });
    api.tree.refresh();
    const current = (await api.tree.currentNode(clone.machine.id))!;
    const item = api.tree.getTreeItem(current);
    assert.doesNotMatch(String(item.description), /since the snapshot/);
    assert.match(String(item.description), /^1(\.\d)? MiB of data, no snapshot yet$/);
    assert.doesNotMatch((item.tooltip as vscode.MarkdownString).value, /Changed since/);
    // Under a snapshot, the change since it is what it says.
    const underSnapshot = api.tree.getTreeItem((await api.tree.currentNode(machine.id))!);
    assert.match(String(underSnapshot.description), /^no changes$/);
  });
});
