// What activate() returns: the handle the extension-host tests (test/extension) hold. Not an API for other
// extensions: it gives the tests what a person sees and does, and nothing of the extension's insides.
import type * as vscode from 'vscode';
import type { CommandContext, ShownError } from './commands/context';
import type { ComparePanel } from './compare/compare-panel';
import type { ConsolePty, ConsoleTerminals } from './console/console-terminal';
import type { DevMachineStatus } from './dev/dev-machine';
import type { RemoteWindowMachine } from './dev/remote-window';
import type { LibraryService } from './library-service';
import type { RemoteSsh, RemoteSshHolder } from './ssh/remote-ssh';
import type { MachinesTree } from './tree/machines-tree';
import type { TreeNode } from './tree/nodes';
import type { Prompter, Prompts } from './ui/prompter';

export type { ShownError };

/** The Machines tree's rows as the view reads them, and how tests find one and make the tree read again. */
export type TreeRows = Pick<
  MachinesTree,
  'onDidChangeTreeData' | 'refresh' | 'getChildren' | 'getTreeItem' | 'resolveTreeItem' | 'getParent' | 'machineNodes' | 'machineNode' | 'snapshotNode' | 'currentNode' | 'descendants'
>;

export interface TestHandle {
  /** Milliseconds activate() took. */
  readonly activationMs: number;
  /** The library folder the settings name now (it follows `vmsnap.libraryFolder`). */
  readonly libraryDir: string;
  readonly tree: TreeRows;
  /** The Machines view: whether it is in sight, and the selected row. */
  readonly view: Pick<vscode.TreeView<TreeNode>, 'visible' | 'selection' | 'description'>;
  /** The text of the dev machine's status-bar item. */
  readonly statusText: string;
  /** Whether the dev machine's status-bar item is shown. */
  readonly statusShown: boolean;
  /** Whether anything asked for the library yet (activation alone must not). */
  readonly libraryOpened: boolean;
  /** The last error a command showed (commands return undefined then); tests clear it before a step. */
  lastError: ShownError | undefined;
  /** The last information message a command showed with its result (e.g. which SSH key a new guest lets in). */
  lastInfo: string | undefined;
  /**
   * Until disposed, Remote-SSH is `remoteSsh` (the real extension cannot be installed offline): a stand-in that
   * says it is installed and records the window it would open.
   */
  useRemoteSsh(remoteSsh: RemoteSsh): vscode.Disposable;
  /**
   * As if this window were a remote one with `authority` (e.g. `ssh-remote+vmsnap-dev-vm`), or a local one
   * (undefined): a real Remote-SSH window cannot be opened in the test host. Resolves once the match is made.
   */
  simulateRemoteAuthority(authority: string | undefined): Promise<void>;
  /** The machine this (remote) window is in, matched from its authority. */
  readonly remoteWindowMachine: string | undefined;
  /** Until disposed, the commands' questions go to `prompter` instead of the user. */
  answerWith(prompter: Prompter): vscode.Disposable;
  /** Reveals and selects a snapshot's row, as a command does after changing it. */
  revealSnapshot(machineId: string, snapshotId: string): Promise<void>;
  /** A machine's open serial-console terminal, with what the guest printed into it. */
  console(machineId: string): { terminal: vscode.Terminal; pty: ConsolePty } | undefined;
  /** The comparison panel of the library open now, when one is shown. */
  comparePanel(): ComparePanel | undefined;
  /** The file VS Code writes the "VM Snapshots" Output channel to. */
  readonly logFile: string;
}

/** The parts of one activation the handle reads from. */
export interface Activation {
  service: LibraryService;
  tree: MachinesTree;
  view: vscode.TreeView<TreeNode>;
  prompts: Prompts;
  commands: CommandContext;
  status: DevMachineStatus;
  consoles: ConsoleTerminals;
  remoteWindow: RemoteWindowMachine;
  remoteSsh: RemoteSshHolder;
  comparePanel(): ComparePanel | undefined;
  logFile: string;
}

export class ExtensionTestHandle implements TestHandle, vscode.Disposable {
  lastError: ShownError | undefined;
  lastInfo: string | undefined;
  private readonly subscriptions: vscode.Disposable[];

  constructor(
    private readonly parts: Activation,
    readonly activationMs: number,
  ) {
    this.subscriptions = [parts.commands.onDidFail((shown) => (this.lastError = shown)), parts.commands.onDidInform((message) => (this.lastInfo = message))];
  }

  useRemoteSsh(remoteSsh: RemoteSsh): vscode.Disposable {
    const holder = this.parts.remoteSsh;
    const previous = holder.current;
    holder.current = remoteSsh;
    return { dispose: () => (holder.current = previous) };
  }

  simulateRemoteAuthority(authority: string | undefined): Promise<void> {
    return this.parts.remoteWindow.simulate(authority);
  }

  get remoteWindowMachine(): string | undefined {
    return this.parts.remoteWindow.machineId;
  }

  get libraryDir(): string {
    return this.parts.service.dir;
  }

  get tree(): TreeRows {
    return this.parts.tree;
  }

  get view(): Pick<vscode.TreeView<TreeNode>, 'visible' | 'selection' | 'description'> {
    return this.parts.view;
  }

  get statusShown(): boolean {
    return this.parts.status.shown;
  }

  get libraryOpened(): boolean {
    return this.parts.service.opened;
  }

  get statusText(): string {
    return this.parts.status.item.text;
  }

  answerWith(prompter: Prompter): vscode.Disposable {
    const prompts = this.parts.prompts;
    const previous = prompts.current;
    prompts.current = prompter;
    return { dispose: () => (prompts.current = previous) };
  }

  revealSnapshot(machineId: string, snapshotId: string): Promise<void> {
    return this.parts.commands.revealSnapshot(machineId, snapshotId);
  }

  console(machineId: string): { terminal: vscode.Terminal; pty: ConsolePty } | undefined {
    return this.parts.consoles.get(machineId);
  }

  comparePanel(): ComparePanel | undefined {
    return this.parts.comparePanel();
  }

  get logFile(): string {
    return this.parts.logFile;
  }

  dispose(): void {
    for (const s of this.subscriptions) s.dispose();
  }
}
