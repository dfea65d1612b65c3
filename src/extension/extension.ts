import * as vscode from 'vscode';
import { CommandContext } from './commands/context';
import { registerCommands } from './commands/registerCommands';
import { ConsoleTerminals } from './console/consoleTerminal';
import { ComparePanel, registerCompareSerializer } from './compare/comparePanel';
import { DevMachineStatus, devMachineSetting } from './dev/devMachine';
import { LibraryService } from './libraryService';
import { MachinesTree } from './tree/machinesTree';
import type { TreeNode } from './tree/nodes';
import { Prompts } from './ui/prompter';

/** What activate() returns: the pieces integration tests look at (and other extensions may use). */
export interface VmsnapApi {
  service: LibraryService;
  tree: MachinesTree;
  view: vscode.TreeView<TreeNode>;
  prompts: Prompts;
  commands: CommandContext;
  status: DevMachineStatus;
  /** Open serial-console terminals, by machine id (tests read what the guest printed from them). */
  consoles: ConsoleTerminals;
  comparePanel(): ComparePanel | undefined;
  /** Milliseconds activate() took. */
  activationMs: number;
}

/** Activated lazily: when the Machines view opens, a command runs, or a comparison panel is restored. */
export function activate(context: vscode.ExtensionContext): VmsnapApi {
  const started = performance.now();
  // Nothing is read from disk here: the library opens on first use (the view asking for rows, a command).
  const service = new LibraryService();
  const tree = new MachinesTree(service, devMachineSetting);
  const view = vscode.window.createTreeView('vmsnap.machines', { treeDataProvider: tree, showCollapseAll: true });
  const prompts = new Prompts();
  const commands = new CommandContext(service, tree, view, prompts, context.extensionUri);
  const status = new DevMachineStatus(commands);
  const consoles = new ConsoleTerminals();
  context.subscriptions.push(
    service,
    tree,
    view,
    status,
    consoles,
    ...registerCommands(commands, consoles),
    registerCompareSerializer(service, context.extensionUri),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('vmsnap.devMachine')) tree.refresh();
    }),
    { dispose: () => ComparePanel.disposeAll() },
  );
  return {
    service,
    tree,
    view,
    prompts,
    commands,
    status,
    consoles,
    comparePanel: () => ComparePanel.current(service.dir),
    activationMs: performance.now() - started,
  };
}

export function deactivate(): void {
  // Everything is in context.subscriptions.
}
