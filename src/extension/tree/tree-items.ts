// How each row of the Machines tree looks: label, icon, description and tooltip, from the row's data.
import * as vscode from 'vscode';
import { basename, join } from 'node:path';
import type { GuestInfo, MachineDetails, PowerState } from '../../engine/machine';
import { formatBytes, formatDate, formatRelativeTime, plural } from '../format';
import { powerLabel } from '../labels';
import { libvirtTreeItem } from './libvirt-rows';
import { cloneKind, contextValue, type BrokenNode, type CloneKindLabel, type CloneRefNode, type CurrentNode, type MachineNode, type SnapshotNode, type TreeNode } from './nodes';

export function treeItem(node: TreeNode): vscode.TreeItem {
  switch (node.kind) {
    case 'machine':
      return machineItem(node);
    case 'snapshot':
      return snapshotItem(node);
    case 'current':
      return currentItem(node);
    case 'cloneRef':
      return cloneRefItem(node);
    case 'broken':
      return brokenItem(node);
    case 'libvirt':
      return libvirtTreeItem(node);
  }
}

function machineItem(node: MachineNode): vscode.TreeItem {
  const m = node.machine;
  const item = new vscode.TreeItem(m.name, node.expandAtFirst === true ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.Collapsed);
  item.id = node.id;
  item.contextValue = contextValue(node);
  const kind = cloneKind(m);
  const power = m.powerState === 'off' ? '' : powerLabel(m.powerState);
  item.iconPath = machineIcon(m.powerState, kind);
  const ssh = node.access?.sshPort != null ? vscode.l10n.t('ssh :{0}', node.access.sshPort) : '';
  const parts = [
    kind === 'linked' ? vscode.l10n.t('linked clone') : kind === 'full' ? vscode.l10n.t('full clone') : '',
    power,
    ssh,
    node.access?.failure ? vscode.l10n.t('stopped by QEMU') : '',
    plural(m.snapshotCount, vscode.l10n.t('snapshot')),
    node.sizeBytes === undefined ? '' : formatBytes(node.sizeBytes),
    node.isDevMachine ? vscode.l10n.t('dev machine') : '',
  ];
  item.description = parts.filter((p) => p !== '').join(' · ');
  // No tooltip here: VS Code asks resolveTreeItem for it on hover only while it is undefined, and the hovered
  // row's tooltip says what only the machine's details know (the cloud image it runs on).
  return item;
}

/** A machine row's tooltip; with its details (when hovered), also the cloud image it runs on and its guest user. */
export function machineTooltip(node: MachineNode, details?: MachineDetails, guest: GuestInfo | null = null): vscode.MarkdownString {
  const m = node.machine;
  const kind = cloneKind(m);
  const t = new vscode.MarkdownString(undefined, true);
  t.appendMarkdown(`$(${machineIcon(m.powerState, kind).id}) **${escape(m.name)}** — ${powerLabel(m.powerState)}\n\n`);
  if (node.access?.failure) t.appendMarkdown(`$(error) ${escape(node.access.failure)}\n\n`);
  if (m.note) t.appendMarkdown(`${escape(m.note)}\n\n`);
  const access = node.access;
  const user = access?.sshUser ?? details?.guest?.user ?? null;
  t.appendMarkdown(
    [
      `${vscode.l10n.t('Kind')}: ${kind === 'plain' ? vscode.l10n.t('machine') : kind === 'linked' ? vscode.l10n.t('linked clone') : vscode.l10n.t('full clone')}`,
      details?.baseImage ? `${vscode.l10n.t('Base image')}: ${escape(details.baseImage.source)} (sha256 ${details.baseImage.sha256.slice(0, 12)}…)` : '',
      access?.sshPort != null
        ? `SSH: \`127.0.0.1:${access.sshPort}\`${user !== null ? ` ${vscode.l10n.t('as')} ${escape(user)}` : ''}`
        : user !== null
          ? `${vscode.l10n.t('Guest user')}: ${escape(user)}`
          : '',
      `${vscode.l10n.t('Created')}: ${formatDate(m.createdAt)}`,
      `${vscode.l10n.t('Snapshots')}: ${m.snapshotCount}`,
      node.sizeBytes === undefined ? '' : `${vscode.l10n.t('Size on disk')}: ${formatBytes(node.sizeBytes)}`,
      `${vscode.l10n.t('CPUs')}: ${m.cpus} · ${vscode.l10n.t('Memory')}: ${m.memoryMiB} MiB · MAC ${m.macAddress}`,
      `UUID ${m.id}`,
      `${vscode.l10n.t('Folder')}: \`${m.folder}\``,
      ...guestLines(guest),
    ]
      .filter((l) => l !== '')
      .join('  \n'),
  );
  return t;
}

/** The guest as its agent describes it (running machines only). */
function guestLines(g: GuestInfo | null): string[] {
  if (g === null) return [];
  if (g.agent !== 'answering') return [`$(plug) ${vscode.l10n.t('Guest agent: not answering')}`];
  const addresses = g.addresses.filter((a) => a.family === 'ipv4' || !a.address.startsWith('fe80:')).map((a) => escape(a.address));
  return [
    `$(vm) ${vscode.l10n.t('Guest')}: ${escape(g.hostname ?? '-')}${g.os === null ? '' : ` · ${escape(g.os)}`}`,
    addresses.length === 0 ? '' : `${vscode.l10n.t('Addresses')}: ${addresses.join(', ')}`,
  ];
}

function snapshotItem(node: SnapshotNode): vscode.TreeItem {
  const s = node.snapshot;
  const item = new vscode.TreeItem(
    s.name,
    node.children.length > 0 ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None,
  );
  item.id = node.id;
  item.contextValue = contextValue(node);
  const directlyLocked = s.lockedBy.length > 0;
  // A snapshot holding a running state gets its own icon: reverting to it brings the machine back running; an
  // automatic checkpoint its own too, so the user's own snapshots stand out among them.
  item.iconPath = new vscode.ThemeIcon(
    directlyLocked ? 'lock' : s.auto ? 'history' : s.hasMemory ? 'play-circle' : 'device-camera',
    node.isCurrentParent ? new vscode.ThemeColor('charts.blue') : s.hasMemory ? new vscode.ThemeColor('charts.green') : undefined,
  );
  const runningMark = s.hasMemory ? vscode.l10n.t('running state') : s.takenWhileRunning ? vscode.l10n.t('disks only, taken while running') : '';
  item.description = [formatRelativeTime(s.createdAt), formatBytes(s.sizeBytes), s.auto ? vscode.l10n.t('automatic') : '', runningMark, directlyLocked ? vscode.l10n.t('locked') : '']
    .filter((p) => p !== '')
    .join(' · ');
  // A thumbnail is read from disk only when the row is hovered (resolveTreeItem): the tooltip stays unset till then.
  if (s.thumbnail === null) item.tooltip = snapshotTooltip(node, null);
  return item;
}

/**
 * A snapshot row's tooltip, with the picture of the screen at the snapshot (a data: URI) when it has one, else a
 * line saying why there is none.
 */
export function snapshotTooltip(node: SnapshotNode, picture: string | null): vscode.MarkdownString {
  const s = node.snapshot;
  const childSnapshots = node.children.filter((c) => c.kind === 'snapshot');
  const clones = node.children.filter((c): c is CloneRefNode => c.kind === 'cloneRef');
  const hasCurrent = node.children.some((c) => c.kind === 'current');
  const dependants = [
    childSnapshots.length > 0 ? plural(childSnapshots.length, vscode.l10n.t('child snapshot')) : '',
    clones.length > 0 ? vscode.l10n.t('linked clones {0}', clones.map((c) => `“${c.clone.name}”`).join(', ')) : '',
    hasCurrent ? vscode.l10n.t('the current state') : '',
  ].filter((p) => p !== '');
  const t = new vscode.MarkdownString(undefined, true);
  t.appendMarkdown(`$(device-camera) **${escape(s.name)}**${node.isCurrentParent ? ` — ${vscode.l10n.t('the current state descends from it')}` : ''}\n\n`);
  if (picture !== null) t.appendMarkdown(`![${vscode.l10n.t('The screen at the snapshot')}](${picture})\n\n`);
  else t.appendMarkdown(`$(device-desktop) *${escape(vscode.l10n.t('No picture of the screen: the machine had not shown one (not run yet, or no display).'))}*\n\n`);
  if (s.description) t.appendMarkdown(`${escape(s.description)}\n\n`);
  t.appendMarkdown(
    [
      `${vscode.l10n.t('Created')}: ${formatDate(s.createdAt)}${s.takenWhileRunning ? ` (${vscode.l10n.t('while running')})` : ''}`,
      s.hasMemory
        ? `$(play-circle) ${vscode.l10n.t('Holds the memory of the running machine: reverting to it brings the machine back running where it was.')}`
        : s.takenWhileRunning
          ? `${vscode.l10n.t('Disks only (no memory): reverting to it leaves the machine off; it boots from these disks.')} ${
              s.quiesced ? vscode.l10n.t('Quiesced: the guest agent froze its file systems.') : vscode.l10n.t('Not quiesced (crash-consistent).')
            }`
          : '',
      s.memoryBytes > 0
        ? `${vscode.l10n.t('Size on disk')}: ${formatBytes(s.sizeBytes)} (${vscode.l10n.t('disk {0} + memory {1}', formatBytes(s.sizeBytes - s.memoryBytes), formatBytes(s.memoryBytes))})`
        : `${vscode.l10n.t('Size on disk')}: ${formatBytes(s.sizeBytes)} (${vscode.l10n.t('its own changes')})`,
      `${vscode.l10n.t('Path')}: ${escape(node.path)}`,
      `${vscode.l10n.t('Depends on it')}: ${dependants.length > 0 ? dependants.join(', ') : vscode.l10n.t('nothing')}`,
      node.locked ? `$(lock) ${vscode.l10n.t('Locked: a linked clone hangs on it or on a snapshot below it; delete or promote the clone first.')}` : '',
      s.auto ? `$(history) ${vscode.l10n.t('Automatic checkpoint: the retention may delete it; rename it or give it a description to keep it.')}` : '',
      `${vscode.l10n.t('Id')}: \`${s.id}\``,
    ]
      .filter((l) => l !== '')
      .join('  \n'),
  );
  return t;
}

function currentItem(node: CurrentNode): vscode.TreeItem {
  const m = node.machine;
  const item = new vscode.TreeItem(vscode.l10n.t('You are here'), vscode.TreeItemCollapsibleState.None);
  item.id = node.id;
  item.contextValue = contextValue(node);
  item.iconPath = new vscode.ThemeIcon('location', new vscode.ThemeColor('charts.blue'));
  const parent = node.parent.kind === 'snapshot' ? node.parent.snapshot.name : undefined;
  // With no snapshot above it (a new machine, a full clone), its data is all of the disk, not a change since one.
  item.description =
    parent === undefined
      ? m.currentChangedBytes > 0
        ? vscode.l10n.t('{0} of data, no snapshot yet', formatBytes(m.currentChangedBytes))
        : vscode.l10n.t('empty, no snapshot yet')
      : m.currentChangedBytes > 0
        ? vscode.l10n.t('+{0} since the snapshot', formatBytes(m.currentChangedBytes))
        : vscode.l10n.t('no changes');
  const t = new vscode.MarkdownString(undefined, true);
  t.appendMarkdown(`$(location) **${vscode.l10n.t('You are here')}** — ${vscode.l10n.t('the current state of {0}', escape(m.name))}\n\n`);
  t.appendMarkdown(
    [
      parent ? `${vscode.l10n.t('Descends from')}: ${escape(parent)}` : vscode.l10n.t('Descends from no snapshot'),
      parent ? `${vscode.l10n.t('Changed since')}: ${formatBytes(m.currentChangedBytes)}` : `${vscode.l10n.t('Data in no snapshot')}: ${formatBytes(m.currentChangedBytes)}`,
      `${vscode.l10n.t('Size on disk')}: ${formatBytes(m.currentSizeBytes)}`,
      ...m.disks.map((d) => `${vscode.l10n.t('Disk {0}', d.index)}: \`${d.path}\``),
    ].join('  \n'),
  );
  item.tooltip = t;
  return item;
}

function cloneRefItem(node: CloneRefNode): vscode.TreeItem {
  const c = node.clone;
  const item = new vscode.TreeItem(c.name, vscode.TreeItemCollapsibleState.None);
  item.id = node.id;
  item.contextValue = contextValue(node);
  item.iconPath = new vscode.ThemeIcon('vm-connect');
  item.description = vscode.l10n.t('linked clone');
  item.tooltip = new vscode.MarkdownString(
    `$(vm-connect) **${escape(c.name)}** — ${vscode.l10n.t('a linked clone hanging on “{0}”: the snapshot stays locked while it exists.', escape(node.parent.snapshot.name))}`,
    true,
  );
  item.command = { command: 'vmsnap.revealMachine', title: vscode.l10n.t('Show Machine'), arguments: [node] };
  return item;
}

/** The machine's icon: its power state when on, else what kind of machine it is. */
function machineIcon(power: PowerState, kind: CloneKindLabel): vscode.ThemeIcon {
  if (power === 'running') return new vscode.ThemeIcon('vm-running', new vscode.ThemeColor('charts.green'));
  if (power === 'paused') return new vscode.ThemeIcon('debug-pause', new vscode.ThemeColor('charts.yellow'));
  return new vscode.ThemeIcon(kind === 'linked' ? 'vm-connect' : kind === 'full' ? 'vm-outline' : 'vm');
}

function brokenItem(node: BrokenNode): vscode.TreeItem {
  const item = new vscode.TreeItem(basename(node.folder), vscode.TreeItemCollapsibleState.None);
  item.id = node.id;
  item.contextValue = contextValue(node);
  item.iconPath = new vscode.ThemeIcon('warning', new vscode.ThemeColor('list.errorForeground'));
  item.description = vscode.l10n.t('unreadable');
  const t = new vscode.MarkdownString(undefined, true);
  t.appendMarkdown(`$(warning) **${escape(vscode.l10n.t('This machine cannot be read'))}**\n\n`);
  t.appendText(`${node.message}\n\n`);
  t.appendMarkdown(escape(vscode.l10n.t('Fix machine.json (or restore it from a backup), or move the folder out of the library. The tree follows as soon as the file changes.')));
  item.tooltip = t;
  // A click opens the manifest that needs fixing.
  item.command = { command: 'vscode.open', title: vscode.l10n.t('Open machine.json'), arguments: [vscode.Uri.file(join(node.folder, 'machine.json'))] };
  return item;
}

function escape(text: string): string {
  return text.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, (c) => `\\${c}`);
}
