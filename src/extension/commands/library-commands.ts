// Commands on the library as a whole: new machine, import, the comparison table, the README.
import * as vscode from 'vscode';
import { basename, extname } from 'node:path';
import { validateName } from '../../engine/machine';
import { ComparePanel } from '../compare/compare-panel';
import { withProgress } from '../ui/progress';
import type { CommandContext, Target } from './context';
import { nameValidator } from './names';

const GiB = 1024 ** 3;

export interface NewMachineArgs {
  name?: string;
  /** Bytes; default 16 GiB (asked when the name is asked). */
  diskSize?: number;
}

export async function newMachine(ctx: CommandContext, args: NewMachineArgs = {}) {
  const lib = await ctx.library();
  const taken = (await lib.list()).map((m) => m.name);
  const name =
    args.name ??
    (await ctx.ask.input({
      title: vscode.l10n.t('New Machine'),
      prompt: vscode.l10n.t('Name of the machine'),
      value: 'dev-vm',
      validateInput: nameValidator((n) => validateName(n, 'machine name'), taken),
    }));
  if (name === undefined) return undefined;
  let diskSize = args.diskSize;
  if (diskSize === undefined && args.name === undefined) {
    const size = await ctx.ask.input({
      title: vscode.l10n.t('New Machine “{0}”', name),
      prompt: vscode.l10n.t('Size of its disk in GiB (sparse: it takes space only as it fills)'),
      value: '16',
      validateInput: (v) => (parseGiB(v) === undefined ? vscode.l10n.t('Give a number of GiB from 1 to 65536, e.g. 16 or 0.5.') : undefined),
    });
    if (size === undefined) return undefined;
    diskSize = parseGiB(size);
  }
  const machine = await lib.createMachine(name, diskSize !== undefined ? { diskSize } : {});
  await ctx.revealMachine(machine.id);
  return machine;
}

export function parseGiB(text: string): number | undefined {
  const n = Number(text.trim().replace(/\s*gi?b$/i, ''));
  if (!Number.isFinite(n) || n < 1 / 1024 || n > 65536) return undefined;
  return Math.round((n * GiB) / (1024 * 1024)) * 1024 * 1024;
}

export interface ImportArgs {
  imagePath?: string;
  name?: string;
  /** What happens to a qcow2 image's internal snapshots; default 'convert' (they become snapshots). */
  internalSnapshots?: 'flatten' | 'convert';
}

/** Import Disk Image: a qcow2 or raw image becomes a machine (the image itself is not changed). */
export async function importImage(ctx: CommandContext, args: ImportArgs = {}) {
  const imagePath =
    args.imagePath ?? (await ctx.ask.file(vscode.l10n.t('Import a disk image'), { [vscode.l10n.t('Disk images')]: ['qcow2', 'img', 'raw'], [vscode.l10n.t('All files')]: ['*'] }))?.fsPath;
  if (imagePath === undefined) return undefined;
  const lib = await ctx.library();
  const taken = (await lib.list()).map((m) => m.name);
  const name =
    args.name ??
    (await ctx.ask.input({
      title: vscode.l10n.t('Import {0}', basename(imagePath)),
      prompt: vscode.l10n.t('Name of the machine'),
      value: basename(imagePath, extname(imagePath)),
      validateInput: nameValidator((n) => validateName(n, 'machine name'), taken),
    }));
  if (name === undefined) return undefined;
  const result = await withProgress(vscode.l10n.t('Importing {0}', basename(imagePath)), (p) =>
    lib.importMachine(name, imagePath, { internalSnapshots: args.internalSnapshots ?? 'convert', ...p }),
  );
  if (result.internalSnapshots.length > 0) {
    void vscode.window.showInformationMessage(
      result.convertedSnapshots
        ? vscode.l10n.t('Imported “{0}” with its {1} internal snapshots as snapshots.', result.machine.name, result.internalSnapshots.length)
        : vscode.l10n.t('Imported the current state of “{0}”; its {1} internal snapshots were left out.', result.machine.name, result.internalSnapshots.length),
    );
  }
  await ctx.revealMachine(result.machine.id);
  return result;
}

/** Open Comparison Table: the machine from the row, else the tree's selection, else the first machine. */
export async function openComparison(ctx: CommandContext, target: Target) {
  const t = target ?? ctx.view.selection[0];
  const machineId = t === undefined ? null : ((await ctx.machine(t))?.id ?? null);
  return await ComparePanel.show(ctx.service, ctx.extensionUri, machineId);
}

export async function showInComparison(ctx: CommandContext, target: Target) {
  const picked = await ctx.snapshot(target, vscode.l10n.t('Show which snapshot?'));
  if (!picked) return undefined;
  return await ComparePanel.show(ctx.service, ctx.extensionUri, picked.machine.id, picked.snapshot.id);
}

export async function openReadme(ctx: CommandContext) {
  await vscode.commands.executeCommand('markdown.showPreview', vscode.Uri.joinPath(ctx.extensionUri, 'README.md'));
}
