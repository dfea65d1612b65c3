// What every command shares (the library, the tree and its view, the questions it asks, the way it fails), and how
// a command finds the machine or snapshot it acts on.
import * as vscode from 'vscode';
import type { Library, MachineDetails, SnapshotInfo } from '../../engine/machine';
import { isMachineError, resolveRef } from '../../engine/machine';
import type { LibraryService } from '../library-service';
import type { MachinesTree } from '../tree/machines-tree';
import type { TreeNode } from '../tree/nodes';
import { errorMessage, showError, type ErrorAction } from '../ui/errors';
import { OperationLog } from '../ui/operation-log';
import type { Prompts } from '../ui/prompter';
import { machinePickItem, snapshotPickItems } from './pick-items';

/** What a command was invoked on: a tree row, a machine reference (id or name), `{machine, snapshot}` (the
 * comparison table, tests), or nothing (the command palette: always ask, the tree's selection first). */
export type Target = TreeNode | string | { machine: string; snapshot?: string } | undefined;

/** An error a command showed: its sentence, the engine's code when it has one, and the actions offered with it. */
export interface ShownError {
  message: string;
  code: string | undefined;
  actions: string[];
}

/** Everything commands share: the library, the tree and its view, the prompts; one instance per activation. */
export class CommandContext implements vscode.Disposable {
  private readonly failed = new vscode.EventEmitter<ShownError>();
  /** Fires for each error a command shows (the test handle keeps the last). */
  readonly onDidFail = this.failed.event;
  private readonly informed = new vscode.EventEmitter<string>();
  /** Fires for each message a command shows with `inform` (the test handle keeps the last). */
  readonly onDidInform = this.informed.event;
  /** The "VM Snapshots" Output channel: every command, its duration and its error. */
  readonly log = new OperationLog();

  constructor(
    readonly service: LibraryService,
    readonly tree: MachinesTree,
    readonly view: vscode.TreeView<TreeNode>,
    readonly prompts: Prompts,
    readonly extensionUri: vscode.Uri,
    /** The dev machine's reference (id or name): the setting, else the machine this remote window is in; '' for none. */
    readonly devMachine: () => string,
  ) {}

  library(): Promise<Library> {
    return this.service.library();
  }

  get ask() {
    return this.prompts.current;
  }

  /**
   * Shows an error as one message (with actions where one helps). The command ends now: the message stays until
   * the user reads it, and an action runs when chosen.
   */
  fail(e: unknown, actions: ErrorAction[] = []): undefined {
    this.failed.fire({
      message: errorMessage(e),
      code: isMachineError(e) || (e instanceof Error && 'code' in e) ? String((e as { code: unknown }).code) : undefined,
      actions: actions.map((a) => a.title),
    });
    void showError(e, actions);
    return undefined;
  }

  /** An information message with actions; the command does not wait for the user's choice. */
  inform(message: string, actions: ErrorAction[] = []): void {
    this.notify(vscode.window.showInformationMessage, message, actions);
  }

  /** A warning with actions (the command went through, but something is wrong); the command does not wait. */
  warn(message: string, actions: ErrorAction[] = []): void {
    this.notify(vscode.window.showWarningMessage, message, actions);
  }

  private notify(show: (message: string, ...items: string[]) => Thenable<string | undefined>, message: string, actions: ErrorAction[]): void {
    this.informed.fire(message);
    void Promise.resolve(show(message, ...actions.map((a) => a.title))).then((chosen) => actions.find((a) => a.title === chosen)?.run());
  }

  /** After a change this window made: re-read the library now, then reveal and select the affected row. */
  async changedThenReveal(find: () => Promise<TreeNode | undefined>): Promise<void> {
    this.service.notifyChanged();
    if (this.view.visible) await this.select(find);
  }

  /**
   * Reveals and selects a row; never fails, as the change it shows is done. The workbench refuses a reveal
   * ("Data tree node not found") or drops the selection it made when it is redrawing that part of the tree at the
   * same moment (its refresh then reports an empty selection): select again, a few times within the next
   * seconds, unless the user has chosen a row meanwhile. A reveal waits until the tree stops redrawing, which
   * may be never: the command does not wait past the deadline.
   */
  async select(find: () => Promise<TreeNode | undefined>, focus = false): Promise<void> {
    const deadline = Date.now() + 3000;
    let tries = 0;
    let id: string | undefined;
    const again = async (): Promise<void> => {
      if (tries++ >= 4 || Date.now() > deadline) return;
      try {
        const node = await find();
        if (node === undefined) return;
        id = node.id;
        const reveal = Promise.resolve(this.view.reveal(node, { select: true, focus, expand: true })).catch(() => undefined);
        await Promise.race([reveal, new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())))]);
      } catch {
        // Redrawing, or the library folder went away meanwhile: the next try (or the deadline) settles it.
      }
      if (id === undefined || this.view.selection[0]?.id !== id) await new Promise((r) => setTimeout(r, 100 * tries)).then(again);
    };
    const watch = this.view.onDidChangeSelection((e) => {
      if (e.selection.length === 0 && Date.now() <= deadline) void again();
    });
    setTimeout(() => watch.dispose(), deadline - Date.now());
    await again();
  }

  revealSnapshot(machineId: string, snapshotId: string): Promise<void> {
    return this.changedThenReveal(() => this.tree.snapshotNode(machineId, snapshotId));
  }

  revealCurrent(machineId: string): Promise<void> {
    return this.changedThenReveal(() => this.tree.currentNode(machineId));
  }

  revealMachine(machineId: string): Promise<void> {
    return this.changedThenReveal(() => this.tree.machineNode(machineId));
  }

  /**
   * The palette always asks (a selection made for another purpose must not be acted on silently); the selected
   * row's machine and snapshot only come first in its lists.
   */
  private selected(): { machineId?: string; snapshotId?: string } {
    const node = this.view.selection[0];
    if (node === undefined || !('kind' in node)) return {};
    switch (node.kind) {
      case 'broken':
      case 'libvirt':
        return {};
      case 'cloneRef':
        return { machineId: node.clone.id };
      case 'snapshot':
        return { machineId: node.machine.id, snapshotId: node.snapshot.id };
      default:
        return { machineId: node.machine.id };
    }
  }

  /** The machine a command acts on; undefined when the user cancelled the question. */
  async machine(target: Target, placeHolder = vscode.l10n.t('Choose a machine')): Promise<MachineDetails | undefined> {
    const lib = await this.library();
    const t = target;
    if (t === undefined) {
      const first = this.selected().machineId;
      const machines = firstWhere(await lib.list(), (m) => m.id === first);
      if (machines.length === 0) {
        throw new Error(vscode.l10n.t('The library has no machines yet: create one with “New Machine” or import a disk image.'));
      }
      const picked = await this.ask.pick(machines.map(machinePickItem), { placeHolder, title: placeHolder });
      return picked ? lib.show(picked.value.id) : undefined;
    }
    if (typeof t === 'string') return lib.show(t);
    if ('kind' in t) {
      switch (t.kind) {
        case 'machine':
          return lib.show(t.machine.id);
        case 'cloneRef':
          return lib.show(t.clone.id);
        case 'broken':
          throw new Error(t.message);
        case 'libvirt':
          throw new Error(vscode.l10n.t('This command acts on machines of the library, not on libvirt domains.'));
        default:
          return lib.show(t.machine.id);
      }
    }
    return lib.show(t.machine);
  }

  /** The snapshot a command acts on, with its machine (re-read now: the tree may be older than the library). */
  async snapshot(target: Target, placeHolder = vscode.l10n.t('Choose a snapshot')): Promise<{ machine: MachineDetails; snapshot: SnapshotInfo } | undefined> {
    const t = target;
    if (t !== undefined && typeof t === 'object' && 'kind' in t && t.kind === 'snapshot') {
      const machine = await (await this.library()).show(t.machine.id);
      return { machine, snapshot: findSnapshot(machine, t.snapshot.id) };
    }
    if (t !== undefined && typeof t === 'object' && !('kind' in t) && t.snapshot !== undefined) {
      const machine = await (await this.library()).show(t.machine);
      return { machine, snapshot: findSnapshot(machine, t.snapshot) };
    }
    // A machine row or nothing: ask which of its snapshots.
    const machine = await this.machine(t);
    if (!machine) return undefined;
    if (machine.snapshots.length === 0) {
      throw new Error(vscode.l10n.t('Machine “{0}” has no snapshots yet: take one first.', machine.name));
    }
    const machines = machine.snapshots.some((s) => s.lockedBy.length > 0) ? await (await this.library()).list() : [];
    const cloneName = (id: string): string => machines.find((m) => m.id === id)?.name ?? id;
    const first = t === undefined ? this.selected().snapshotId : undefined;
    const picked = await this.ask.pick(firstWhere(snapshotPickItems(machine, cloneName), (i) => i.value.id === first), { placeHolder, title: `${machine.name}: ${placeHolder}` });
    return picked ? { machine, snapshot: picked.value } : undefined;
  }

  dispose(): void {
    this.failed.dispose();
    this.informed.dispose();
    this.log.dispose();
  }
}

/** The same items with the first one matching moved to the front (the tree's selection, offered first). */
function firstWhere<T>(items: T[], matches: (item: T) => boolean): T[] {
  const i = items.findIndex(matches);
  return i <= 0 ? items : [items[i]!, ...items.slice(0, i), ...items.slice(i + 1)];
}

/** A snapshot by id, name or id prefix, by the engine's rule (ambiguous names are refused). */
function findSnapshot(machine: MachineDetails, ref: string): SnapshotInfo {
  const r = resolveRef(machine.snapshots, ref, (s) => s.id, (s) => s.name);
  switch (r.kind) {
    case 'found':
      return r.item;
    case 'ambiguous-name':
      if (r.byIdToo) throw new Error(vscode.l10n.t('“{0}” is the name of one snapshot of “{1}” and the id of another: choose one in the tree.', ref, machine.name));
      throw new Error(vscode.l10n.t('{0} snapshots of “{1}” are named “{2}”: choose one in the tree.', r.items.length, machine.name, ref));
    case 'ambiguous-prefix':
      throw new Error(vscode.l10n.t('{0} snapshots of “{1}” have ids starting with “{2}”: choose one in the tree.', r.items.length, machine.name, ref));
    case 'none':
      throw new Error(vscode.l10n.t('Machine “{0}” has no snapshot “{1}” any more: the tree was refreshed.', machine.name, ref));
  }
}
