// Automatic checkpoints in VS Code: a branch switch in the git workspace checkpoints the dev machine, the schedule
// runs while the window is open, and automatic checkpoints have their icon, their toggle and their table marker.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { MachineDetails } from '../../src/engine/machine';
import type { ComparePanel } from '../../src/extension/compare/compare-panel';
import type { TestHandle } from '../../src/extension/test-handle';
import { contextValue } from '../../src/extension/tree/nodes';
import { extensionApi, type FreshLibrary, MiB, treeText, until, useFreshLibrary } from './running-extension';

/** Writes into the machine's current disk, as the guest would: the machine changed. */
function writeGuest(path: string, pattern: number): void {
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P ${pattern} 0 64k`, path], { stdio: 'ignore' });
}

const config = (section = 'vmsnap'): vscode.WorkspaceConfiguration => vscode.workspace.getConfiguration(section);

/** Switches the workspace's branch with git, or (no git) rewrites .git/HEAD as git does. */
function switchBranch(workspace: string, branch: string): void {
  try {
    execFileSync('git', ['checkout', '-q', '-B', branch], { cwd: workspace, stdio: 'ignore' });
  } catch {
    writeFileSync(join(workspace, '.git', 'HEAD'), `ref: refs/heads/${branch}\n`);
  }
}

describe('Automatic checkpoints', function () {
  this.timeout(60_000);
  let api: TestHandle;
  let library: FreshLibrary;
  let machine: MachineDetails;
  const workspace = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? '';

  before(async () => {
    api = await extensionApi();
    await vscode.commands.executeCommand('workbench.view.extension.vmsnap');
  });

  beforeEach(async () => {
    library = await useFreshLibrary(api);
    machine = await library.lib.createMachine('dev-vm', { diskSize: 64 * MiB });
  });

  afterEach(async () => {
    await config().update('devMachine', undefined, vscode.ConfigurationTarget.Global);
    await config().update('showAutomaticCheckpoints', undefined, vscode.ConfigurationTarget.Global);
    await config('vmsnap.autoCheckpoint').update('runSchedule', undefined, vscode.ConfigurationTarget.Global);
    await library.dispose();
  });

  it('a branch switch in the git workspace checkpoints the dev machine; the tree marks it and can hide it', async () => {
    assert.ok(existsSync(join(workspace, '.git', 'HEAD')), `the workspace ${workspace} is a git repository`);
    // Only the branch switch may take it: the schedule is off for this test.
    await config('vmsnap.autoCheckpoint').update('runSchedule', false, vscode.ConfigurationTarget.Global);
    await library.lib.editMachine(machine.id, { autoCheckpoints: { everySeconds: 3600, keep: 8 } });
    await config().update('devMachine', 'dev-vm', vscode.ConfigurationTarget.Global);
    writeGuest(machine.disks[0]!.path, 1);
    const before = execFileSync('git', ['branch', '--show-current'], { cwd: workspace, encoding: 'utf8' }).trim();
    // The extension has read HEAD once (it checks every few seconds); then the branch changes.
    await new Promise((r) => setTimeout(r, 1000));
    switchBranch(workspace, 'try-auto-checkpoints');
    try {
      let autos: MachineDetails['snapshots'] = [];
      await until(
        async () => (autos = (await library.lib.show(machine.id)).snapshots.filter((s) => s.auto)).length > 0,
        'an automatic checkpoint after the branch switch',
        15_000,
      );
      assert.equal(autos.length, 1);
      assert.match(autos[0]!.description, new RegExp(`^Automatic checkpoint: git branch ${before} → branch try-auto-checkpoints\\.$`));

      // In the tree: its own icon, "automatic", and the auto flag menus can match.
      await until(async () => (await treeText(api)).some((l) => l.trim() === autos[0]!.name), 'the checkpoint in the tree');
      const node = await api.tree.snapshotNode(machine.id, autos[0]!.id);
      assert.ok(node);
      const item = api.tree.getTreeItem(node);
      assert.equal((item.iconPath as vscode.ThemeIcon).id, 'history');
      assert.match(String(item.description), /automatic/);
      assert.match(contextValue(node), /:auto:/);

      // The comparison table marks it after its name.
      const panel = await vscode.commands.executeCommand<ComparePanel>('vmsnap.openComparison', machine.id);
      let names: string[] = [];
      await until(async () => (names = (await panel.probe()).rows.map((r) => r[1] ?? '')).includes(`${autos[0]!.name} auto`), `the marked row among ${JSON.stringify(names)}`);
      panel.dispose();

      // Hidden, once the current state no longer descends from it: only the user's own snapshot shows.
      writeGuest(machine.disks[0]!.path, 2);
      await library.lib.takeSnapshot(machine.id, 'Mine');
      await vscode.commands.executeCommand('vmsnap.hideAutomaticCheckpoints');
      await until(async () => !(await treeText(api)).some((l) => l.trim() === autos[0]!.name), 'the checkpoint hidden');
      assert.ok((await treeText(api)).some((l) => l.trim() === 'Mine'));
      await vscode.commands.executeCommand('vmsnap.showAutomaticCheckpoints');
      await until(async () => (await treeText(api)).some((l) => l.trim() === autos[0]!.name), 'the checkpoint shown again');
    } finally {
      switchBranch(workspace, before);
    }
  });

  it('a task named in vmsnap.autoCheckpoint.beforeTasks checkpoints the dev machine as it starts; other tasks do not', async () => {
    await config('vmsnap.autoCheckpoint').update('runSchedule', false, vscode.ConfigurationTarget.Global);
    await library.lib.editMachine(machine.id, { autoCheckpoints: { everySeconds: 3600, keep: 8 } });
    await config().update('devMachine', 'dev-vm', vscode.ConfigurationTarget.Global);
    await config('vmsnap.autoCheckpoint').update('beforeTasks', ['deploy'], vscode.ConfigurationTarget.Global);
    writeGuest(machine.disks[0]!.path, 4);
    // A task that runs in the extension host (no shell or terminal process needed): it ends as soon as it opens.
    const task = (name: string): vscode.Task =>
      new vscode.Task({ type: 'vmsnap-test' }, vscode.TaskScope.Workspace, name, 'test', new vscode.CustomExecution(async () => {
        const done = new vscode.EventEmitter<number>();
        return { onDidWrite: new vscode.EventEmitter<string>().event, onDidClose: done.event, open: () => setTimeout(() => done.fire(0), 100), close: () => {} };
      }));
    try {
      await vscode.tasks.executeTask(task('lint'));
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal((await library.lib.show(machine.id)).snapshots.length, 0, 'a task not named takes nothing');
      const started: string[] = [];
      const listening = vscode.tasks.onDidStartTask((e) => started.push(e.execution.task.name));
      await vscode.tasks.executeTask(task('deploy'));
      let autos: MachineDetails['snapshots'] = [];
      try {
        await until(async () => (autos = (await library.lib.show(machine.id)).snapshots.filter((s) => s.auto)).length > 0, `a checkpoint as the task starts (tasks started: ${started.join(', ') || 'none'})`, 30_000);
      } finally {
        listening.dispose();
      }
      assert.equal(autos[0]!.description, 'Automatic checkpoint: before the task "deploy".');
    } finally {
      await config('vmsnap.autoCheckpoint').update('beforeTasks', undefined, vscode.ConfigurationTarget.Global);
    }
  });

  it('runs the schedule while the window is open: a machine that changes gets its checkpoints', async () => {
    await config('vmsnap.autoCheckpoint').update('runSchedule', true, vscode.ConfigurationTarget.Global);
    writeGuest(machine.disks[0]!.path, 3);
    await library.lib.editMachine(machine.id, { autoCheckpoints: { everySeconds: 2, keep: 8 } });
    // The schedule sees a new policy within a minute; a settings change makes it look at once.
    await config('vmsnap.autoCheckpoint').update('beforeTasks', ['build'], vscode.ConfigurationTarget.Global);
    try {
      await until(async () => (await library.lib.show(machine.id)).snapshots.some((s) => s.auto), 'the first scheduled checkpoint', 20_000);
      const first = (await library.lib.show(machine.id)).snapshots.filter((s) => s.auto);
      assert.equal(first[0]!.description, 'Automatic checkpoint (every 2s).');
    } finally {
      await config('vmsnap.autoCheckpoint').update('beforeTasks', undefined, vscode.ConfigurationTarget.Global);
    }
  });
});
