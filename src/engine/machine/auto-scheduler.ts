// The schedule of automatic checkpoints over a library: asks each machine with a policy for a checkpoint when it
// is due and sleeps until the next one is. The extension runs one while VS Code is open, `vmsnap auto run` one in
// a terminal or a service; both may run at once (the runner's lock and due check make one checkpoint of two).
import { systemClock, type AutoCheckpointOptions, type AutoCheckpointOutcome, type Clock } from './auto-checkpoints';
import type { AutoCheckpointPolicy, MachineSummary } from './types';

/** What the schedule needs of a library (the Library itself). */
export interface AutoSchedulePort {
  list(): Promise<MachineSummary[]>;
  autoCheckpoint(ref: string, options: AutoCheckpointOptions): Promise<AutoCheckpointOutcome>;
}

export interface AutoSchedulerOptions {
  clock?: Clock;
  /** Every outcome, also the skipped ones ('not-due' outcomes are not reported). */
  onOutcome?: (outcome: AutoCheckpointOutcome) => void;
  /** An error no outcome could say (a machine deleted meanwhile; machine null: the library could not be listed); the schedule goes on. */
  onError?: (machine: MachineSummary | null, error: unknown) => void;
  /** The longest sleep, so new and changed policies are seen (default 60 s). */
  maxSleepMs?: number;
  freeBytes?: AutoCheckpointOptions['freeBytes'];
}

export class AutoScheduler {
  /** Per machine: when to ask again, and the policy that time was computed with. */
  private readonly next = new Map<string, { at: number; policy: string }>();
  private readonly clock: Clock;
  private readonly maxSleepMs: number;

  constructor(
    private readonly port: AutoSchedulePort,
    private readonly options: AutoSchedulerOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.maxSleepMs = options.maxSleepMs ?? 60_000;
  }

  /** Asks every machine whose checkpoint is due; returns how long to sleep until the next one is. Stops asking once `signal` aborts. */
  async tick(signal?: AbortSignal): Promise<number> {
    let listed: MachineSummary[];
    try {
      listed = await this.port.list();
    } catch (err) {
      this.options.onError?.(null, err);
      return this.maxSleepMs;
    }
    const machines = listed.filter((m): m is MachineSummary & { autoCheckpoints: AutoCheckpointPolicy } => m.autoCheckpoints !== null);
    for (const id of this.next.keys()) if (!machines.some((m) => m.id === id)) this.next.delete(id);
    for (const m of machines) {
      if (signal?.aborted) break;
      const policy = JSON.stringify(m.autoCheckpoints);
      const known = this.next.get(m.id);
      const now = this.clock.now().getTime();
      if (known !== undefined && known.policy === policy && known.at > now) continue;
      let at = now + m.autoCheckpoints.everySeconds * 1000;
      try {
        const o = await this.port.autoCheckpoint(m.id, { trigger: { kind: 'schedule' }, clock: this.clock, ...(this.options.freeBytes ? { freeBytes: this.options.freeBytes } : {}) });
        if (o.result !== 'not-due') this.options.onOutcome?.(o);
        // Skipped ones (unchanged, busy, no space) are asked again one interval later, not at once.
        if (o.nextDueAt !== null) at = Math.max(Date.parse(o.nextDueAt), o.result === 'not-due' ? 0 : now + 1000);
      } catch (err) {
        this.options.onError?.(m, err);
        at = now + this.maxSleepMs;
      }
      this.next.set(m.id, { at, policy });
    }
    const now = this.clock.now().getTime();
    const soonest = Math.min(...[...this.next.values()].map((n) => n.at), now + this.maxSleepMs);
    return Math.max(0, soonest - now);
  }

  /** Ticks until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const ms = await this.tick(signal);
      if (signal.aborted) return;
      await this.clock.sleep(ms, signal);
    }
  }
}
