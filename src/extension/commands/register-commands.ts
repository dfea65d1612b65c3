// Every command of the extension, registered in one place, and the one place a failing command shows its error.
import * as vscode from 'vscode';
import type { ConsoleTerminals } from '../console/console-terminal';
import type { RemoteSshHolder } from '../ssh/remote-ssh';
import type { CloneArgs } from './clone-flow';
import type { CommandContext, Target } from './context';
import { showSnapshotDetails } from './details-commands';
import { checkpoint, setDevMachine, showDevMachine, type CheckpointArgs } from './dev-machine-commands';
import { newMachineFromImage, type NewFromImageArgs } from './from-image-flow';
import { importImage, newMachine, openComparison, openReadme, showInComparison, type ImportArgs, type NewMachineArgs } from './library-commands';
import { cloneMachine, copyDiskPath, deleteMachine, promoteClone, renameMachine, revealMachine, revealMachineFolder, type DeleteMachineArgs } from './machine-commands';
import { openDisplay } from './display-commands';
import { openConsole, pauseMachine, resumeMachine, startMachine, stopMachine, type StopArgs } from './power-commands';
import { isLibvirtNode, isLibvirtRef, resolveLibvirtRef } from '../tree/libvirt-rows';
import { runOnLibvirtRow } from './libvirt-commands';
import { asksForLibvirt, pickPaletteTarget } from './palette-pick';
import { lockedActions } from './refusals';
import { deleteSelected, renameSelected } from './selected-row';
import { setTreeSetting } from '../tree/view-settings';
import { connectRemoteSsh, openSshTerminal, showSerialLog, type SshCommandArgs } from './ssh-commands';
import {
  cloneSnapshot,
  compareWithCurrent,
  deleteSnapshot,
  editSnapshotDescription,
  renameSnapshot,
  revert,
  takeSnapshot,
  type DeleteSnapshotArgs,
  type RevertArgs,
  type TakeSnapshotArgs,
} from './snapshot-commands';

type Command = (...args: never[]) => unknown;

/**
 * Every command in one place. Each takes what it acts on first (a tree row, a machine reference, or
 * `{machine, snapshot}`; nothing from the palette) and, second, answers that skip its questions (tests, the
 * comparison table, other extensions).
 */
export function registerCommands(ctx: CommandContext, consoles: ConsoleTerminals, remoteSsh: RemoteSshHolder): vscode.Disposable[] {
  const commands: Record<string, Command> = {
    'vmsnap.refresh': () => ctx.tree.refresh(),
    // On anything but a libvirt row (those go to their source below): nothing to retry.
    'vmsnap.retryConnection': () => undefined,
    'vmsnap.showAutomaticCheckpoints': () => setTreeSetting('showAutomaticCheckpoints', true),
    'vmsnap.hideAutomaticCheckpoints': () => setTreeSetting('showAutomaticCheckpoints', false),
    'vmsnap.newMachine': (args?: NewMachineArgs) => newMachine(ctx, args),
    'vmsnap.newMachineFromImage': (args?: NewFromImageArgs) => newMachineFromImage(ctx, args),
    'vmsnap.importImage': (args?: ImportArgs) => importImage(ctx, args),
    'vmsnap.openComparison': (target?: Target) => openComparison(ctx, target),
    'vmsnap.takeSnapshot': (target?: Target, args?: TakeSnapshotArgs) => takeSnapshot(ctx, target, args),
    'vmsnap.cloneMachine': (target?: Target, args?: CloneArgs) => cloneMachine(ctx, target, args),
    'vmsnap.promoteClone': (target?: Target) => promoteClone(ctx, target),
    'vmsnap.renameMachine': (target?: Target, args?: { name?: string }) => renameMachine(ctx, target, args),
    'vmsnap.deleteMachine': (target?: Target, args?: DeleteMachineArgs) => deleteMachine(ctx, target, args),
    'vmsnap.revealMachineFolder': (target?: Target) => revealMachineFolder(ctx, target),
    'vmsnap.copyDiskPath': (target?: Target) => copyDiskPath(ctx, target),
    'vmsnap.startMachine': (target?: Target) => startMachine(ctx, target),
    'vmsnap.stopMachine': (target?: Target, args?: StopArgs) => stopMachine(ctx, target, args),
    'vmsnap.forceStopMachine': (target?: Target) => stopMachine(ctx, target, { force: true }),
    'vmsnap.pauseMachine': (target?: Target) => pauseMachine(ctx, target),
    'vmsnap.resumeMachine': (target?: Target) => resumeMachine(ctx, target),
    'vmsnap.openConsole': (target?: Target) => openConsole(ctx, consoles, target),
    'vmsnap.openDisplay': (target?: Target) => openDisplay(ctx, target),
    'vmsnap.connectRemoteSsh': (target?: Target, args?: SshCommandArgs) => connectRemoteSsh(ctx, remoteSsh, target, args),
    'vmsnap.openSshTerminal': (target?: Target, args?: SshCommandArgs) => openSshTerminal(ctx, target, args),
    'vmsnap.showSerialLog': (target?: Target) => showSerialLog(ctx, target),
    'vmsnap.revert': (target?: Target, args?: RevertArgs) => revert(ctx, target, args),
    'vmsnap.cloneSnapshot': (target?: Target, args?: CloneArgs) => cloneSnapshot(ctx, target, args),
    'vmsnap.renameSnapshot': (target?: Target, args?: { name?: string }) => renameSnapshot(ctx, target, args),
    'vmsnap.editSnapshotDescription': (target?: Target, args?: { description?: string }) => editSnapshotDescription(ctx, target, args),
    'vmsnap.deleteSnapshot': (target?: Target, args?: DeleteSnapshotArgs) => deleteSnapshot(ctx, target, args, false),
    'vmsnap.deleteSnapshotWithChildren': (target?: Target, args?: DeleteSnapshotArgs) => deleteSnapshot(ctx, target, args, true),
    'vmsnap.compareWithCurrent': (target?: Target) => compareWithCurrent(ctx, target),
    'vmsnap.showInComparison': (target?: Target) => showInComparison(ctx, target),
    'vmsnap.showSnapshotDetails': (target?: Target) => showSnapshotDetails(ctx, target),
    'vmsnap.checkpoint': (args?: CheckpointArgs) => checkpoint(ctx, args),
    'vmsnap.setDevMachine': (target?: Target) => setDevMachine(ctx, target),
    'vmsnap.showDevMachine': () => showDevMachine(ctx),
    'vmsnap.revealMachine': (target?: Target) => revealMachine(ctx, target),
    'vmsnap.openReadme': () => openReadme(ctx),
    // F2 and Delete in the Machines view: the selected row's own Rename or Delete, with the same questions.
    'vmsnap.renameSelected': () => renameSelected(ctx),
    'vmsnap.deleteSelected': () => deleteSelected(ctx),
    'vmsnap.compactChains': () => setTreeSetting('tree.compactChains', true),
    'vmsnap.indentEverySnapshot': () => setTreeSetting('tree.compactChains', false),
  };
  return Object.entries(commands).map(([id, run]) => registerCommand(ctx, id, run));
}


/**
 * A command that fails shows its error here, as one message, and returns undefined: whoever ran it (a menu, the
 * palette, the comparison table, a test) gets nothing back, the user reads one sentence, with "Show Clones" next to
 * a refusal that names linked clones. Every run, its duration and its error go to the Output channel.
 */
function registerCommand(ctx: CommandContext, id: string, run: Command): vscode.Disposable {
  return vscode.commands.registerCommand(id, async (...args: unknown[]) => {
    try {
      // A libvirt row's command goes to its source, which does it or refuses with its reason.
      const [target, options] = args;
      if (isLibvirtNode(target)) return await ctx.log.run(id, args, () => runOnLibvirtRow(ctx, id, target, options));
      if (isLibvirtRef(target)) return await ctx.log.run(id, args, async () => runOnLibvirtRow(ctx, id, await resolveLibvirtRef(ctx.tree.libvirt.sourceFor(target.libvirt), target), options));
      // From the palette (no row) with libvirt connections set: the library's machines and the domains that offer it.
      if (target === undefined && asksForLibvirt(ctx, id)) {
        return await ctx.log.run(id, args, async () => {
          const picked = await pickPaletteTarget(ctx, id, vscode.l10n.t('Choose a machine'));
          if (picked === undefined) return undefined;
          if (picked.kind === 'libvirt') return runOnLibvirtRow(ctx, id, picked.node, options);
          return (run as (...args: unknown[]) => unknown)(picked.machineId, ...args.slice(1));
        });
      }
      return await ctx.log.run(id, args, async () => (run as (...args: unknown[]) => unknown)(...args));
    } catch (e) {
      return ctx.fail(e, lockedActions(ctx, e));
    }
  });
}
