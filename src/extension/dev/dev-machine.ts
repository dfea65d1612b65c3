// The machine the developer works in: the setting that names it, and its status-bar item.
import * as vscode from 'vscode';
import { formatBytes, formatDate } from '../format';
import { powerLabel } from '../labels';
import type { LibraryService } from '../library-service';

export function devMachineSetting(): string {
  return vscode.workspace.getConfiguration('vmsnap').get<string>('devMachine', '').trim();
}

/** The dev machine and why: the setting names it, or this Remote-SSH window is connected into it. */
export interface DevMachineRef {
  ref: string;
  from: 'setting' | 'remote-window';
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

  dispose(): void {
    this.item.dispose();
    for (const s of this.subscriptions) s.dispose();
  }
}

/** Remembers the dev machine in the workspace's settings (the user's when no folder is open). */
export async function setDevMachineSetting(name: string): Promise<void> {
  const target = vscode.workspace.workspaceFolders?.length ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
  await vscode.workspace.getConfiguration('vmsnap').update('devMachine', name, target);
}
