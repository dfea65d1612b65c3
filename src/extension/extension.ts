// The extension's entry: builds the pieces of one activation and registers them with VS Code.
import * as vscode from 'vscode';
import { CommandContext } from './commands/context';
import { registerCommands } from './commands/register-commands';
import { ConsoleTerminals } from './console/console-terminal';
import { ComparePanel, registerCompareSerializer } from './compare/compare-panel';
import { DevMachineStatus, devMachineSetting } from './dev/dev-machine';
import { LibraryService } from './library-service';
import { MachinesTree } from './tree/machines-tree';
import { ExtensionTestHandle, type TestHandle } from './test-handle';
import { Prompts } from './ui/prompter';

/** Activated lazily: when the Machines view opens, a command runs, or a comparison panel is restored. */
export function activate(context: vscode.ExtensionContext): TestHandle {
  const started = performance.now();
  // Nothing is read from disk here: the library opens on first use (the view asking for rows, a command).
  const service = new LibraryService();
  const tree = new MachinesTree(service, devMachineSetting);
  const view = vscode.window.createTreeView('vmsnap.machines', { treeDataProvider: tree, showCollapseAll: true });
  const prompts = new Prompts();
  const commands = new CommandContext(service, tree, view, prompts, context.extensionUri);
  const status = new DevMachineStatus(service);
  const consoles = new ConsoleTerminals();
  context.subscriptions.push(
    service,
    tree,
    view,
    tree.pollPowerWhileVisible(view),
    commands,
    status,
    consoles,
    ...registerCommands(commands, consoles),
    registerCompareSerializer(service, context.extensionUri),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('vmsnap.devMachine')) tree.refresh();
    }),
    { dispose: () => ComparePanel.disposeAll() },
  );
  const handle = new ExtensionTestHandle(
    { service, tree, view, prompts, commands, status, consoles, comparePanel: () => ComparePanel.current(service.dir) },
    performance.now() - started,
  );
  context.subscriptions.push(handle);
  return handle;
}

export function deactivate(): void {
  // Everything is in context.subscriptions.
}
