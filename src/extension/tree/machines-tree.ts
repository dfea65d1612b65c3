// The Machines tree's data provider: reads the library lazily, caches the rows until it changes, and redraws only
// what changed. How rows look (tree-items), what they were built from (shown-state), folder sizes (folder-sizes)
// and power polling (power-watch) have their own modules.
import * as vscode from 'vscode';
import type { BrokenMachine, Library, LibraryScan, MachineSummary } from '../../engine/machine';
import type { LibraryService } from '../library-service';
import { branchesFrom, compactChildren, compactParent } from './compact-chains';
import { FolderSizes } from './folder-sizes';
import {
  brokenNodeId,
  buildSubtree,
  currentNodeId,
  machineNodeId,
  snapshotNodeId,
  type BrokenNode,
  type MachineAccess,
  type CurrentNode,
  type MachineNode,
  type SnapshotNode,
  type TreeNode,
} from './nodes';
import { LibvirtConnections } from '../sources/libvirt-connections';
import { connectionNodes, libvirtChildren, libvirtParent } from './libvirt-rows';
import { PowerWatch } from './power-watch';
import { ShownState } from './shown-state';
import { treeSetting } from './view-settings';
import { machineTooltip, snapshotTooltip, treeItem } from './tree-items';
import { thumbnailDataUri } from '../thumbnail-uri';

/** A library of at most this many machines shows them expanded the first time: their snapshots at a glance. */
const EXPAND_UP_TO = 3;

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
  private readonly shown = new ShownState();
  private readonly sizes = new FolderSizes();
  private readonly power: PowerWatch;
  private readonly subscription: vscode.Disposable;
  /** vmsnap.tree.compactChains, read when the tree is made and when the setting changes (relayout). */
  private compact = treeSetting('tree.compactChains');
  /** The libvirt connections of the setting, each a root after the library's machines, read in the background. */
  readonly libvirt = new LibvirtConnections();
  private readonly libvirtSubscription = this.libvirt.onDidChange(() => this.changed.fire(undefined));

  /** Told whether the library is empty, unreadable or listed, each time the rows are read. */
  onState: ((state: 'empty' | 'error' | 'ready') => void) | undefined;

  constructor(
    private readonly service: LibraryService,
    private readonly devMachine: () => string,
  ) {
    this.subscription = service.onDidChange((change) => (change.origin === 'disk' ? void this.refreshIfChanged(change.folders, change.scan) : this.refresh()));
    this.power = new PowerWatch(
      async () => (await service.library()).list(),
      () => service.notifyChanged(),
    );
  }

  /** Power states are polled only while `view` is visible (a hidden view polls nothing). */
  pollPowerWhileVisible(view: vscode.TreeView<TreeNode>): vscode.Disposable {
    this.power.setVisible(view.visible);
    return view.onDidChangeVisibility((e) => this.power.setVisible(e.visible));
  }

  /** Forgets what was read and asks VS Code to read the tree again (ids keep expansion and selection). */
  refresh(): void {
    this.roots = undefined;
    this.subtrees.clear();
    this.shown.clear();
    this.power.forget();
    this.libvirt.forget();
    this.changed.fire(undefined);
  }

  /** Draws the same rows again in the other layout (compact chains or not): nothing is read again. */
  relayout(): void {
    this.compact = treeSetting('tree.compactChains');
    this.changed.fire(undefined);
  }

  /** After files changed on disk in `folders` (the library as read right after: `scan`), redraw only what changed. */
  private async refreshIfChanged(folders: ReadonlySet<string>, scan: LibraryScan | undefined): Promise<void> {
    const roots = this.roots;
    if (roots === undefined) return this.refresh();
    try {
      const lib = await this.service.library();
      const [shown, now] = await Promise.all([roots, scan ?? lib.scan()]);
      if (this.roots !== roots) return;
      if (this.shown.listingDiffers(now)) return this.refresh();
      // Sizes change only where files did: a running guest writing its disk re-measures its own folder only.
      void this.measure(shown.filter((n) => folders.has(n.machine.folder)));
      for (const id of this.shown.expandedMachines()) {
        const details = await lib.show(id);
        if (this.roots !== roots) return;
        if (!this.shown.detailsDiffer(details)) continue;
        this.subtrees.delete(id);
        this.shown.forgetMachine(id);
        const node = shown.find((n) => n.machine.id === id);
        if (node) this.changed.fire(node);
      }
    } catch {
      this.refresh();
    }
  }

  getTreeItem(node: TreeNode): vscode.TreeItem {
    const item = treeItem(node);
    // In the compact tree a snapshot whose only child continues its line has no rows under it.
    if (!this.compact || node.kind === 'libvirt') return item;
    if (node.kind === 'snapshot' && compactChildren(node, node.children).length === 0) item.collapsibleState = vscode.TreeItemCollapsibleState.None;
    const from = branchesFrom(node);
    if (from) item.description = [vscode.l10n.t('from “{0}”', from.snapshot.name), item.description].filter((d) => typeof d === 'string' && d !== '').join(' · ');
    return item;
  }

  /** A machine's tooltip, made when it is hovered: it says what only the details know (the cloud image it runs on). */
  async resolveTreeItem(item: vscode.TreeItem, node: TreeNode): Promise<vscode.TreeItem> {
    if (node.kind === 'snapshot') {
      item.tooltip = snapshotTooltip(node, await thumbnailDataUri(node.snapshot.thumbnail));
      return item;
    }
    if (node.kind !== 'machine') return item;
    const [details, guest] = await Promise.all([
      this.service
        .library()
        .then((lib) => lib.show(node.machine.id))
        .catch(() => undefined),
      // What the guest's agent says (hostname, OS, addresses) while it runs; a silent agent costs a short time-out.
      node.machine.powerState === 'off'
        ? null
        : this.service
            .library()
            .then((lib) => lib.guestInfo(node.machine.id))
            .catch(() => null),
    ]);
    item.tooltip = machineTooltip(node, details, guest);
    return item;
  }

  getChildren(node?: TreeNode): Promise<TreeNode[]> {
    // An unreadable library shows the welcome view that says so (vmsnap.state == error) rather than a failed tree.
    // libvirt connections follow, each read on its own: they never hold up the library's rows.
    if (node === undefined) return this.machineNodes().then((machines) => [...machines, ...this.brokenNodes, ...connectionNodes(this.libvirt)], () => connectionNodes(this.libvirt));
    switch (node.kind) {
      case 'libvirt':
        return libvirtChildren(this.libvirt, node);
      case 'machine':
        return this.machineChildren(node);
      case 'snapshot':
        return Promise.resolve(this.compact ? compactChildren(node, node.children) : node.children);
      default:
        return Promise.resolve([]);
    }
  }

  getParent(node: TreeNode): TreeNode | undefined {
    if (node.kind === 'libvirt') return libvirtParent(node);
    if (this.compact) return compactParent(node);
    return node.kind === 'machine' || node.kind === 'broken' ? undefined : node.parent;
  }

  /** The top-level rows. */
  machineNodes(): Promise<MachineNode[]> {
    if (!this.roots) {
      const roots = this.loadRoots();
      this.roots = roots;
      roots.then(
        (nodes) => {
          if (this.roots === roots) this.power.follow(nodes.map((n) => n.machine));
        },
        () => {
          if (this.roots === roots) this.roots = undefined;
        },
      );
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
    walk(await this.machineSubtree(machine));
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
    } catch (e) {
      // The welcome view that says the library cannot be read (vmsnap.state == error).
      void vscode.commands.executeCommand('setContext', 'vmsnap.state', 'error');
      this.onState?.('error');
      throw e;
    }
    this.shown.listed(machines, broken);
    this.brokenNodes = broken.map((b) => ({ kind: 'broken', id: brokenNodeId(b.folder), folder: b.folder, message: b.message }));
    // The welcome views follow this; the rows need not wait for the round trip to the workbench.
    const state = machines.length + broken.length === 0 ? 'empty' : 'ready';
    void vscode.commands.executeCommand('setContext', 'vmsnap.state', state);
    this.onState?.(state);
    this.sizes.keepOnly(new Set(machines.map((m) => m.id)));
    const dev = this.devMachine();
    const lib = await this.service.library();
    const nodes: MachineNode[] = await Promise.all(
      machines.map(async (machine) => ({
        kind: 'machine' as const,
        id: machineNodeId(machine.id),
        machine,
        sizeBytes: this.sizes.get(machine.id),
        isDevMachine: dev !== '' && (dev === machine.id || dev === machine.name),
        expandAtFirst: machines.length <= EXPAND_UP_TO,
        ...(machine.powerState === 'off' ? {} : { access: await machineAccess(lib, machine.id) }),
      })),
    );
    // Rows measured in time show their size at once: after a change, the row redraws once, not again a moment
    // later with its new size (each redraw of a focused tree can take the focus back from the command palette).
    const measured = await this.sizes.measureUntil(nodes, Date.now() + SIZE_WAIT_MS);
    void this.measure(nodes.slice(measured));
    return nodes;
  }

  /**
   * Sizes on disk the rows could not wait for: a big library (thousands of layer files) lists at once, and each
   * row's description gains its size a moment later.
   */
  private measure(nodes: MachineNode[]): Promise<void> {
    const roots = this.roots;
    return this.sizes.measure(
      nodes,
      () => this.roots === roots,
      (n) => this.changed.fire(n),
    );
  }

  /** A machine's rows as shown: in the compact tree, each root snapshot followed by its straight run. */
  private machineChildren(node: MachineNode): Promise<TreeNode[]> {
    return this.machineSubtree(node).then((children) => (this.compact ? compactChildren(node, children) : children));
  }

  private machineSubtree(node: MachineNode): Promise<TreeNode[]> {
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
    this.shown.expanded(details);
    const all = await this.machineNodes();
    return buildSubtree(node, details, all, { hideAutomatic: !treeSetting('showAutomaticCheckpoints') });
  }

  dispose(): void {
    this.power.dispose();
    this.subscription.dispose();
    this.libvirtSubscription.dispose();
    this.libvirt.dispose();
    this.changed.dispose();
  }
}

/** A running machine's SSH forward and failure, from QEMU; undefined when it cannot be asked (busy, just stopped). */
async function machineAccess(lib: Library, machineId: string): Promise<MachineAccess | undefined> {
  const status = await lib.machineStatus(machineId).catch(() => undefined);
  if (status === undefined) return undefined;
  return { sshPort: status.ssh?.port ?? null, sshUser: status.ssh?.user ?? null, failure: status.failure };
}
