import * as vscode from 'vscode';
import type { MachineDetails, SnapshotInfo } from '../../engine/machine';
import type { CommandContext } from '../commands/context';
import { machinePickItem } from '../commands/context';
import { formatBytes, formatDate } from '../format';
import { powerLabel } from '../tree/machinesTree';
import { gitPosition } from './git';

export function devMachineSetting(): string {
  return vscode.workspace.getConfiguration('vmsnap').get<string>('devMachine', '').trim();
}

/** The status-bar item: "dev-vm · after npm upgrade · +12 MiB" (the machine, the snapshot it is on, unsaved changes). */
export class DevMachineStatus implements vscode.Disposable {
  readonly item = vscode.window.createStatusBarItem('vmsnap.devMachine', vscode.StatusBarAlignment.Left, 50);
  private readonly subscriptions: vscode.Disposable[] = [];
  private updating: Promise<void> = Promise.resolve();

  constructor(private readonly ctx: CommandContext) {
    this.item.name = vscode.l10n.t('Dev Machine');
    this.item.command = 'vmsnap.showDevMachine';
    this.subscriptions.push(
      ctx.service.onDidChange(() => this.update()),
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
    const ref = devMachineSetting();
    if (ref === '') {
      this.item.hide();
      return;
    }
    try {
      const m = await (await this.ctx.library()).show(ref);
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
  }

  dispose(): void {
    this.item.dispose();
    for (const s of this.subscriptions) s.dispose();
  }
}

export interface CheckpointArgs {
  /** The machine (default: the vmsnap.devMachine setting, else asked). */
  machine?: string;
}

/**
 * Checkpoint: snapshots the dev machine in one keystroke, named from the time (and git branch and commit when the
 * workspace is a repository), then offers Revert and Rename.
 */
export async function checkpoint(ctx: CommandContext, args: CheckpointArgs = {}): Promise<SnapshotInfo | undefined> {
  try {
    const machine = await devMachine(ctx, args.machine);
    if (!machine) return undefined;
    const now = new Date();
    const time = formatDate(now.toISOString()).slice(0, 16);
    const git = await gitPosition();
    const short = git?.commit.slice(0, 7);
    const name = git ? `${vscode.l10n.t('Checkpoint')} ${time} · ${git.branch ?? vscode.l10n.t('detached')}@${short}` : `${vscode.l10n.t('Checkpoint')} ${time}`;
    const description = git
      ? vscode.l10n.t('Checkpoint taken {0} while working in {1} on branch {2}, commit {3} ({4}).', formatDate(now.toISOString()), git.root, git.branch ?? vscode.l10n.t('(detached HEAD)'), git.commit, git.subject)
      : vscode.l10n.t('Checkpoint taken {0}.', formatDate(now.toISOString()));
    const snapshot = await (await ctx.library()).takeSnapshot(machine.id, name, { description });
    await ctx.revealSnapshot(machine.id, snapshot.id);
    const revert = vscode.l10n.t('Revert');
    const rename = vscode.l10n.t('Rename');
    void vscode.window.showInformationMessage(vscode.l10n.t('Checkpoint “{0}” of “{1}” taken.', snapshot.name, machine.name), revert, rename).then((chosen) => {
      const target = { machine: machine.id, snapshot: snapshot.id };
      if (chosen === revert) return vscode.commands.executeCommand('vmsnap.revert', target);
      if (chosen === rename) return vscode.commands.executeCommand('vmsnap.renameSnapshot', target);
      return undefined;
    });
    return snapshot;
  } catch (e) {
    return ctx.fail(e);
  }
}

/** The dev machine: from the argument, the setting, or asked (and then remembered in the workspace settings). */
async function devMachine(ctx: CommandContext, ref: string | undefined): Promise<MachineDetails | undefined> {
  const lib = await ctx.library();
  const configured = ref ?? devMachineSetting();
  if (configured !== '') return lib.show(configured);
  const machines = await lib.list();
  if (machines.length === 0) throw new Error(vscode.l10n.t('The library has no machines yet: create one with “New Machine” first.'));
  const picked = await ctx.ask.pick(machines.map(machinePickItem), { title: vscode.l10n.t('Which machine do you develop in?'), placeHolder: vscode.l10n.t('It becomes the dev machine (setting vmsnap.devMachine)') });
  if (!picked) return undefined;
  await setDevMachineSetting(picked.value.name);
  return lib.show(picked.value.id);
}

export async function setDevMachineSetting(name: string): Promise<void> {
  const target = vscode.workspace.workspaceFolders?.length ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
  await vscode.workspace.getConfiguration('vmsnap').update('devMachine', name, target);
}
