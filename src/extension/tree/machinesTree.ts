import * as vscode from 'vscode';
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { BrokenMachine, LibraryScan, MachineDetails, MachineSummary, PowerState } from '../../engine/machine';
import { formatBytes, formatDate, formatRelativeTime, plural } from '../format';
import type { LibraryService } from '../libraryService';
import {
  brokenNodeId,
  cloneKind,
  cloneRefNodeId,
  contextValue,
  currentNodeId,
  machineNodeId,
  snapshotNodeId,
  type BrokenNode,
  type CloneKindLabel,
  type CloneRefNode,
  type CurrentNode,
  type MachineNode,
  type SnapshotNode,
  type TreeNode,
} from './nodes';

/** How often the power states of running machines are looked at again. */
const POWER_POLL_MS = 4000;
/** How long a listing of the machines waits for their sizes on disk before it shows the rows without them. */
const SIZE_WAIT_MS = 50;

/**
 * The Machines tree: every machine at the top, under each its snapshot tree in creation order with "You are
 * here", linked clones under the snapshot they hang on. Reads the library lazily (a machine's snapshots when it is
 * expanded) and caches until the library changes.
 */
export class MachinesTree implements vscode.TreeDataProvider<TreeNode>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<TreeNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private roots: Promise<MachineNode[]> | undefined;
  /** Machine folders whose manifest could not be read, listed after the machines (read with the roots). */
  private brokenNodes: BrokenNode[] = [];
  private readonly subtrees = new Map<string, Promise<TreeNode[]>>();
  /** What each expanded machine's rows were built from, to tell whether a change on disk changed any row. */
  private readonly shownDetails = new Map<string, string>();
  /** The last measured size of each machine's folder: new rows show it until measured again. */
  private readonly sizes = new Map<string, number | undefined>();
  /** Set after each load: the state shown by the welcome views ('empty', 'error', 'ready'). */
  private lastError: unknown;
  private readonly subscription: vscode.Disposable;
  private powerTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly service: LibraryService,
    private readonly devMachine: () => string,
  ) {
    this.subscription = service.onDidChange((change) => (change.origin === 'disk' ? void this.refreshIfChanged(change.folders, change.scan) : this.refresh()));
  }

  /** Forgets what was read and asks VS Code to read the tree again (ids keep expansion and selection). */
  refresh(): void {
    this.roots = undefined;
    this.subtrees.clear();
    this.shownDetails.clear();
    this.changed.fire(undefined);
  }

  /**
   * After files changed on disk in `folders` (the library as read right after: `scan`), redraw only what changed.
   * Most events change no row (this window's own change, already shown; a running guest writing its disk), and
   * every redraw the workbench does can drop a selection being made or close a context menu that is open.
   */
  private async refreshIfChanged(folders: ReadonlySet<string>, scan: LibraryScan | undefined): Promise<void> {
    const roots = this.roots;
    if (roots === undefined) return this.refresh();
    try {
      const lib = await this.service.library();
      const [shown, { machines: now, broken }] = await Promise.all([roots, scan ?? lib.scan()]);
      if (this.roots !== roots) return;
      if (JSON.stringify(shown.map((n) => n.machine)) !== JSON.stringify(now)) return this.refresh();
      if (JSON.stringify(this.brokenNodes.map((n) => [n.folder, n.message])) !== JSON.stringify(broken.map((b) => [b.folder, b.message]))) {
        return this.refresh();
      }
      // Sizes change only where files did: a running guest writing its disk re-measures its own folder only.
      void this.measure(shown.filter((n) => folders.has(n.machine.folder)));
      for (const [id, before] of [...this.shownDetails]) {
        const details = JSON.stringify(await lib.show(id));
        if (this.roots !== roots) return;
        if (details === before) continue;
        this.subtrees.delete(id);
        this.shownDetails.delete(id);
        const node = shown.find((n) => n.machine.id === id);
        if (node) this.changed.fire(node);
      }
    } catch {
      this.refresh();
    }
  }

  getTreeItem(node: TreeNode): vscode.TreeItem {
    switch (node.kind) {
      case 'machine':
        return this.machineItem(node);
      case 'snapshot':
        return snapshotItem(node);
      case 'current':
        return currentItem(node);
      case 'cloneRef':
        return cloneRefItem(node);
      case 'broken':
        return brokenItem(node);
    }
  }

  getChildren(node?: TreeNode): Promise<TreeNode[]> {
    // An unreadable library shows the welcome view that says so (vmsnap.state == error) rather than a failed tree.
    if (node === undefined) return this.machineNodes().then((machines) => [...machines, ...this.brokenNodes], () => []);
    switch (node.kind) {
      case 'machine':
        return this.machineChildren(node);
      case 'snapshot':
        return Promise.resolve(node.children);
      default:
        return Promise.resolve([]);
    }
  }

  getParent(node: TreeNode): TreeNode | undefined {
    return node.kind === 'machine' || node.kind === 'broken' ? undefined : node.parent;
  }

  /** The top-level rows. */
  machineNodes(): Promise<MachineNode[]> {
    if (!this.roots) {
      const roots = this.loadRoots();
      this.roots = roots;
      roots.catch(() => {
        if (this.roots === roots) this.roots = undefined;
      });
    }
    return this.roots;
  }

  async machineNode(machineId: string): Promise<MachineNode | undefined> {
    return (await this.machineNodes()).find((n) => n.machine.id === machineId);
  }

  /** Every row under a machine, depth first. */
  async descendants(machineId: string): Promise<TreeNode[]> {
    const machine = await this.machineNode(machineId);
    if (!machine) return [];
    const out: TreeNode[] = [];
    const walk = (nodes: TreeNode[]): void => {
      for (const n of nodes) {
        out.push(n);
        if (n.kind === 'snapshot') walk(n.children);
      }
    };
    walk(await this.machineChildren(machine));
    return out;
  }

  async snapshotNode(machineId: string, snapshotId: string): Promise<SnapshotNode | undefined> {
    const id = snapshotNodeId(machineId, snapshotId);
    return (await this.descendants(machineId)).find((n): n is SnapshotNode => n.id === id);
  }

  async currentNode(machineId: string): Promise<CurrentNode | undefined> {
    const id = currentNodeId(machineId);
    return (await this.descendants(machineId)).find((n): n is CurrentNode => n.id === id);
  }

  private async loadRoots(): Promise<MachineNode[]> {
    let machines: MachineSummary[];
    let broken: BrokenMachine[];
    try {
      const lib = await this.service.library();
      ({ machines, broken } = await lib.scan());
      this.lastError = undefined;
    } catch (e) {
      this.lastError = e;
      void vscode.commands.executeCommand('setContext', 'vmsnap.state', 'error');
      throw e;
    }
    this.brokenNodes = broken.map((b) => ({ kind: 'broken', id: brokenNodeId(b.folder), folder: b.folder, message: b.message }));
    // The welcome views follow this; the rows need not wait for the round trip to the workbench.
    void vscode.commands.executeCommand('setContext', 'vmsnap.state', machines.length + broken.length === 0 ? 'empty' : 'ready');
    const ids = new Set(machines.map((m) => m.id));
    for (const id of this.sizes.keys()) if (!ids.has(id)) this.sizes.delete(id); // deleted machines
    const dev = this.devMachine();
    const nodes: MachineNode[] = machines.map((machine) => ({
      kind: 'machine',
      id: machineNodeId(machine.id),
      machine,
      sizeBytes: this.sizes.get(machine.id),
      isDevMachine: dev !== '' && (dev === machine.id || dev === machine.name),
    }));
    // Rows measured in time show their size at once: after a change, the row redraws once, not again a moment
    // later with its new size (each redraw of a focused tree can take the focus back from the command palette).
    const deadline = Date.now() + SIZE_WAIT_MS;
    let measured = 0;
    for (; measured < nodes.length && Date.now() < deadline; measured++) {
      const n = nodes[measured]!;
      n.sizeBytes = await folderBytes(n.machine.folder);
      this.sizes.set(n.machine.id, n.sizeBytes);
    }
    void this.measure(nodes.slice(measured));
    this.watchPower(nodes);
    return nodes;
  }

  /**
   * Sizes on disk the rows could not wait for: a big library (thousands of layer files) lists at once, and each
   * row's description gains its size a moment later. One folder at a time, so that what the user asks for
   * meanwhile (expanding a machine) does not queue behind thousands of file-system calls.
   */
  private async measure(nodes: MachineNode[]): Promise<void> {
    const roots = this.roots;
    for (const n of nodes) {
      const size = await folderBytes(n.machine.folder);
      if (this.roots !== roots) return; // refreshed meanwhile: the new rows measure themselves
      this.sizes.set(n.machine.id, size);
      if (n.sizeBytes === size) continue;
      n.sizeBytes = size;
      this.changed.fire(n);
    }
  }

  /**
   * While a machine runs, its QEMU can end without touching the library's files (killed, or it crashed): look
   * again every few seconds (pidfile and process only, no QMP) and refresh when a power state moved.
   */
  private watchPower(nodes: MachineNode[]): void {
    clearTimeout(this.powerTimer);
    this.powerTimer = undefined;
    if (nodes.every((n) => n.machine.powerState === 'off')) return;
    const roots = this.roots;
    this.powerTimer = setTimeout(() => {
      void (async () => {
        const now = await (await this.service.library()).list().catch(() => undefined);
        if (this.roots !== roots || now === undefined) return;
        const shown = new Map(nodes.map((n) => [n.machine.id, n.machine.powerState]));
        if (now.some((m) => shown.get(m.id) !== m.powerState)) this.service.notifyChanged();
        else this.watchPower(nodes);
      })();
    }, POWER_POLL_MS);
  }

  /** Why the library could not be read, for the welcome view; undefined when it could. */
  get error(): unknown {
    return this.lastError;
  }

  private machineChildren(node: MachineNode): Promise<TreeNode[]> {
    let children = this.subtrees.get(node.machine.id);
    if (!children) {
      children = this.loadMachine(node);
      this.subtrees.set(node.machine.id, children);
      children.catch(() => this.subtrees.delete(node.machine.id));
    }
    return children;
  }

  private async loadMachine(node: MachineNode): Promise<TreeNode[]> {
    const lib = await this.service.library();
    const details = await lib.show(node.machine.id);
    this.shownDetails.set(node.machine.id, JSON.stringify(details));
    const all = await this.machineNodes();
    return buildSubtree(node, details, all);
  }

  private machineItem(node: MachineNode): vscode.TreeItem {
    const m = node.machine;
    const item = new vscode.TreeItem(m.name, vscode.TreeItemCollapsibleState.Collapsed);
    item.id = node.id;
    item.contextValue = contextValue(node);
    const kind = cloneKind(m);
    const power = m.powerState === 'off' ? '' : powerLabel(m.powerState);
    item.iconPath = machineIcon(m.powerState, kind);
    const parts = [
      kind === 'linked' ? vscode.l10n.t('linked clone') : kind === 'full' ? vscode.l10n.t('full clone') : '',
      power,
      plural(m.snapshotCount, vscode.l10n.t('snapshot')),
      node.sizeBytes === undefined ? '' : formatBytes(node.sizeBytes),
      node.isDevMachine ? vscode.l10n.t('dev machine') : '',
    ];
    item.description = parts.filter((p) => p !== '').join(' · ');
    const t = new vscode.MarkdownString(undefined, true);
    t.appendMarkdown(`$(${machineIcon(m.powerState, kind).id}) **${escape(m.name)}** — ${powerLabel(m.powerState)}\n\n`);
    if (m.note) t.appendMarkdown(`${escape(m.note)}\n\n`);
    t.appendMarkdown(
      [
        `${vscode.l10n.t('Kind')}: ${kind === 'plain' ? vscode.l10n.t('machine') : kind === 'linked' ? vscode.l10n.t('linked clone') : vscode.l10n.t('full clone')}`,
        `${vscode.l10n.t('Created')}: ${formatDate(m.createdAt)}`,
        `${vscode.l10n.t('Snapshots')}: ${m.snapshotCount}`,
        node.sizeBytes === undefined ? '' : `${vscode.l10n.t('Size on disk')}: ${formatBytes(node.sizeBytes)}`,
        `${vscode.l10n.t('CPUs')}: ${m.cpus} · ${vscode.l10n.t('Memory')}: ${m.memoryMiB} MiB · MAC ${m.macAddress}`,
        `UUID ${m.id}`,
        `${vscode.l10n.t('Folder')}: \`${m.folder}\``,
      ]
        .filter((l) => l !== '')
        .join('  \n'),
    );
    item.tooltip = t;
    return item;
  }

  dispose(): void {
    clearTimeout(this.powerTimer);
    this.subscription.dispose();
    this.changed.dispose();
  }
}

/**
 * The rows under one machine: its snapshots in creation order (the engine keeps them so), "You are here" after the
 * children of the snapshot the current state descends from, and the linked clones hanging on each snapshot.
 */
export function buildSubtree(machineNode: MachineNode, details: MachineDetails, all: MachineNode[]): TreeNode[] {
  const byId = new Map(all.map((n) => [n.machine.id, n.machine]));
  const build = (parentId: string | null, parent: MachineNode | SnapshotNode, path: string): TreeNode[] => {
    const out: TreeNode[] = [];
    for (const info of details.snapshots) {
      if (info.parentId !== parentId) continue;
      const here = path === '' ? info.name : `${path} > ${info.name}`;
      const node: SnapshotNode = {
        kind: 'snapshot',
        id: snapshotNodeId(details.id, info.id),
        machine: details,
        snapshot: info,
        parent,
        children: [],
        locked: false,
        isCurrentParent: details.current === info.id,
        path: here,
      };
      node.children = build(info.id, node, here);
      for (const cloneId of info.lockedBy) {
        const clone = byId.get(cloneId);
        if (clone) node.children.push({ kind: 'cloneRef', id: cloneRefNodeId(info.id, cloneId), clone, parent: node });
      }
      node.locked = info.lockedBy.length > 0 || node.children.some((c) => c.kind === 'snapshot' && c.locked);
      out.push(node);
    }
    if (details.current === parentId) out.push({ kind: 'current', id: currentNodeId(details.id), machine: details, parent });
    return out;
  };
  return build(null, machineNode, '');
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
  // A snapshot holding a running state gets its own icon: reverting to it brings the machine back running.
  item.iconPath = new vscode.ThemeIcon(
    directlyLocked ? 'lock' : s.hasMemory ? 'play-circle' : 'device-camera',
    node.isCurrentParent ? new vscode.ThemeColor('charts.blue') : s.hasMemory ? new vscode.ThemeColor('charts.green') : undefined,
  );
  const runningMark = s.hasMemory ? vscode.l10n.t('running state') : s.takenWhileRunning ? vscode.l10n.t('disks only, taken while running') : '';
  item.description = [formatRelativeTime(s.createdAt), formatBytes(s.sizeBytes), runningMark, directlyLocked ? vscode.l10n.t('locked') : '']
    .filter((p) => p !== '')
    .join(' · ');
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
  if (s.description) t.appendMarkdown(`${escape(s.description)}\n\n`);
  t.appendMarkdown(
    [
      `${vscode.l10n.t('Created')}: ${formatDate(s.createdAt)}${s.takenWhileRunning ? ` (${vscode.l10n.t('while running')})` : ''}`,
      s.hasMemory
        ? `$(play-circle) ${vscode.l10n.t('Holds the memory of the running machine: reverting to it brings the machine back running where it was.')}`
        : s.takenWhileRunning
          ? vscode.l10n.t('Disks only (no memory): reverting to it leaves the machine off; it boots from these disks.')
          : '',
      `${vscode.l10n.t('Size on disk')}: ${formatBytes(s.sizeBytes)} (${vscode.l10n.t('its own changes')})`,
      `${vscode.l10n.t('Path')}: ${escape(node.path)}`,
      `${vscode.l10n.t('Depends on it')}: ${dependants.length > 0 ? dependants.join(', ') : vscode.l10n.t('nothing')}`,
      node.locked ? `$(lock) ${vscode.l10n.t('Locked: a linked clone hangs on it or on a snapshot below it; delete or promote the clone first.')}` : '',
      `${vscode.l10n.t('Id')}: \`${s.id}\``,
    ]
      .filter((l) => l !== '')
      .join('  \n'),
  );
  item.tooltip = t;
  return item;
}

function currentItem(node: CurrentNode): vscode.TreeItem {
  const m = node.machine;
  const item = new vscode.TreeItem(vscode.l10n.t('You are here'), vscode.TreeItemCollapsibleState.None);
  item.id = node.id;
  item.contextValue = contextValue(node);
  item.iconPath = new vscode.ThemeIcon('location', new vscode.ThemeColor('charts.blue'));
  item.description =
    m.currentChangedBytes > 0 ? vscode.l10n.t('+{0} since the snapshot', formatBytes(m.currentChangedBytes)) : vscode.l10n.t('no changes');
  const parent = node.parent.kind === 'snapshot' ? node.parent.snapshot.name : undefined;
  const t = new vscode.MarkdownString(undefined, true);
  t.appendMarkdown(`$(location) **${vscode.l10n.t('You are here')}** — ${vscode.l10n.t('the current state of {0}', escape(m.name))}\n\n`);
  t.appendMarkdown(
    [
      parent ? `${vscode.l10n.t('Descends from')}: ${escape(parent)}` : vscode.l10n.t('Descends from no snapshot'),
      `${vscode.l10n.t('Changed since')}: ${formatBytes(m.currentChangedBytes)}`,
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
export function machineIcon(power: PowerState, kind: CloneKindLabel): vscode.ThemeIcon {
  if (power === 'running') return new vscode.ThemeIcon('vm-running', new vscode.ThemeColor('charts.green'));
  if (power === 'paused') return new vscode.ThemeIcon('debug-pause', new vscode.ThemeColor('charts.yellow'));
  return new vscode.ThemeIcon(kind === 'linked' ? 'vm-connect' : kind === 'full' ? 'vm-outline' : 'vm');
}

export function powerLabel(power: PowerState): string {
  return power === 'running' ? vscode.l10n.t('running') : power === 'paused' ? vscode.l10n.t('paused') : vscode.l10n.t('off');
}

/** Bytes a machine's own files occupy on the host disk (allocated blocks, so sparse images count what they use). */
async function folderBytes(folder: string): Promise<number | undefined> {
  try {
    const names = await readdir(folder);
    const sizes = await Promise.all(names.map(async (n) => (await stat(join(folder, n)).catch(() => undefined))?.blocks ?? 0));
    return sizes.reduce((a, b) => a + b, 0) * 512;
  } catch {
    return undefined;
  }
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
