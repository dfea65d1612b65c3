// The extension's entry: builds the pieces of one activation and registers them with VS Code.
import * as vscode from 'vscode';
import { CommandContext } from './commands/context';
import { registerCommands } from './commands/register-commands';
import { ConsoleTerminals } from './console/console-terminal';
import { ComparePanel, registerCompareSerializer } from './compare/compare-panel';
import { AutoCheckpoints } from './dev/auto-checkpoints';
import { DisplayPanel } from './display/display-panel';
import { DevMachineStatus, devMachineConnection, devMachineSetting, type DevMachineRef } from './dev/dev-machine';
import { RemoteWindowMachine } from './dev/remote-window';
import { LibraryService } from './library-service';
import { RemoteSshHolder } from './ssh/remote-ssh';
import { MachinesTree } from './tree/machines-tree';
import { ExtensionTestHandle, type TestHandle } from './test-handle';
import { LOG_CHANNEL_NAME } from './ui/operation-log';
import { Prompts } from './ui/prompter';

/** Activated lazily: when the Machines view opens, a command runs, or a comparison panel is restored. */
export function activate(context: vscode.ExtensionContext): TestHandle {
  const started = performance.now();
  // Nothing is read from disk here: the library opens on first use (the view asking for rows, a command).
  const service = new LibraryService();
  // In a Remote-SSH window connected into one of our machines, that machine is the dev machine unless the setting
  // names another (the extension runs on the host side there: extensionKind prefers ui).
  const remoteWindow = new RemoteWindowMachine(service);
  const devMachine = (): DevMachineRef | undefined => {
    const setting = devMachineSetting();
    const connection = devMachineConnection();
    if (setting !== '') return connection === '' ? { ref: setting, from: 'setting' } : { ref: setting, from: 'setting', connection };
    return remoteWindow.machineId === undefined ? undefined : { ref: remoteWindow.machineId, from: 'remote-window' };
  };
  // The library's dev machine ('' when there is none, or when it is a libvirt domain).
  const devMachineRef = (): string => {
    const dev = devMachine();
    return dev === undefined || dev.connection !== undefined ? '' : dev.ref;
  };
  const tree = new MachinesTree(service, devMachineRef);
  const view = vscode.window.createTreeView('vmsnap.machines', { treeDataProvider: tree, showCollapseAll: true });
  // Which folder the view looked in: its path next to the title (when the sidebar is wide enough for it).
  tree.onState = (state) => {
    view.description = state === 'ready' ? '' : tildeHome(service.dir);
    // The welcome views also say in words where the folder came from (a narrow sidebar cuts the description off).
    const configured = vscode.workspace.getConfiguration('vmsnap').get<string>('libraryFolder', '').trim() !== '';
    const source = configured ? 'setting' : (process.env['VMSNAP_LIBRARY'] ?? '') !== '' ? 'env' : 'default';
    void vscode.commands.executeCommand('setContext', 'vmsnap.librarySource', source);
  };
  const prompts = new Prompts();
  const commands = new CommandContext(service, tree, view, prompts, context.extensionUri, devMachineRef);
  const status = new DevMachineStatus(service, devMachine, (uri) => tree.libvirt.sourceFor(uri));
  const consoles = new ConsoleTerminals();
  const remoteSsh = new RemoteSshHolder();
  context.subscriptions.push(
    service,
    remoteWindow,
    tree,
    view,
    tree.pollPowerWhileVisible(view),
    commands,
    status,
    consoles,
    // A libvirt dev machine's status follows the changes made through its connection.
    tree.libvirt.onDidChange(() => void status.update()),
    remoteWindow.onDidChange(() => {
      void status.update();
      tree.refresh();
    }),
    ...registerCommands(commands, consoles, remoteSsh),
    registerCompareSerializer(service, context.extensionUri),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('vmsnap.devMachine') || e.affectsConfiguration('vmsnap.devMachineConnection') || e.affectsConfiguration('vmsnap.showAutomaticCheckpoints')) tree.refresh();
      else if (e.affectsConfiguration('vmsnap.tree.compactChains')) tree.relayout();
    }),
    { dispose: () => ComparePanel.disposeAll() },
    new AutoCheckpoints(service, devMachineRef, remoteWindow.onDidChange),
    { dispose: () => DisplayPanel.disposeAll() },
  );
  const handle = new ExtensionTestHandle(
    { service, tree, view, prompts, commands, status, consoles, remoteWindow, remoteSsh, comparePanel: () => ComparePanel.current(service.dir), logFile: vscode.Uri.joinPath(context.logUri, `${LOG_CHANNEL_NAME}.log`).fsPath },
    performance.now() - started,
  );
  context.subscriptions.push(handle);
  return handle;
}

/** A path under the home folder as `~/…`, as people write it in settings. */
function tildeHome(path: string): string {
  const home = process.env['HOME'] ?? '';
  return home !== '' && (path === home || path.startsWith(`${home}/`)) ? `~${path.slice(home.length)}` : path;
}

export function deactivate(): void {
  // Everything is in context.subscriptions.
}
