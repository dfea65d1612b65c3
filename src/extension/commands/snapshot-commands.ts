// Commands on snapshots: take, revert (VMware's "Go To"), clone from, rename, describe, delete, compare.
import * as vscode from 'vscode';
import { validateName, type MachineDetails, type RevertOptions } from '../../engine/machine';
import { formatBytes, plural } from '../format';
import { withProgress } from '../ui/progress';
import { cloneFrom, type CloneArgs } from './clone-flow';
import { confirmDestructive } from './confirm-destructive';
import type { CommandContext, Target } from './context';
import { nameValidator, uniqueName } from './names';
import { requireUnlocked } from './refusals';

export interface TakeSnapshotArgs {
  name?: string;
  description?: string;
}

/** Take Snapshot: an input box for the name (prefilled, validated), then an optional description. */
export async function takeSnapshot(ctx: CommandContext, target: Target, args: TakeSnapshotArgs = {}) {
  const machine = await ctx.machine(target, vscode.l10n.t('Which machine to snapshot?'));
  if (!machine) return undefined;
  // A running machine's snapshot holds its memory too (the engine pauses it for a few milliseconds).
  const name =
    args.name ??
    (await ctx.ask.input({
      title: vscode.l10n.t('Take Snapshot of “{0}”', machine.name),
      prompt: vscode.l10n.t('Name of the snapshot'),
      value: nextSnapshotName(machine),
      validateInput: nameValidator((n) => validateName(n, 'snapshot name'), machine.snapshots.map((s) => s.name)),
    }));
  if (name === undefined) return undefined;
  const description =
    args.description ??
    (args.name !== undefined
      ? ''
      : ((await ctx.ask.input({
          title: vscode.l10n.t('Take Snapshot of “{0}”', machine.name),
          prompt: vscode.l10n.t('Description (optional): what state the machine is in, why you took it'),
          placeHolder: vscode.l10n.t('e.g. clean install, before the npm upgrade'),
        })) ?? ''));
  const lib = await ctx.library();
  const snapshot = await lib.takeSnapshot(machine.id, name, { description });
  vscode.window.setStatusBarMessage(
    snapshot.hasMemory
      ? vscode.l10n.t('Snapshot “{0}” of “{1}” taken with its running state', snapshot.name, machine.name)
      : vscode.l10n.t('Snapshot “{0}” of “{1}” taken', snapshot.name, machine.name),
    4000,
  );
  await ctx.revealSnapshot(machine.id, snapshot.id);
  return snapshot;
}

export interface RevertArgs {
  /** 'discard': throw the current state's changes away; 'save': snapshot them first (as `saveAs`). */
  mode?: 'discard' | 'save';
  saveAs?: string;
}

/** Revert (VMware's "Go To"): a modal offers "Snapshot current state, then revert" (the default), "Revert", "Cancel". */
export async function revert(ctx: CommandContext, target: Target, args: RevertArgs = {}) {
  const picked = await ctx.snapshot(target, vscode.l10n.t('Revert to which snapshot?'));
  if (!picked) return undefined;
  const { machine, snapshot } = picked;
  const running = machine.powerState !== 'off';
  // What the machine does after the revert: a snapshot holding a running state comes back running.
  const afterwards = snapshot.hasMemory
    ? vscode.l10n.t('“{0}” was taken while the machine ran: it comes back running where it was.', snapshot.name)
    : running
      ? vscode.l10n.t('“{0}” was taken powered off: the machine is powered off.', snapshot.name)
      : '';
  let mode = args.mode;
  const confirm = vscode.workspace.getConfiguration('vmsnap').get<boolean>('confirmBeforeRevert', true);
  if (mode === undefined) {
    // Nothing unsaved (a running machine's memory counts), or the user said not to ask: nothing to decide.
    if ((machine.currentChangedBytes === 0 && !running) || !confirm) mode = 'discard';
    else {
      const plain = vscode.l10n.t('Revert');
      const save = running ? vscode.l10n.t('Snapshot Running State, Then Revert') : vscode.l10n.t('Snapshot Current State, Then Revert');
      const parent = machine.snapshots.find((s) => s.id === machine.current);
      const lost = running
        ? vscode.l10n.t('“{0}” is running: reverting ends it, and its memory and unsaved disk changes are thrown away.', machine.name)
        : parent
          ? vscode.l10n.t('The current state has {0} of changes since “{1}” that are in no snapshot: reverting throws them away.', formatBytes(machine.currentChangedBytes), parent.name)
          : vscode.l10n.t('The current state has {0} of changes that are in no snapshot: reverting throws them away.', formatBytes(machine.currentChangedBytes));
      const chosen = await ctx.ask.confirm(
        vscode.l10n.t('Revert “{0}” to “{1}”?', machine.name, snapshot.name),
        afterwards === '' ? lost : `${lost} ${afterwards}`,
        // The first button is the dialog's default (focused, Enter): the choice that throws nothing away.
        [save, plain],
      );
      if (chosen === undefined) return undefined;
      mode = chosen === save ? 'save' : 'discard';
    }
  }
  let options: RevertOptions = { discardCurrent: true };
  if (mode === 'save') {
    const saveAs =
      args.saveAs ??
      (await ctx.ask.input({
        title: vscode.l10n.t('Snapshot the current state of “{0}” first', machine.name),
        prompt: vscode.l10n.t('Name of the snapshot that keeps the current state'),
        value: vscode.l10n.t('Before reverting to {0}', snapshot.name),
        validateInput: nameValidator((n) => validateName(n, 'snapshot name'), machine.snapshots.map((s) => s.name)),
      }));
    if (saveAs === undefined) return undefined;
    options = { saveCurrentAs: saveAs };
  }
  const lib = await ctx.library();
  const result =
    snapshot.hasMemory || running
      ? await Promise.resolve(
          vscode.window.withProgress(
            {
              location: vscode.ProgressLocation.Notification,
              title: snapshot.hasMemory
                ? vscode.l10n.t('Reverting “{0}” to “{1}”: the machine comes back running…', machine.name, snapshot.name)
                : vscode.l10n.t('Reverting “{0}” to “{1}”: powering it off…', machine.name, snapshot.name),
            },
            () => lib.revert(machine.id, snapshot.id, options),
          ),
        )
      : await lib.revert(machine.id, snapshot.id, options);
  if (result.stateLoadError !== null) void vscode.window.showWarningMessage(result.stateLoadError);
  vscode.window.setStatusBarMessage(
    result.poweredOn
      ? vscode.l10n.t('“{0}” reverted to “{1}” and running again', machine.name, snapshot.name)
      : vscode.l10n.t('“{0}” reverted to “{1}”', machine.name, snapshot.name),
    4000,
  );
  await ctx.revealCurrent(machine.id);
  return result;
}

export async function cloneSnapshot(ctx: CommandContext, target: Target, args: CloneArgs = {}) {
  const picked = await ctx.snapshot(target, vscode.l10n.t('Clone from which snapshot?'));
  if (!picked) return undefined;
  return cloneFrom(ctx, picked.machine, picked.snapshot.id, args);
}

export async function renameSnapshot(ctx: CommandContext, target: Target, args: { name?: string } = {}) {
  const picked = await ctx.snapshot(target, vscode.l10n.t('Rename which snapshot?'));
  if (!picked) return undefined;
  const { machine, snapshot } = picked;
  const name =
    args.name ??
    (await ctx.ask.input({
      title: vscode.l10n.t('Rename snapshot “{0}”', snapshot.name),
      value: snapshot.name,
      validateInput: nameValidator((n) => validateName(n, 'snapshot name'), machine.snapshots.filter((s) => s.id !== snapshot.id).map((s) => s.name)),
    }));
  if (name === undefined || name === snapshot.name) return undefined;
  const edited = await (await ctx.library()).editSnapshot(machine.id, snapshot.id, { name });
  await ctx.revealSnapshot(machine.id, edited.id);
  return edited;
}

export async function editSnapshotDescription(ctx: CommandContext, target: Target, args: { description?: string } = {}) {
  const picked = await ctx.snapshot(target, vscode.l10n.t('Describe which snapshot?'));
  if (!picked) return undefined;
  const { machine, snapshot } = picked;
  const description =
    args.description ??
    (await ctx.ask.input({
      title: vscode.l10n.t('Description of “{0}”', snapshot.name),
      value: snapshot.description,
      prompt: vscode.l10n.t('What state the machine is in, why you took it'),
    }));
  if (description === undefined) return undefined;
  const edited = await (await ctx.library()).editSnapshot(machine.id, snapshot.id, { description });
  await ctx.revealSnapshot(machine.id, edited.id);
  return edited;
}

export interface DeleteSnapshotArgs {
  confirmed?: boolean;
}

/** Delete a snapshot: its changes are merged into what depends on it; the current state's content is unchanged. */
export async function deleteSnapshot(ctx: CommandContext, target: Target, args: DeleteSnapshotArgs = {}, children = false) {
  const picked = await ctx.snapshot(target, children ? vscode.l10n.t('Delete which snapshot and its children?') : vscode.l10n.t('Delete which snapshot?'));
  if (!picked) return undefined;
  const { machine, snapshot } = picked;
  // A running machine keeps running: QEMU merges the layers it reads with block jobs (Cancel works until a merge
  // into a snapshot's layer begins).
  await requireUnlocked(ctx, machine, snapshot.id);
  if (!args.confirmed) {
    const below = descendants(machine.snapshots, snapshot.id);
    const title = children
      ? vscode.l10n.t('Delete “{0}” and {1}?', snapshot.name, plural(below.length, vscode.l10n.t('child snapshot')))
      : vscode.l10n.t('Delete snapshot “{0}”?', snapshot.name);
    const detail = children
      ? vscode.l10n.t('{0} are removed for good. If the current state descends from one of them it keeps its content.', plural(below.length + 1, vscode.l10n.t('snapshot')))
      : vscode.l10n.t('Its changes are merged into what depends on it, so no other state changes; this cannot be undone.');
    const action = children ? vscode.l10n.t('Delete {0}', plural(below.length + 1, vscode.l10n.t('Snapshot'))) : vscode.l10n.t('Delete “{0}”', snapshot.name);
    if (!(await confirmDestructive(ctx, title, detail, action))) return undefined;
  }
  const lib = await ctx.library();
  const result = await withProgress(vscode.l10n.t('Deleting snapshot “{0}” of “{1}”', snapshot.name, machine.name), (p) =>
    lib.deleteSnapshot(machine.id, snapshot.id, { children, ...p }),
  );
  vscode.window.setStatusBarMessage(vscode.l10n.t('Deleted {0}, {1} freed', plural(result.deleted.length, vscode.l10n.t('snapshot')), formatBytes(result.freedBytes)), 4000);
  await ctx.revealCurrent(machine.id);
  return result;
}

/** Compare with Current State: how many bytes the disks changed since the snapshot. */
export async function compareWithCurrent(ctx: CommandContext, target: Target) {
  const picked = await ctx.snapshot(target, vscode.l10n.t('Compare which snapshot with the current state?'));
  if (!picked) return undefined;
  const { machine, snapshot } = picked;
  const diff = await (await ctx.library()).diff(machine.id, snapshot.id, 'current');
  const ranges = diff.disks.reduce((n, d) => n + d.ranges.length, 0);
  void vscode.window.showInformationMessage(
    diff.bytes === 0
      ? vscode.l10n.t('The current state of “{0}” is the same as “{1}”.', machine.name, snapshot.name)
      : vscode.l10n.t('“{0}” → current state of “{1}”: {2} changed, in {3}.', snapshot.name, machine.name, formatBytes(diff.bytes), plural(ranges, vscode.l10n.t('range'))),
  );
  return diff;
}

function descendants(snapshots: { id: string; parentId: string | null }[], id: string): string[] {
  const out: string[] = [];
  const visit = (parent: string): void => {
    for (const s of snapshots) {
      if (s.parentId !== parent) continue;
      out.push(s.id);
      visit(s.id);
    }
  };
  visit(id);
  return out;
}

function nextSnapshotName(machine: MachineDetails): string {
  return uniqueName(vscode.l10n.t('Snapshot {0}', machine.snapshots.length + 1), machine.snapshots.map((s) => s.name));
}
