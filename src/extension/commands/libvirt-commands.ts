// The commands on libvirt rows: the same commands as on the library's rows (Revert, Delete, Take Snapshot, Clone, power),
// done through the row's LibvirtSource, and Retry on an unreachable connection. A command the source cannot do
// refuses with the source's reason (SourceError UNSUPPORTED), as the menus do not offer it.
import * as vscode from 'vscode';
import { RENAME_REASON, type LibvirtSource } from '../../engine/libvirt';
import { unsupported, type PowerAction, type SourceSnapshot } from '../../engine/sources';
import { checkpointNaming, setDevMachineSetting } from '../dev/dev-machine';
import { connectionNodes, libvirtChildren, type LibvirtDomainNode, type LibvirtNode, type LibvirtRef, type LibvirtSnapshotNode } from '../tree/libvirt-rows';
import type { CloneArgs } from './clone-flow';
import { confirmDestructive } from './confirm-destructive';
import type { CommandContext } from './context';
import { cloneLibvirt } from './libvirt-clone';
import type { DeleteSnapshotArgs, RevertArgs, TakeSnapshotArgs } from './snapshot-commands';

type LibvirtCommand = (ctx: CommandContext, node: LibvirtNode, args: unknown) => Promise<unknown>;

/** Why a command the library offers is not one a libvirt row can take (the command's id → the reason). */
const NOT_FOR_LIBVIRT: Record<string, string> = {
  'vmsnap.renameSnapshot': RENAME_REASON,
};

const power =
  (action: PowerAction): LibvirtCommand =>
  async (ctx, node) => {
    const { source, domain } = domainOf(ctx, node, 'power');
    const state = await source.power(domain.view.machine.uuid, action);
    ctx.tree.libvirt.reload(node.uri);
    return state;
  };

const COMMANDS: Record<string, LibvirtCommand> = {
  'vmsnap.retryConnection': (ctx, node) => {
    ctx.tree.libvirt.reload(node.uri);
    return ctx.tree.libvirt.read(node.uri);
  },
  'vmsnap.refresh': (ctx, node) => {
    ctx.tree.libvirt.reload(node.uri);
    return Promise.resolve(undefined);
  },
  'vmsnap.takeSnapshot': (ctx, node, args) => takeSnapshot(ctx, node, (args ?? {}) as TakeSnapshotArgs),
  'vmsnap.revert': (ctx, node, args) => revert(ctx, node, (args ?? {}) as RevertArgs),
  'vmsnap.deleteSnapshot': (ctx, node, args) => deleteSnapshot(ctx, node, (args ?? {}) as DeleteSnapshotArgs, false),
  'vmsnap.deleteSnapshotWithChildren': (ctx, node, args) => deleteSnapshot(ctx, node, (args ?? {}) as DeleteSnapshotArgs, true),
  'vmsnap.editSnapshotDescription': (ctx, node, args) => editDescription(ctx, node, (args ?? {}) as { description?: string }),
  'vmsnap.checkpoint': async (ctx, node) => {
    const { domain } = domainOf(ctx, node, 'checkpoint');
    return libvirtCheckpoint(ctx, node.uri, domain.view.machine.uuid, await checkpointNaming());
  },
  'vmsnap.setDevMachine': async (ctx, node) => {
    const { domain } = domainOf(ctx, node, 'setDevMachine');
    await setDevMachineSetting(domain.view.machine.name, node.uri);
    return domain.view.machine.name;
  },
  'vmsnap.cloneMachine': (ctx, node, args) => {
    const { source, domain } = domainOf(ctx, node, 'clone');
    return cloneLibvirt(ctx, source, domain, null, (args ?? {}) as CloneArgs);
  },
  'vmsnap.cloneSnapshot': (ctx, node, args) => {
    const { source, node: row } = snapshotOf(ctx, node, 'clone');
    return cloneLibvirt(ctx, source, row.domain, row.snapshot, (args ?? {}) as CloneArgs);
  },
  'vmsnap.startMachine': power('start'),
  'vmsnap.stopMachine': power('stop'),
  'vmsnap.forceStopMachine': power('force-off'),
  'vmsnap.pauseMachine': power('pause'),
  'vmsnap.resumeMachine': power('resume'),
};

/** Runs command `id` on a libvirt row, or refuses it with the reason its source gives. */
export function runOnLibvirtRow(ctx: CommandContext, id: string, node: LibvirtNode, args: unknown): Promise<unknown> {
  const run = COMMANDS[id];
  if (run !== undefined) return run(ctx, node, args);
  const source = ctx.tree.libvirt.source(node.uri);
  const label = source?.label ?? node.uri;
  throw unsupported(id.replace(/^vmsnap\./, ''), NOT_FOR_LIBVIRT[id] ?? vscode.l10n.t('{0} cannot do this: the command works on machines of the library only.', label));
}

function sourceOf(ctx: CommandContext, node: LibvirtNode): LibvirtSource {
  return ctx.tree.libvirt.sourceFor(node.uri);
}

function domainOf(ctx: CommandContext, node: LibvirtNode, operation: string): { source: LibvirtSource; domain: LibvirtDomainNode } {
  const source = sourceOf(ctx, node);
  switch (node.row) {
    case 'domain':
      return { source, domain: node };
    case 'current':
    case 'snapshot':
      return { source, domain: node.domain };
    case 'connection':
      throw unsupported(operation, vscode.l10n.t('{0} is a connection: choose one of its domains.', source.label));
  }
}

function snapshotOf(ctx: CommandContext, node: LibvirtNode, operation: string): { source: LibvirtSource; node: LibvirtSnapshotNode } {
  if (node.row !== 'snapshot') throw unsupported(operation, vscode.l10n.t('Choose a snapshot of the domain.'));
  return { source: sourceOf(ctx, node), node };
}

async function takeSnapshot(ctx: CommandContext, node: LibvirtNode, args: TakeSnapshotArgs): Promise<unknown> {
  const { source, domain } = domainOf(ctx, node, 'take');
  const m = domain.view.machine;
  const taken = domain.view.snapshots.map((s) => s.name);
  const name =
    args.name ??
    (await ctx.ask.input({
      title: vscode.l10n.t('Take a snapshot of “{0}”', m.name),
      prompt: m.powerState === 'off' ? vscode.l10n.t('Snapshot name') : vscode.l10n.t('Snapshot name (the running state is saved with it)'),
      value: vscode.l10n.t('Snapshot {0}', taken.length + 1),
      validateInput: (v) => (v.trim() === '' ? vscode.l10n.t('Give the snapshot a name.') : taken.includes(v.trim()) ? vscode.l10n.t('“{0}” has a snapshot with this name.', m.name) : undefined),
    }));
  if (name === undefined) return undefined;
  const snapshot = await source.takeSnapshot(m.uuid, name, args.description === undefined ? {} : { description: args.description });
  ctx.tree.libvirt.reload(node.uri);
  return snapshot;
}

/** As our Revert: when the domain's state would be lost, the choice that keeps it (snapshot first) comes first. */
async function revert(ctx: CommandContext, row: LibvirtNode, args: RevertArgs): Promise<unknown> {
  const { source, node } = snapshotOf(ctx, row, 'revert');
  const s = node.snapshot;
  if (s.refusals.revert !== undefined) throw unsupported('revert', s.refusals.revert);
  const m = node.domain.view.machine;
  const running = m.powerState !== 'off';
  let mode = args.mode;
  if (mode === undefined && !vscode.workspace.getConfiguration('vmsnap').get<boolean>('confirmBeforeRevert', true)) mode = 'discard';
  if (mode === undefined) {
    const plain = vscode.l10n.t('Revert');
    const save = running ? vscode.l10n.t('Snapshot Running State, Then Revert') : vscode.l10n.t('Snapshot Current State, Then Revert');
    // libvirt does not say how much changed since the current snapshot: an off domain may have unsaved disk changes.
    const lost = running
      ? vscode.l10n.t('“{0}” is running: reverting ends it, and its memory and unsaved disk changes are thrown away.', m.name)
      : vscode.l10n.t('Changes to the disks of “{0}” that are in no snapshot are thrown away.', m.name);
    const afterwards = s.hasMemory ? vscode.l10n.t('“{0}” was taken while the domain ran: it comes back running where it was.', s.name) : '';
    const chosen = await ctx.ask.confirm(vscode.l10n.t('Revert “{0}” to “{1}”?', m.name, s.name), afterwards === '' ? lost : `${lost} ${afterwards}`, [save, plain]);
    if (chosen === undefined) return undefined;
    mode = chosen === save ? 'save' : 'discard';
  }
  let saveAs: string | undefined;
  if (mode === 'save') {
    const taken = node.domain.view.snapshots.map((x) => x.name);
    saveAs =
      args.saveAs ??
      (await ctx.ask.input({
        title: vscode.l10n.t('Snapshot the current state of “{0}” first', m.name),
        prompt: vscode.l10n.t('Name of the snapshot that keeps the current state'),
        value: vscode.l10n.t('Before reverting to {0}', s.name),
        validateInput: (v) => (v.trim() === '' ? vscode.l10n.t('Give the snapshot a name.') : taken.includes(v.trim()) ? vscode.l10n.t('“{0}” has a snapshot with this name.', m.name) : undefined),
      }));
    if (saveAs === undefined) return undefined;
  }
  try {
    return await source.revert(m.uuid, s.name, saveAs === undefined ? { discardCurrent: true } : { saveCurrentAs: saveAs });
  } finally {
    ctx.tree.libvirt.reload(row.uri);
  }
}

async function deleteSnapshot(ctx: CommandContext, row: LibvirtNode, args: DeleteSnapshotArgs, children: boolean): Promise<unknown> {
  const { source, node } = snapshotOf(ctx, row, 'delete');
  const s = node.snapshot;
  if (s.refusals.delete !== undefined) throw unsupported('delete', s.refusals.delete);
  const m = node.domain.view.machine;
  if (args.confirmed !== true) {
    const question = children ? vscode.l10n.t('Delete “{0}” and the snapshots below it?', s.name) : vscode.l10n.t('Delete snapshot “{0}”?', s.name);
    const detail = children ? vscode.l10n.t('libvirt deletes them from “{0}” for good.', m.name) : vscode.l10n.t('libvirt deletes it from “{0}” for good; the snapshots below it stay.', m.name);
    if (!(await confirmDestructive(ctx, question, detail, vscode.l10n.t('Delete')))) return undefined;
  }
  try {
    return await source.deleteSnapshot(m.uuid, s.name, { children });
  } finally {
    ctx.tree.libvirt.reload(row.uri);
  }
}

async function editDescription(ctx: CommandContext, row: LibvirtNode, args: { description?: string }): Promise<unknown> {
  const { source, node } = snapshotOf(ctx, row, 'describe');
  const description =
    args.description ??
    (await ctx.ask.input({ title: vscode.l10n.t('Description of “{0}”', node.snapshot.name), prompt: vscode.l10n.t('What the snapshot holds'), value: node.snapshot.description }));
  if (description === undefined) return undefined;
  const edited = await source.editSnapshot(node.domain.view.machine.uuid, node.snapshot.name, { description });
  ctx.tree.libvirt.reload(row.uri);
  return edited;
}

/**
 * Checkpoint of a libvirt domain (the dev machine, or a domain row): a snapshot named after the time and git
 * position, then the offer to revert to it.
 */
export async function libvirtCheckpoint(ctx: CommandContext, uri: string, domainRef: string, naming: { name: string; description: string }): Promise<SourceSnapshot> {
  if (domainRef === '') throw new Error(vscode.l10n.t('Name the domain of libvirt at {0} in the setting vmsnap.devMachine.', uri));
  const source = ctx.tree.libvirt.sourceFor(uri);
  const { machine } = await source.view(domainRef, false);
  // libvirt refuses a "/" in a snapshot's name, and git branches often have one.
  const snapshot = await source.takeSnapshot(machine.uuid, naming.name.replaceAll('/', '-'), { description: naming.description });
  ctx.tree.libvirt.reload(uri);
  const revert = vscode.l10n.t('Revert');
  const target: LibvirtRef = { libvirt: uri, machine: machine.uuid, snapshot: snapshot.name };
  void vscode.window.showInformationMessage(vscode.l10n.t('Checkpoint “{0}” of “{1}” taken.', snapshot.name, machine.name), revert).then((chosen) => (chosen === revert ? vscode.commands.executeCommand('vmsnap.revert', target) : undefined));
  return snapshot;
}

/** The tree's row of a domain (by name or UUID) when its connection is one of the tree's, for Show Dev Machine. */
export async function libvirtDomainRow(ctx: CommandContext, uri: string, ref: string): Promise<LibvirtDomainNode | undefined> {
  const root = connectionNodes(ctx.tree.libvirt).find((n) => n.uri === uri);
  if (root === undefined) return undefined;
  const rows = await libvirtChildren(ctx.tree.libvirt, root);
  return rows.find((n): n is LibvirtDomainNode => n.row === 'domain' && (n.view.machine.name === ref || n.view.machine.uuid === ref));
}
