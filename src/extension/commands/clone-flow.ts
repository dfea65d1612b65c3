// Cloning a machine, from its current state or from a snapshot: the questions (linked or full, name, folder), then
// the clone. Clone Current State and Clone from Snapshot both end here.
import * as vscode from 'vscode';
import { validateName, type CloneKind, type CloneResult, type MachineDetails } from '../../engine/machine';
import { withProgress } from '../ui/progress';
import type { CommandContext } from './context';
import { nameValidator, uniqueName } from './names';
import { requireOff } from './refusals';

export interface CloneArgs {
  kind?: CloneKind;
  name?: string;
  /** A folder to put the clone in; null or absent with `name`: in the library. */
  dir?: string | null;
}

/** Clone Current State / Clone from Snapshot: quick pick linked or full, name, location. */
export async function cloneFrom(ctx: CommandContext, machine: MachineDetails, snapshotId: string | undefined, args: CloneArgs): Promise<CloneResult | undefined> {
  requireOff(machine, vscode.l10n.t('clone it'));
  const from = snapshotId ? machine.snapshots.find((s) => s.id === snapshotId) : undefined;
  const source = from ? vscode.l10n.t('snapshot “{0}” of “{1}”', from.name, machine.name) : vscode.l10n.t('the current state of “{0}”', machine.name);
  const preferred = vscode.workspace.getConfiguration('vmsnap').get<CloneKind>('defaultCloneKind', 'linked');
  let kind = args.kind;
  if (kind === undefined) {
    const options = [
      {
        label: vscode.l10n.t('$(link) Linked clone'),
        description: vscode.l10n.t('small and instant'),
        detail: from
          ? vscode.l10n.t('Shares the snapshot’s disk layers; “{0}” stays locked while the clone exists.', from.name)
          : vscode.l10n.t('A snapshot of the current state is taken first, and the clone hangs on it (it is then locked).'),
        value: 'linked' as CloneKind,
      },
      {
        label: vscode.l10n.t('$(files) Full clone'),
        description: vscode.l10n.t('independent copy'),
        detail: vscode.l10n.t('Copies the disks: takes time and space, depends on nothing.'),
        value: 'full' as CloneKind,
      },
    ];
    if (preferred === 'full') options.reverse();
    const picked = await ctx.ask.pick(options, { title: vscode.l10n.t('Clone {0}', source), placeHolder: vscode.l10n.t('Linked or full clone?') });
    if (!picked) return undefined;
    kind = picked.value;
  }
  const lib = await ctx.library();
  const taken = (await lib.list()).map((m) => m.name);
  const name =
    args.name ??
    (await ctx.ask.input({
      title: vscode.l10n.t('Clone {0}', source),
      prompt: vscode.l10n.t('Name of the new machine'),
      value: uniqueName(`${machine.name} ${kind === 'linked' ? vscode.l10n.t('linked clone') : vscode.l10n.t('clone')}`, taken),
      validateInput: nameValidator((n) => validateName(n, 'machine name'), taken),
    }));
  if (name === undefined) return undefined;
  let dir: string | undefined;
  if (args.dir !== undefined) dir = args.dir ?? undefined;
  else if (args.name === undefined) {
    const where = await ctx.ask.pick(
      [
        { label: vscode.l10n.t('$(library) In the library'), description: lib.dir, value: 'library' },
        { label: vscode.l10n.t('$(folder) In another folder…'), description: vscode.l10n.t('e.g. on a bigger disk'), value: 'other' },
      ],
      { title: vscode.l10n.t('Where should “{0}” live?', name) },
    );
    if (!where) return undefined;
    if (where.value === 'other') {
      const folder = await ctx.ask.folder(vscode.l10n.t('Folder for “{0}”', name));
      if (!folder) return undefined;
      dir = folder.fsPath;
    }
  }
  const options = { kind, ...(from ? { from: from.id } : {}), ...(dir !== undefined ? { dir } : {}) };
  const result =
    kind === 'full'
      ? await withProgress(vscode.l10n.t('Full clone of {0}', source), (p) => lib.clone(machine.id, name, { ...options, ...p }))
      : await lib.clone(machine.id, name, options);
  if (result.takenSnapshot) {
    void vscode.window.showInformationMessage(
      vscode.l10n.t('Took snapshot “{0}” of “{1}” first: the linked clone “{2}” hangs on it.', result.takenSnapshot.name, machine.name, result.machine.name),
    );
  }
  await ctx.revealMachine(result.machine.id);
  return result;
}
