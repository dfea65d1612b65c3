// Commands for the machine the developer works in: Checkpoint (one keystroke), Set Dev Machine, Show Dev Machine.
import * as vscode from 'vscode';
import type { MachineDetails, SnapshotInfo } from '../../engine/machine';
import type { SourceSnapshot } from '../../engine/sources';
import { checkpointNaming, devMachineConnection, devMachineSetting, setDevMachineSetting } from '../dev/dev-machine';
import type { CommandContext, Target } from './context';
import { libvirtCheckpoint, libvirtDomainRow } from './libvirt-commands';
import { machinePickItem } from './pick-items';

export interface CheckpointArgs {
  /** The machine (default: the vmsnap.devMachine setting, else asked). */
  machine?: string;
  /** The libvirt connection (URI) whose domain `machine` names (default: vmsnap.devMachineConnection with the setting's machine). */
  connection?: string;
}

/**
 * Checkpoint: snapshots the dev machine in one keystroke, named from the time (and git branch and commit when the
 * workspace is a repository), then offers Revert and Rename.
 */
export async function checkpoint(ctx: CommandContext, args: CheckpointArgs = {}): Promise<SnapshotInfo | SourceSnapshot | undefined> {
  // A libvirt domain: named by the arguments, or by vmsnap.devMachine with vmsnap.devMachineConnection.
  const setting = devMachineSetting();
  const connection = args.connection ?? (args.machine === undefined && setting !== '' ? devMachineConnection() : '');
  if (connection !== '') return libvirtCheckpoint(ctx, connection, args.machine ?? setting, await checkpointNaming());
  const machine = await devMachine(ctx, args.machine);
  if (!machine) return undefined;
  const { name, description } = await checkpointNaming();
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
}

/**
 * The dev machine: from the argument, the setting, the machine this Remote-SSH window is in, or asked (and then
 * remembered in the workspace settings).
 */
async function devMachine(ctx: CommandContext, ref: string | undefined): Promise<MachineDetails | undefined> {
  const lib = await ctx.library();
  const configured = ref ?? ctx.devMachine();
  if (configured !== '') return lib.show(configured);
  const machines = await lib.list();
  if (machines.length === 0) throw new Error(vscode.l10n.t('The library has no machines yet: create one with “New Machine” first.'));
  const picked = await ctx.ask.pick(machines.map(machinePickItem), { title: vscode.l10n.t('Which machine do you develop in?'), placeHolder: vscode.l10n.t('It becomes the dev machine (setting vmsnap.devMachine)') });
  if (!picked) return undefined;
  await setDevMachineSetting(picked.value.name);
  return lib.show(picked.value.id);
}

/** Set as Dev Machine: the setting names it by name (readable in settings.json). */
export async function setDevMachine(ctx: CommandContext, target: Target) {
  const m = await ctx.machine(target, vscode.l10n.t('Which machine do you develop in?'));
  if (!m) return undefined;
  await setDevMachineSetting(m.name);
  ctx.service.notifyChanged();
  return m.name;
}

/** Show Dev Machine (the status-bar item's click): selects its "You are here"; asks which one when none is set. */
export async function showDevMachine(ctx: CommandContext) {
  const connection = devMachineConnection();
  const domain = devMachineSetting();
  if (connection !== '' && domain !== '') {
    await ctx.select(() => libvirtDomainRow(ctx, connection, domain), true);
    return domain;
  }
  const ref = ctx.devMachine();
  if (ref === '') return vscode.commands.executeCommand('vmsnap.setDevMachine');
  const m = await (await ctx.library()).show(ref);
  await ctx.select(async () => (await ctx.tree.currentNode(m.id)) ?? ctx.tree.machineNode(m.id), true);
  return m.id;
}
