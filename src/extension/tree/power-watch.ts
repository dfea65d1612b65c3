// Power polling for the Machines tree: a QEMU that ends without touching the library's files (killed, crashed)
// shows as off within seconds, while the view is in sight.
import type * as vscode from 'vscode';
import type { MachineSummary, PowerState } from '../../engine/machine';

/** How often the power states of running machines are looked at again. */
export const POWER_POLL_MS = 4000;

/**
 * While a machine runs and the view is visible, looks again every few seconds (pidfile and process only, no QMP)
 * and calls `moved` when a power state differs from what the rows show. A hidden view polls nothing; when it is
 * shown again it looks at once, as the rows may have gone stale meanwhile.
 */
export class PowerWatch implements vscode.Disposable {
  /** The power state each row shows; undefined while no rows are shown. */
  private shown: ReadonlyMap<string, PowerState> | undefined;
  private visible = false;
  private timer: NodeJS.Timeout | undefined;
  /** Bumped whenever the timer is cleared: a look that was under way then reports nothing. */
  private generation = 0;

  constructor(
    private readonly list: () => Promise<MachineSummary[]>,
    private readonly moved: () => void,
  ) {}

  /** The rows now show these machines (a new listing). */
  follow(machines: readonly MachineSummary[]): void {
    this.shown = new Map(machines.map((m) => [m.id, m.powerState]));
    this.schedule(POWER_POLL_MS);
  }

  /** The rows were dropped (a refresh): nothing to compare with until the next listing. */
  forget(): void {
    this.shown = undefined;
    this.stop();
  }

  setVisible(visible: boolean): void {
    if (visible === this.visible) return;
    this.visible = visible;
    if (visible) this.schedule(0);
    else this.stop();
  }

  private schedule(ms: number): void {
    this.stop();
    const shown = this.shown;
    if (!this.visible || shown === undefined || [...shown.values()].every((p) => p === 'off')) return;
    const generation = this.generation;
    this.timer = setTimeout(() => void this.look(shown, generation), ms);
  }

  private async look(shown: ReadonlyMap<string, PowerState>, generation: number): Promise<void> {
    const now = await this.list().catch(() => undefined);
    if (generation !== this.generation || now === undefined) return;
    if (now.some((m) => shown.get(m.id) !== m.powerState)) this.moved();
    else this.schedule(POWER_POLL_MS);
  }

  private stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.generation++;
  }

  dispose(): void {
    this.forget();
  }
}
