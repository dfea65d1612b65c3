import * as vscode from 'vscode';
import { basename } from 'node:path';
import { validateName, type CloneKind, type CloneResult, type MachineDetails } from '../../engine/machine';
import { formatBytes, plural } from '../format';
import { withProgress } from '../ui/progress';
import { nameValidator, type CommandContext, type Target } from './context';

export interface TakeSnapshotArgs {
  name?: string;
  description?: string;
}

/** Take Snapshot: an input box for the name (prefilled, validated), then an optional description. */
export async function takeSnapshot(ctx: CommandContext, target: Target, args: TakeSnapshotArgs = {}) {
  try {
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
  } catch (e) {
    return ctx.fail(e);
  }
}

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

export async function cloneMachine(ctx: CommandContext, target: Target, args: CloneArgs = {}) {
  try {
    const machine = await ctx.machine(target, vscode.l10n.t('Which machine to clone?'));
    if (!machine) return undefined;
    return await cloneFrom(ctx, machine, undefined, args);
  } catch (e) {
    return ctx.fail(e);
  }
}

/** Promote to Full Clone: copies what a linked clone borrows, so it depends on nothing (and unlocks the source). */
export async function promoteClone(ctx: CommandContext, target: Target) {
  try {
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
  } catch (e) {
    return ctx.fail(e);
  }
}

export async function renameMachine(ctx: CommandContext, target: Target, args: { name?: string } = {}) {
  try {
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
  } catch (e) {
    return ctx.fail(e);
  }
}

export interface DeleteMachineArgs {
  /** Skip the modal (tests, or a caller that asked already). */
  confirmed?: boolean;
  withClones?: boolean;
}

export async function deleteMachine(ctx: CommandContext, target: Target, args: DeleteMachineArgs = {}) {
  try {
    const machine = await ctx.machine(target, vscode.l10n.t('Which machine to delete?'));
    if (!machine) return undefined;
    requireOff(machine, vscode.l10n.t('delete it'));
    const lib = await ctx.library();
    let withClones = args.withClones ?? false;
    if (!args.confirmed) {
      const all = await lib.list();
      const clones = dependants(machine.id, all);
      const size = machine.snapshots.reduce((n, s) => n + s.sizeBytes, machine.currentSizeBytes);
      const deleteIt = vscode.l10n.t('Delete');
      const deleteAll = vscode.l10n.t('Delete with {0}', plural(clones.length, vscode.l10n.t('Clone')));
      const detail =
        clones.length > 0
          ? vscode.l10n.t(
              'Linked clones depend on it: {0}. They are deleted with it. {1} and {2} on disk are removed; this cannot be undone.',
              clones.map((c) => `“${c.name}”`).join(', '),
              plural(machine.snapshots.length, vscode.l10n.t('snapshot')),
              formatBytes(size),
            )
          : vscode.l10n.t('Its disks, {0} and {1} on disk are removed; this cannot be undone.', plural(machine.snapshots.length, vscode.l10n.t('snapshot')), formatBytes(size));
      const chosen = await ctx.ask.confirm(vscode.l10n.t('Delete machine “{0}”?', machine.name), detail, [clones.length > 0 ? deleteAll : deleteIt]);
      if (chosen === undefined) return undefined;
      withClones = clones.length > 0;
    }
    const result = await lib.deleteMachine(machine.id, { withClones });
    ctx.service.notifyChanged();
    vscode.window.setStatusBarMessage(vscode.l10n.t('Deleted {0}', result.deleted.map((d) => `“${d.name}”`).join(', ')), 4000);
    return result;
  } catch (e) {
    return ctx.fail(e, lockedActions(ctx, e));
  }
}

/** Reveal Machine Folder: the OS file manager on a desktop; in a browser (code-server), the path to copy. */
export async function revealMachineFolder(ctx: CommandContext, target: Target) {
  try {
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
  } catch (e) {
    return ctx.fail(e);
  }
}

/** Copy Current Disk Path: the top layer QEMU boots from (`-drive file=…`). */
export async function copyDiskPath(ctx: CommandContext, target: Target) {
  try {
    const machine = await ctx.machine(target);
    if (!machine) return undefined;
    const path = await (await ctx.library()).diskPath(machine.id);
    await vscode.env.clipboard.writeText(path);
    vscode.window.setStatusBarMessage(vscode.l10n.t('Copied {0}', basename(path)), 4000);
    return path;
  } catch (e) {
    return ctx.fail(e);
  }
}

/** Show Machine: from a linked clone under its snapshot to the clone's own row. */
export async function revealMachine(ctx: CommandContext, target: Target) {
  try {
    const machine = await ctx.machine(target);
    if (!machine) return undefined;
    await ctx.select(() => ctx.tree.machineNode(machine.id), true);
    return machine.id;
  } catch (e) {
    return ctx.fail(e);
  }
}

/** "Show Clones" next to a refusal naming linked clones: selects the first of them in the tree (the message names all). */
export function lockedActions(ctx: CommandContext, e: unknown) {
  const code = typeof e === 'object' && e !== null && 'code' in e ? (e as { code: unknown }).code : undefined;
  if (code !== 'LOCKED_BY_CLONES') return [];
  return [
    {
      title: vscode.l10n.t('Show Clones'),
      run: async () => {
        const all = await ctx.tree.machineNodes();
        const names = (e as { candidates?: readonly string[] }).candidates ?? [];
        const clones = all.filter((n) => names.some((c) => c === n.machine.id || c.includes(n.machine.id) || c === n.machine.name || c.startsWith(`${n.machine.name} `) || c.includes(`"${n.machine.name}"`)));
        if (clones[0]) await ctx.select(async () => clones[0], true);
      },
    },
  ];
}

export function requireOff(machine: MachineDetails, what: string): void {
  if (machine.powerState !== 'off') {
    throw new Error(vscode.l10n.t('“{0}” is {1}: power it off to {2}.', machine.name, machine.powerState === 'paused' ? vscode.l10n.t('paused') : vscode.l10n.t('running'), what));
  }
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

function nextSnapshotName(machine: MachineDetails): string {
  return uniqueName(vscode.l10n.t('Snapshot {0}', machine.snapshots.length + 1), machine.snapshots.map((s) => s.name));
}

function uniqueName(base: string, taken: string[]): string {
  if (!taken.includes(base)) return base;
  for (let i = 2; ; i++) if (!taken.includes(`${base} ${i}`)) return `${base} ${i}`;
}
