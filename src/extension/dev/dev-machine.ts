// The machine the developer works in: the settings that name it (a library machine, or a libvirt domain when
// vmsnap.devMachineConnection names its connection), and its status-bar item.
import * as vscode from 'vscode';
import type { LibvirtSource } from '../../engine/libvirt';
import { formatBytes, formatDate } from '../format';
import { gitPosition } from './git';
import { powerLabel } from '../labels';
import type { LibraryService } from '../library-service';

export function devMachineSetting(): string {
  return vscode.workspace.getConfiguration('vmsnap').get<string>('devMachine', '').trim();
}

/** The libvirt connection (URI) whose domain vmsnap.devMachine names, or '' when it names a library machine. */
export function devMachineConnection(): string {
  return vscode.workspace.getConfiguration('vmsnap').get<string>('devMachineConnection', '').trim();
}

/** A checkpoint's name and description: the time, and the git branch and commit when the workspace is a repository. */
export async function checkpointNaming(): Promise<{ name: string; description: string }> {
  const now = new Date();
  const time = formatDate(now.toISOString()).slice(0, 16);
  const git = await gitPosition();
  const short = git?.commit.slice(0, 7);
  const name = git ? `${vscode.l10n.t('Checkpoint')} ${time} · ${git.branch ?? vscode.l10n.t('detached')}@${short}` : `${vscode.l10n.t('Checkpoint')} ${time}`;
  const description = git
    ? vscode.l10n.t('Checkpoint taken {0} while working in {1} on branch {2}, commit {3} ({4}).', formatDate(now.toISOString()), git.root, git.branch ?? vscode.l10n.t('(detached HEAD)'), git.commit, git.subject)
    : vscode.l10n.t('Checkpoint taken {0}.', formatDate(now.toISOString()));
  return { name, description };
}

/** The dev machine and why: the setting names it, or this Remote-SSH window is connected into it. */
export interface DevMachineRef {
  ref: string;
  from: 'setting' | 'remote-window';
  /** A libvirt domain's connection (its URI); absent for a library machine. */
  connection?: string;
}

/** The status-bar item: "dev-vm · after npm upgrade · +12 MiB" (the machine, the snapshot it is on, unsaved changes). */
export class DevMachineStatus implements vscode.Disposable {
  readonly item = vscode.window.createStatusBarItem('vmsnap.devMachine', vscode.StatusBarAlignment.Left, 50);
  private readonly subscriptions: vscode.Disposable[] = [];
  private updating: Promise<void> = Promise.resolve();
  /** Whether the item is in the status bar now (the API cannot tell). */
  shown = false;

  constructor(
    private readonly service: LibraryService,
    /** The dev machine, or undefined for none. */
    private readonly devMachine: () => DevMachineRef | undefined,
    /** The source of a libvirt dev machine's connection. */
    private readonly libvirt: (uri: string) => LibvirtSource,
  ) {
    this.item.name = vscode.l10n.t('Dev Machine');
    this.item.command = 'vmsnap.showDevMachine';
    this.subscriptions.push(
      service.onDidChange(() => this.update()),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration('vmsnap')) this.update();
      }),
    );
    this.update();
  }

  update(): Promise<void> {
    this.updating = this.updating.then(() => this.render());
    return this.updating;
  }

  private async render(): Promise<void> {
    const dev = this.devMachine();
    if (dev === undefined) {
      this.item.hide();
      this.shown = false;
      return;
    }
    const ref = dev.ref;
    if (dev.connection !== undefined) return this.renderDomain(ref, dev.connection);
    try {
      const m = await (await this.service.library()).show(ref);
      const on = m.snapshots.find((s) => s.id === m.current);
      const parts = [
        m.name,
        m.powerState === 'off' ? '' : powerLabel(m.powerState),
        on ? on.name : vscode.l10n.t('no snapshot'),
        m.currentChangedBytes > 0 ? `+${formatBytes(m.currentChangedBytes)}` : vscode.l10n.t('no changes'),
      ].filter((p) => p !== '');
      this.item.text = `$(${m.powerState === 'running' ? 'vm-running' : m.powerState === 'paused' ? 'debug-pause' : 'vm'}) ${parts.join(' · ')}`;
      const t = new vscode.MarkdownString(undefined, true);
      t.appendMarkdown(
        `**${vscode.l10n.t('Dev machine')}: ${m.name}** — ${powerLabel(m.powerState)}\n\n` +
          (dev.from === 'remote-window' ? `$(remote) ${vscode.l10n.t('This window is connected into it over SSH.')}\n\n` : '') +
          (on ? vscode.l10n.t('On snapshot “{0}” ({1}), {2} changed since.', on.name, formatDate(on.createdAt), formatBytes(m.currentChangedBytes)) : vscode.l10n.t('No snapshot yet.')) +
          `\n\n$(record) ${vscode.l10n.t('Checkpoint it: {0}', 'Ctrl+Alt+Shift+S')}`,
      );
      this.item.tooltip = t;
      this.item.backgroundColor = undefined;
    } catch {
      this.item.text = `$(warning) ${ref}`;
      this.item.tooltip = vscode.l10n.t('The dev machine “{0}” is not in the library: change the setting vmsnap.devMachine.', ref);
      this.item.backgroundColor = new vscode.ThemeColor('statusBarItem.warningBackground');
    }
    this.item.show();
    this.shown = true;
  }

  /** A libvirt domain as dev machine: its name, power and current snapshot (libvirt does not say what changed since). */
  private async renderDomain(ref: string, uri: string): Promise<void> {
    const source = this.libvirt(uri);
    try {
      const { machine: m, snapshots } = await source.view(ref);
      const on = snapshots.find((s) => s.id === m.currentSnapshot);
      const parts = [m.name, m.powerState === 'off' ? '' : powerLabel(m.powerState), on ? on.name : vscode.l10n.t('no snapshot')].filter((p) => p !== '');
      this.item.text = `$(${m.powerState === 'running' ? 'vm-running' : m.powerState === 'paused' ? 'debug-pause' : 'vm'}) ${parts.join(' · ')}`;
      const t = new vscode.MarkdownString(undefined, true);
      t.appendMarkdown(
        `**${vscode.l10n.t('Dev machine')}: ${m.name}** — ${powerLabel(m.powerState)}\n\n${source.label}\n\n` +
          (on ? vscode.l10n.t('On snapshot “{0}” ({1}).', on.name, formatDate(on.createdAt)) : vscode.l10n.t('No snapshot yet.')) +
          `\n\n$(record) ${vscode.l10n.t('Checkpoint it: {0}', 'Ctrl+Alt+Shift+S')}`,
      );
      this.item.tooltip = t;
      this.item.backgroundColor = undefined;
    } catch (e) {
      this.item.text = `$(warning) ${ref}`;
      this.item.tooltip = vscode.l10n.t('The dev machine “{0}” cannot be read from libvirt at {1} (settings vmsnap.devMachine, vmsnap.devMachineConnection): {2}', ref, uri, e instanceof Error ? e.message : String(e));
      this.item.backgroundColor = new vscode.ThemeColor('statusBarItem.warningBackground');
    }
    this.item.show();
    this.shown = true;
  }

  dispose(): void {
    this.item.dispose();
    for (const s of this.subscriptions) s.dispose();
  }
}

/**
 * Remembers the dev machine in the workspace's settings (the user's when no folder is open): a library machine, or a
 * domain of the libvirt connection `connection`.
 */
export async function setDevMachineSetting(name: string, connection = ''): Promise<void> {
  const target = vscode.workspace.workspaceFolders?.length ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
  const config = vscode.workspace.getConfiguration('vmsnap');
  // The connection first: the name alone must never be read against the wrong source.
  if (connection !== '' || devMachineConnection() !== '') await config.update('devMachineConnection', connection === '' ? undefined : connection, target);
  await config.update('devMachine', name, target);
}
