import * as vscode from 'vscode';
import type { ConsoleTerminals } from '../console/consoleTerminal';
import { checkpoint, setDevMachineSetting, devMachineSetting, type CheckpointArgs } from '../dev/devMachine';
import type { CommandContext, Target } from './context';
import { importImage, newMachine, openComparison, openReadme, showInComparison, type ImportArgs, type NewMachineArgs } from './libraryCommands';
import {
  cloneMachine,
  copyDiskPath,
  deleteMachine,
  promoteClone,
  renameMachine,
  revealMachine,
  revealMachineFolder,
  takeSnapshot,
  type CloneArgs,
  type DeleteMachineArgs,
  type TakeSnapshotArgs,
} from './machineCommands';
import { openConsole, pauseMachine, resumeMachine, startMachine, stopMachine, type StopArgs } from './powerCommands';
import {
  cloneSnapshot,
  compareWithCurrent,
  deleteSnapshot,
  editSnapshotDescription,
  renameSnapshot,
  revert,
  type DeleteSnapshotArgs,
  type RevertArgs,
} from './snapshotCommands';

/**
 * Every command in one place. Each takes what it acts on first (a tree row, a machine reference, or
 * `{machine, snapshot}`; nothing from the palette) and, second, answers that skip its questions (tests, the
 * comparison table, other extensions).
 */
export function registerCommands(ctx: CommandContext, consoles: ConsoleTerminals): vscode.Disposable[] {
  const commands: Record<string, (...args: never[]) => unknown> = {
    'vmsnap.refresh': () => ctx.tree.refresh(),
    'vmsnap.newMachine': (args?: NewMachineArgs) => newMachine(ctx, args),
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
    'vmsnap.revert': (target?: Target, args?: RevertArgs) => revert(ctx, target, args),
    'vmsnap.cloneSnapshot': (target?: Target, args?: CloneArgs) => cloneSnapshot(ctx, target, args),
    'vmsnap.renameSnapshot': (target?: Target, args?: { name?: string }) => renameSnapshot(ctx, target, args),
    'vmsnap.editSnapshotDescription': (target?: Target, args?: { description?: string }) => editSnapshotDescription(ctx, target, args),
    'vmsnap.deleteSnapshot': (target?: Target, args?: DeleteSnapshotArgs) => deleteSnapshot(ctx, target, args, false),
    'vmsnap.deleteSnapshotWithChildren': (target?: Target, args?: DeleteSnapshotArgs) => deleteSnapshot(ctx, target, args, true),
    'vmsnap.compareWithCurrent': (target?: Target) => compareWithCurrent(ctx, target),
    'vmsnap.showInComparison': (target?: Target) => showInComparison(ctx, target),
    'vmsnap.checkpoint': (args?: CheckpointArgs) => checkpoint(ctx, args),
    'vmsnap.setDevMachine': async (target?: Target) => {
      try {
        const m = await ctx.machine(target, vscode.l10n.t('Which machine do you develop in?'));
        if (!m) return undefined;
        await setDevMachineSetting(m.name);
        ctx.service.notifyChanged();
        return m.name;
      } catch (e) {
        return ctx.fail(e);
      }
    },
    'vmsnap.showDevMachine': async () => {
      const ref = devMachineSetting();
      if (ref === '') return vscode.commands.executeCommand('vmsnap.setDevMachine');
      try {
        const m = await (await ctx.library()).show(ref);
        await ctx.select(async () => (await ctx.tree.currentNode(m.id)) ?? ctx.tree.machineNode(m.id), true);
        return m.id;
      } catch (e) {
        return ctx.fail(e);
      }
    },
    'vmsnap.revealMachine': (target?: Target) => revealMachine(ctx, target),
    'vmsnap.openReadme': () => openReadme(ctx),
  };
  return Object.entries(commands).map(([id, run]) => vscode.commands.registerCommand(id, run as (...args: unknown[]) => unknown));
}
