// Commands on a machine as a whole: clone, promote, rename, delete, and where its files are.
import * as vscode from 'vscode';
import { basename } from 'node:path';
import { isMachineError, validateName, type CloneKind, type ExportedLibvirtDomain, type Library } from '../../engine/machine';
import { formatBytes, plural } from '../format';
import { withProgress } from '../ui/progress';
import { cloneFrom, type CloneArgs } from './clone-flow';
import { chooseDestructive, confirmDestructive } from './confirm-destructive';
import type { CommandContext, Target } from './context';
import { nameValidator } from './names';
import { requireOff } from './refusals';

export async function cloneMachine(ctx: CommandContext, target: Target, args: CloneArgs = {}) {
  const machine = await ctx.machine(target, vscode.l10n.t('Which machine to clone?'));
  if (!machine) return undefined;
  return cloneFrom(ctx, machine, undefined, args);
}

/** Promote to Full Clone: copies what a linked clone borrows, so it depends on nothing (and unlocks the source). */
export async function promoteClone(ctx: CommandContext, target: Target) {
  const machine = await ctx.machine(target, vscode.l10n.t('Which linked clone to make independent?'));
  if (!machine) return undefined;
  if (machine.clonedFrom?.kind !== 'linked') {
    throw new Error(vscode.l10n.t('“{0}” is not a linked clone: it already depends on nothing.', machine.name));
  }
  requireOff(machine, vscode.l10n.t('promote it'));
  const lib = await ctx.library();
  const promoted = await withProgress(vscode.l10n.t('Promoting “{0}” to a full clone', machine.name), (p) => lib.promote(machine.id, p));
  vscode.window.setStatusBarMessage(vscode.l10n.t('“{0}” is now a full clone', promoted.name), 4000);
  await ctx.revealMachine(promoted.id);
  return promoted;
}

export async function renameMachine(ctx: CommandContext, target: Target, args: { name?: string } = {}) {
  const machine = await ctx.machine(target, vscode.l10n.t('Which machine to rename?'));
  if (!machine) return undefined;
  const lib = await ctx.library();
  const taken = (await lib.list()).filter((m) => m.id !== machine.id).map((m) => m.name);
  const name =
    args.name ??
    (await ctx.ask.input({
      title: vscode.l10n.t('Rename “{0}”', machine.name),
      value: machine.name,
      validateInput: nameValidator((n) => validateName(n, 'machine name'), taken),
    }));
  if (name === undefined || name === machine.name) return undefined;
  const renamed = await lib.editMachine(machine.id, { name });
  await ctx.revealMachine(renamed.id);
  return renamed;
}

export interface DeleteMachineArgs {
  /** Skip the modal (tests, or a caller that asked already). */
  confirmed?: boolean;
  withClones?: boolean;
  /** With confirmed: what becomes of a libvirt domain exported from the machine (the engine's DeleteMachineOptions). */
  libvirtDomains?: 'undefine' | 'keep';
}

export async function deleteMachine(ctx: CommandContext, target: Target, args: DeleteMachineArgs = {}) {
  const machine = await ctx.machine(target, vscode.l10n.t('Which machine to delete?'));
  if (!machine) return undefined;
  requireOff(machine, vscode.l10n.t('delete it'));
  const lib = await ctx.library();
  let withClones = args.withClones ?? false;
  let libvirtDomains = args.libvirtDomains;
  if (!args.confirmed) {
    const all = await lib.list();
    const clones = dependants(machine.id, all);
    const exported = await exportedDomains(lib, machine.id, clones.length > 0);
    const size = machine.snapshots.reduce((n, s) => n + s.sizeBytes, machine.currentSizeBytes);
    const deleteIt = vscode.l10n.t('Delete “{0}”', machine.name);
    const deleteAll = vscode.l10n.t('Delete with {0}', plural(clones.length, vscode.l10n.t('Clone')));
    const removed =
      clones.length > 0
        ? vscode.l10n.t(
            'Linked clones depend on it: {0}. They are deleted with it. {1} and {2} on disk are removed; this cannot be undone.',
            clones.map((c) => `“${c.name}”`).join(', '),
            plural(machine.snapshots.length, vscode.l10n.t('snapshot')),
            formatBytes(size),
          )
        : vscode.l10n.t('Its disks, {0} and {1} on disk are removed; this cannot be undone.', plural(machine.snapshots.length, vscode.l10n.t('snapshot')), formatBytes(size));
    const plain = clones.length > 0 ? deleteAll : deleteIt;
    const question = vscode.l10n.t('Delete machine “{0}”?', machine.name);
    if (exported.domains.length > 0) {
      const named = exported.domains.map((d) => vscode.l10n.t('“{0}” on {1}', d.domain, d.connection)).join(', ');
      const runs = exported.domains.some((d) => d.powerState !== 'off') ? ` ${vscode.l10n.t('It is running: shut it off first.')}` : '';
      const chosen = await chooseDestructive(ctx, question, [
        { label: plain, detail: `${removed} ${vscode.l10n.t('It is exported to libvirt as domain {0}, which stays defined and will point at missing files.', named)}`, value: 'keep' as const },
        { label: vscode.l10n.t('Delete Machine and libvirt Domain'), detail: `${removed} ${vscode.l10n.t('Its libvirt domain {0} is undefined too (its disks were this machine’s).', named)}${runs}`, value: 'undefine' as const },
      ]);
      if (chosen === undefined) return undefined;
      libvirtDomains = chosen;
    } else {
      const unreadable = exported.unreadable === null ? '' : ` ${exported.unreadable}`;
      if (!(await confirmDestructive(ctx, question, `${removed}${unreadable}`, plain))) return undefined;
      // Asked knowing the connection cannot be read: go on without it.
      if (exported.unreadable !== null) libvirtDomains = 'keep';
    }
    withClones = clones.length > 0;
  }
  const result = await lib.deleteMachine(machine.id, { withClones, ...(libvirtDomains === undefined ? {} : { libvirtDomains }) });
  ctx.service.notifyChanged();
  const undefinedToo = result.undefinedDomains.length === 0 ? '' : ` ${vscode.l10n.t('and libvirt domain {0}', result.undefinedDomains.map((d) => `“${d.domain}”`).join(', '))}`;
  vscode.window.setStatusBarMessage(vscode.l10n.t('Deleted {0}', result.deleted.map((d) => `“${d.name}”`).join(', ')) + undefinedToo, 4000);
  return result;
}

/** The libvirt domains exported from the machines a delete removes, or why their connection cannot be read. */
async function exportedDomains(lib: Library, machineId: string, withClones: boolean): Promise<{ domains: ExportedLibvirtDomain[]; unreadable: string | null }> {
  try {
    return { domains: await lib.exportedDomains(machineId, { withClones }), unreadable: null };
  } catch (e) {
    if (!isMachineError(e) || e.detail?.kind !== 'libvirt-unreachable') throw e;
    const d = e.detail;
    return { domains: [], unreadable: vscode.l10n.t('Whether it is still exported to libvirt as domain “{0}” on {1} cannot be checked: {2}. That domain, if it still exists, is left and will point at missing files.', d.domain, d.connection, d.reason) };
  }
}

/** Reveal Machine Folder: the OS file manager on a desktop; in a browser (code-server), the path to copy. */
export async function revealMachineFolder(ctx: CommandContext, target: Target) {
  const machine = await ctx.machine(target);
  if (!machine) return undefined;
  const uri = vscode.Uri.file(machine.folder);
  if (vscode.env.uiKind === vscode.UIKind.Desktop && vscode.env.remoteName === undefined) {
    await vscode.commands.executeCommand('revealFileInOS', uri);
  } else {
    const copy = vscode.l10n.t('Copy Path');
    const open = vscode.l10n.t('Open machine.json');
    void vscode.window.showInformationMessage(vscode.l10n.t('“{0}” lives in {1}', machine.name, machine.folder), copy, open).then(async (chosen) => {
      if (chosen === copy) await vscode.env.clipboard.writeText(machine.folder);
      if (chosen === open) await vscode.window.showTextDocument(vscode.Uri.joinPath(uri, 'machine.json'));
    });
  }
  return machine.folder;
}

/** Copy Current Disk Path: the top layer QEMU boots from (`-drive file=…`). */
export async function copyDiskPath(ctx: CommandContext, target: Target) {
  const machine = await ctx.machine(target);
  if (!machine) return undefined;
  const path = await (await ctx.library()).diskPath(machine.id);
  await vscode.env.clipboard.writeText(path);
  vscode.window.setStatusBarMessage(vscode.l10n.t('Copied {0}', basename(path)), 4000);
  return path;
}

/** Show Machine: from a linked clone under its snapshot to the clone's own row. */
export async function revealMachine(ctx: CommandContext, target: Target) {
  const machine = await ctx.machine(target);
  if (!machine) return undefined;
  await ctx.select(() => ctx.tree.machineNode(machine.id), true);
  return machine.id;
}

/** Machines that hang on `machineId`, directly or through other linked clones. */
function dependants(machineId: string, all: { id: string; name: string; clonedFrom: { machineId: string; kind: CloneKind } | null }[]) {
  const out: { id: string; name: string }[] = [];
  const visit = (id: string): void => {
    for (const m of all) {
      if (m.clonedFrom?.machineId === id && m.clonedFrom.kind === 'linked' && !out.some((o) => o.id === m.id)) {
        out.push(m);
        visit(m.id);
      }
    }
  };
  visit(machineId);
  return out;
}
