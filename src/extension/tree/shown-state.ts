// What the Machines tree's rows were built from, to tell whether a change seen on disk changed any row. Most such
// changes change none (this window's own change, already shown; a running guest writing its disk), and each redraw
// can drop a selection being made or close an open context menu. The engine returns plain data: JSON compares it.
import type { BrokenMachine, LibraryScan, MachineDetails, MachineSummary } from '../../engine/machine';

export class ShownState {
  private machines: readonly MachineSummary[] = [];
  private broken: readonly BrokenMachine[] = [];
  /** Each expanded machine's details, as JSON. */
  private readonly details = new Map<string, string>();

  /** The top-level rows were built from this listing. */
  listed(machines: readonly MachineSummary[], broken: readonly BrokenMachine[]): void {
    this.machines = machines;
    this.broken = broken;
  }

  /** Whether the library now lists other machines, other values of them, or other unreadable folders. */
  listingDiffers(now: LibraryScan): boolean {
    if (JSON.stringify(this.machines) !== JSON.stringify(now.machines)) return true;
    const reasons = (broken: readonly BrokenMachine[]): string => JSON.stringify(broken.map((b) => [b.folder, b.message]));
    return reasons(this.broken) !== reasons(now.broken);
  }

  /** A machine's rows were built from these details. */
  expanded(details: MachineDetails): void {
    this.details.set(details.id, JSON.stringify(details));
  }

  /** The machines whose rows are built (expanded since the last refresh). */
  expandedMachines(): string[] {
    return [...this.details.keys()];
  }

  detailsDiffer(details: MachineDetails): boolean {
    return this.details.get(details.id) !== JSON.stringify(details);
  }

  forgetMachine(machineId: string): void {
    this.details.delete(machineId);
  }

  /** Everything is read again. */
  clear(): void {
    this.details.clear();
  }
}
