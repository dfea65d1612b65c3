// The Machines tree's rows for libvirt connections: one root per connection (or one error row with Retry), its
// domains, their snapshot trees from libvirt's parent links with "You are here", how they look, and the flags
// (capabilities, per-snapshot refusals) the menus match in `contextValue`.
import * as vscode from 'vscode';
import type { DomainView, LibvirtSource } from '../../engine/libvirt';
import { treeOf } from '../../engine/libvirt';
import { CAPABILITY_NAMES, type CloneKind, type SourceCapabilities, type SourceSnapshot, type SourceSnapshotNode } from '../../engine/sources';
import { devMachineConnection, devMachineSetting } from '../dev/dev-machine';
import { formatDate, formatRelativeTime, plural } from '../format';
import { powerLabel } from '../labels';
import type { ConnectionRead, LibvirtConnections } from '../sources/libvirt-connections';

export type LibvirtNode = LibvirtConnectionNode | LibvirtDomainNode | LibvirtSnapshotNode | LibvirtCurrentNode;

export interface LibvirtConnectionNode {
  kind: 'libvirt';
  row: 'connection';
  id: string;
  uri: string;
  label: string;
  capabilities: SourceCapabilities;
  /** The last read's outcome; undefined while the first read runs. */
  read: ConnectionRead | undefined;
}

export interface LibvirtDomainNode {
  kind: 'libvirt';
  row: 'domain';
  id: string;
  uri: string;
  view: DomainView;
  capabilities: SourceCapabilities;
  parent: LibvirtConnectionNode;
  expandAtFirst: boolean;
  /** The settings name it as the dev machine (vmsnap.devMachine with vmsnap.devMachineConnection). */
  isDevMachine: boolean;
}

export interface LibvirtSnapshotNode {
  kind: 'libvirt';
  row: 'snapshot';
  id: string;
  uri: string;
  domain: LibvirtDomainNode;
  snapshot: SourceSnapshot;
  isCurrentParent: boolean;
  children: LibvirtNode[];
  parent: LibvirtDomainNode | LibvirtSnapshotNode;
}

/** "You are here" under libvirt's current snapshot. */
export interface LibvirtCurrentNode {
  kind: 'libvirt';
  row: 'current';
  id: string;
  uri: string;
  domain: LibvirtDomainNode;
  parent: LibvirtDomainNode | LibvirtSnapshotNode;
}

export function isLibvirtNode(x: unknown): x is LibvirtNode {
  return typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'libvirt' && typeof (x as { uri?: unknown }).uri === 'string';
}

/**
 * A libvirt domain, or one of its snapshots, named in a command's arguments rather than by a row:
 * `{ libvirt: URI, machine: NAME_OR_UUID, snapshot?: NAME }` (the dev machine's checkpoint passes one to Revert).
 */
export interface LibvirtRef {
  libvirt: string;
  machine: string;
  snapshot?: string;
}

export function isLibvirtRef(x: unknown): x is LibvirtRef {
  return typeof x === 'object' && x !== null && typeof (x as { libvirt?: unknown }).libvirt === 'string' && typeof (x as { machine?: unknown }).machine === 'string';
}

/** The row a reference names, read from its source now (the rows a tree would show for it). */
export async function resolveLibvirtRef(source: LibvirtSource, ref: LibvirtRef): Promise<LibvirtNode> {
  const connection: LibvirtConnectionNode = { kind: 'libvirt', row: 'connection', id: libvirtConnectionId(source.uri), uri: source.uri, label: source.label, capabilities: source.capabilities, read: undefined };
  const view = await source.view(ref.machine);
  const [domain] = domainNodes(connection, [view]);
  if (domain === undefined || ref.snapshot === undefined) return domain ?? connection;
  const find = (nodes: LibvirtNode[]): LibvirtSnapshotNode | undefined => {
    for (const n of nodes) {
      if (n.row !== 'snapshot') continue;
      if (n.snapshot.name === ref.snapshot) return n;
      const below = find(n.children);
      if (below !== undefined) return below;
    }
    return undefined;
  };
  const found = find(domainChildren(domain));
  if (found === undefined) throw new Error(vscode.l10n.t('“{0}” has no snapshot “{1}” (libvirt at {2}).', view.machine.name, ref.snapshot, source.uri));
  return found;
}

export const libvirtConnectionId = (uri: string): string => `libvirt/${uri}`;
export const libvirtDomainId = (uri: string, uuid: string): string => `libvirt/${uri}/${uuid}`;
export const libvirtSnapshotId = (uri: string, uuid: string, name: string): string => `libvirt/${uri}/${uuid}/snapshot/${name}`;
export const libvirtCurrentId = (uri: string, uuid: string): string => `libvirt/${uri}/${uuid}/current`;

/** A connection's domains, each expanded the first time when there are few of them. */
export function domainNodes(parent: LibvirtConnectionNode, domains: readonly DomainView[]): LibvirtDomainNode[] {
  const dev = devMachineConnection() === parent.uri ? devMachineSetting() : '';
  return [...domains]
    .sort((a, b) => a.machine.name.localeCompare(b.machine.name))
    .map((view) => ({
      kind: 'libvirt',
      row: 'domain',
      id: libvirtDomainId(parent.uri, view.machine.uuid),
      uri: parent.uri,
      view,
      capabilities: parent.capabilities,
      parent,
      expandAtFirst: domains.length <= 3,
      isDevMachine: dev !== '' && (dev === view.machine.name || dev === view.machine.uuid),
    }));
}

/** A domain's snapshot rows, from libvirt's own parent links and current snapshot. */
export function domainChildren(domain: LibvirtDomainNode): LibvirtNode[] {
  const uuid = domain.view.machine.uuid;
  const build = (nodes: SourceSnapshotNode[], parent: LibvirtDomainNode | LibvirtSnapshotNode): LibvirtNode[] =>
    nodes.map((n): LibvirtNode => {
      if (n.kind === 'current' || n.snapshot === null) return { kind: 'libvirt', row: 'current', id: libvirtCurrentId(domain.uri, uuid), uri: domain.uri, domain, parent };
      const node: LibvirtSnapshotNode = { kind: 'libvirt', row: 'snapshot', id: libvirtSnapshotId(domain.uri, uuid, n.snapshot.name), uri: domain.uri, domain, snapshot: n.snapshot, isCurrentParent: n.isCurrentParent, children: [], parent };
      node.children = build(n.children, node);
      return node;
    });
  return build(treeOf(domain.view).roots, domain);
}

/** Every snapshot in a row's subtree (itself first). */
function subtreeSnapshots(node: LibvirtSnapshotNode): SourceSnapshot[] {
  return [node.snapshot, ...node.children.flatMap((c) => (c.row === 'snapshot' ? subtreeSnapshots(c) : []))];
}

/**
 * Why the source cannot make a clone of `kind` from the domain's current state or from snapshot `from` (undefined:
 * it can). The rows' linkedClone and fullClone flags say the same to the menus.
 */
export function libvirtCloneRefusal(domain: LibvirtDomainNode, kind: CloneKind, from: SourceSnapshot | null): string | undefined {
  const label = domain.parent.label;
  if (kind === 'linked' && !domain.capabilities.linkedClones) return vscode.l10n.t('{0} cannot make linked clones.', label);
  if (kind === 'full' && !domain.capabilities.fullClones) return vscode.l10n.t('{0} cannot make full clones.', label);
  if (from !== null) return kind === 'linked' ? from.refusals.linkedClone : from.refusals.fullClone;
  // The source's own refusal for this domain (a remote disk in no storage pool), with its reason.
  const refused = domain.view.cloneRefusals[kind];
  if (refused !== undefined) return refused;
  // A linked clone of the current state freezes it in an external snapshot, after which libvirt 9.0 could not
  // revert the domain's internal snapshots any more: the engine refuses it, the menus do not offer it.
  if (kind === 'linked' && domain.view.snapshots.some((s) => s.location === 'internal')) {
    return vscode.l10n.t('“{0}” has internal snapshots, and a linked clone of its current state needs an external snapshot of it, after which libvirt 9.0 could no longer revert them: make a full clone.', domain.view.machine.name);
  }
  return undefined;
}

/**
 * What the menus match (`viewItem =~ /^libvirtSnapshot:.*:revert:/`): the row's type, then flags each followed by
 * ':'. Domains carry the source's capabilities by name; snapshots the operations their source does not refuse.
 */
export function libvirtContextValue(node: LibvirtNode): string {
  const flags: string[] = [];
  const capabilities = (c: SourceCapabilities): string[] => CAPABILITY_NAMES.filter((n) => c[n]);
  switch (node.row) {
    case 'connection':
      flags.push(node.read === undefined ? 'loading' : node.read.ok ? 'ready' : 'error');
      break;
    case 'domain':
      flags.push(node.view.machine.powerState, ...capabilities(node.capabilities));
      flags.push(...cloneFlags(node, null));
      if (node.isDevMachine) flags.push('dev');
      if (node.view.snapshots.length > 0) flags.push('snapshots');
      break;
    case 'snapshot': {
      const s = node.snapshot;
      flags.push(node.domain.view.machine.powerState);
      if (node.isCurrentParent) flags.push('current');
      if (s.hasMemory) flags.push('memory');
      if (s.refusals.revert === undefined) flags.push('revert');
      if (s.refusals.delete === undefined) flags.push('delete');
      const hasChildren = node.children.some((c) => c.row === 'snapshot');
      if (hasChildren) flags.push('children');
      if (hasChildren && subtreeSnapshots(node).every((x) => x.refusals.delete === undefined)) flags.push('deleteChildren');
      if (node.domain.capabilities.describeSnapshot) flags.push('describe');
      if (node.domain.capabilities.renameSnapshot && s.refusals.rename === undefined) flags.push('rename');
      flags.push(...cloneFlags(node.domain, s));
      break;
    }
    case 'current':
      flags.push(node.domain.view.machine.powerState, ...cloneFlags(node.domain, null));
      break;
  }
  const type = { connection: 'libvirtConnection', domain: 'libvirtDomain', snapshot: 'libvirtSnapshot', current: 'libvirtCurrent' }[node.row];
  return `${type}:${flags.map((f) => `${f}:`).join('')}`;
}

export function libvirtTreeItem(node: LibvirtNode): vscode.TreeItem {
  const item = new vscode.TreeItem('', vscode.TreeItemCollapsibleState.None);
  item.id = node.id;
  item.contextValue = libvirtContextValue(node);
  switch (node.row) {
    case 'connection':
      item.label = node.label;
      if (node.read !== undefined && !node.read.ok) {
        // Unreachable: this one row says why; Retry (inline and in its menu) reads it again.
        item.iconPath = new vscode.ThemeIcon('error', new vscode.ThemeColor('errorForeground'));
        item.description = node.read.message;
        item.tooltip = new vscode.MarkdownString(`**${escape(node.label)}**\n\n${escape(node.read.message)}`);
      } else {
        item.iconPath = new vscode.ThemeIcon('server-environment');
        item.collapsibleState = vscode.TreeItemCollapsibleState.Expanded;
        item.description = node.read === undefined ? vscode.l10n.t('reading…') : plural(node.read.domains.length, vscode.l10n.t('domain'));
        // Markdown, not a string: a string tooltip becomes the row's accessible name, which must start with its label.
        item.tooltip = new vscode.MarkdownString(`**${escape(node.label)}**\n\n\`${node.uri}\``);
      }
      break;
    case 'domain': {
      const m = node.view.machine;
      item.label = m.name;
      item.collapsibleState = node.view.snapshots.length === 0 ? vscode.TreeItemCollapsibleState.None : node.expandAtFirst ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.Collapsed;
      item.iconPath = new vscode.ThemeIcon(m.powerState === 'running' ? 'vm-running' : m.powerState === 'paused' ? 'debug-pause' : 'vm', m.powerState === 'running' ? new vscode.ThemeColor('charts.green') : undefined);
      item.description = [node.isDevMachine ? vscode.l10n.t('dev machine') : '', m.powerState === 'off' ? '' : powerLabel(m.powerState), plural(m.snapshotCount, vscode.l10n.t('snapshot'))].filter((p) => p !== '').join(' · ');
      item.tooltip = new vscode.MarkdownString(
        [`**${escape(m.name)}** — ${powerLabel(m.powerState)}`, `libvirt: \`${node.uri}\``, `${vscode.l10n.t('CPUs')}: ${m.cpus} · ${vscode.l10n.t('Memory')}: ${m.memoryMiB} MiB`, `UUID ${m.uuid}`]
          .join('  \n')
          // Why Clone is not offered (the same reason for both kinds), as a snapshot's hover lists its refusals.
          .concat([...new Set(Object.values(node.view.cloneRefusals))].map((r) => `\n\n${escape(r)}`).join('')),
      );
      break;
    }
    case 'snapshot': {
      const s = node.snapshot;
      item.label = s.name;
      item.collapsibleState = node.children.length > 0 ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None;
      item.iconPath = new vscode.ThemeIcon(s.hasMemory ? 'play-circle' : 'device-camera', node.isCurrentParent ? new vscode.ThemeColor('charts.blue') : s.hasMemory ? new vscode.ThemeColor('charts.green') : undefined);
      const memory = s.hasMemory ? vscode.l10n.t('running state') : s.takenWhileRunning ? vscode.l10n.t('disks only, taken while running') : '';
      item.description = [formatRelativeTime(s.createdAt), memory, s.location === 'external' ? vscode.l10n.t('external') : ''].filter((p) => p !== '').join(' · ');
      const refusals = Object.values(s.refusals).filter((r): r is string => typeof r === 'string');
      item.tooltip = new vscode.MarkdownString(
        [`**${escape(s.name)}**`, s.description === '' ? '' : escape(s.description), `${vscode.l10n.t('Taken')}: ${formatDate(s.createdAt)}`, s.hasMemory ? vscode.l10n.t('Memory saved: reverting brings the domain back running.') : vscode.l10n.t('Disks only.'), ...refusals.map(escape)]
          .filter((l) => l !== '')
          .join('\n\n'),
      );
      break;
    }
    case 'current':
      item.label = vscode.l10n.t('You are here');
      item.iconPath = new vscode.ThemeIcon('location', new vscode.ThemeColor('charts.blue'));
      item.description = powerLabel(node.domain.view.machine.powerState);
      break;
  }
  return item;
}

/** linkedClone, fullClone: the clones the source can make of the domain's current state or of snapshot `from`. */
function cloneFlags(domain: LibvirtDomainNode, from: SourceSnapshot | null): string[] {
  return (['linked', 'full'] as const).filter((k) => libvirtCloneRefusal(domain, k, from) === undefined).map((k) => `${k}Clone`);
}

function escape(text: string): string {
  return text.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, '\\$&');
}

/**
 * One root per connection of the setting, in its order, saying what its last read gave; a connection with no read
 * under way or kept (never read, or reloaded) starts one now, also when its row shows an error and has no children.
 */
export function connectionNodes(connections: LibvirtConnections): LibvirtConnectionNode[] {
  return connections.uris.flatMap((uri) => {
    const source = connections.source(uri);
    if (source === undefined) return [];
    const read = connections.result(uri);
    void connections.read(uri);
    return [{ kind: 'libvirt' as const, row: 'connection' as const, id: libvirtConnectionId(uri), uri, label: source.label, capabilities: source.capabilities, read }];
  });
}

/** The rows under a libvirt row; a connection's wait for its read (only its own rows wait). */
export async function libvirtChildren(connections: LibvirtConnections, node: LibvirtNode): Promise<LibvirtNode[]> {
  switch (node.row) {
    case 'connection': {
      const read = await connections.read(node.uri);
      return read.ok ? domainNodes(node, read.domains) : [];
    }
    case 'domain':
      return domainChildren(node);
    case 'snapshot':
      return node.children;
    case 'current':
      return [];
  }
}

export function libvirtParent(node: LibvirtNode): LibvirtNode | undefined {
  return node.row === 'connection' ? undefined : node.parent;
}
