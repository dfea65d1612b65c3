// Running one automatic checkpoint of one machine: under the machine lock, re-checks that it is due and that the
// machine changed, checks the free space, takes it (with memory when running), then prunes what the retention
// does not keep. Never throws for what a schedule meets (a busy or full disk): it says so in the outcome.
import { join } from 'node:path';
import { isDue, nextDueAt, pruneBlocker, pruneCandidates, retainedIds, type AutoTrigger } from './auto-policy';
import { isMachineError, MachineError } from './errors';
import { freeBytes, SPACE_SLACK } from './fsutil';
import { layerAllocatedBytes } from './layer-files';
import type { LibraryContext } from './library-context';
import type { AutoCheckpointRecord, Manifest } from './manifest';
import { isRunning } from './power';
import { deleteSnapshot, takeSnapshotLocked } from './snapshots';
import type { MachineEntry } from './store';
import type { TakenSnapshot } from './types';

/** The time, for the schedule: tests pass a clock they move themselves. */
export interface Clock {
  now(): Date;
  /** Resolves after `ms` (or at once when the signal aborts). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => new Date(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    }),
};

export interface AutoCheckpointOptions {
  trigger?: AutoTrigger;
  clock?: Clock;
  /** Free bytes where the machine's folder is, or null when unknown (default: statfs). */
  freeBytes?: (folder: string) => Promise<number | null>;
}

export type AutoCheckpointResult =
  | 'taken'
  /** The machine has no automatic checkpoint policy. */
  | 'no-policy'
  | 'not-due'
  /** Nothing changed since the snapshot the current state descends from. */
  | 'unchanged'
  /** Not enough free disk space for it (a warning, never a failure). */
  | 'no-space'
  /** Another operation held the machine longer than the lock waits. */
  | 'busy'
  | 'failed';

export interface AutoCheckpointOutcome {
  machineId: string;
  machineName: string;
  result: AutoCheckpointResult;
  /** The checkpoint taken (result 'taken'), with how long the machine did not run for it. */
  snapshot: TakenSnapshot | null;
  /** One sentence for people. */
  message: string;
  /** When the schedule next wants a checkpoint (ISO 8601), or null without a policy. */
  nextDueAt: string | null;
  /** Automatic checkpoints deleted by the retention. */
  pruned: { id: string; name: string }[];
  /** Automatic checkpoints the retention let go but pruning kept, and why. */
  kept: { id: string; name: string; reason: string }[];
}

/** A new empty top layer's metadata, per disk. */
const TOP_LAYER_BYTES = 1024 * 1024;

/** A refusal by the pruning guard, under the lock: the snapshot stays. */
class PruneRefused extends Error {
  override readonly name = 'PruneRefused';
}

/** Whether the current state holds data of its own (an off machine's top layers), i.e. differs from its snapshot. */
async function topsHoldData(e: MachineEntry): Promise<boolean> {
  for (const d of e.manifest.disks) if ((await layerAllocatedBytes(join(e.folder, d.top))) > 0) return true;
  return false;
}

/** "Auto 2026-12-06 14:03:27", in local time. */
function checkpointName(t: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `Auto ${t.getFullYear()}-${p(t.getMonth() + 1)}-${p(t.getDate())} ${p(t.getHours())}:${p(t.getMinutes())}:${p(t.getSeconds())}`;
}

/** "30m", "2h", "90s": an interval as `vm edit --auto-every` takes it. */
export function formatInterval(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/**
 * One automatic checkpoint of the machine `ref`, if due (schedule: the interval since the newest automatic one;
 * event: a short gap, see EVENT_GAP_MS) and the machine changed: an off machine changed when its top layers hold
 * data; a running (or paused) one always counts as changed, since its memory, clock and devices move on. A running
 * machine's checkpoint holds its memory. Then prunes the automatic checkpoints the retention does not keep.
 */
export async function autoCheckpoint(ctx: LibraryContext, ref: string, options: AutoCheckpointOptions = {}): Promise<AutoCheckpointOutcome> {
  const clock = options.clock ?? systemClock;
  const trigger = options.trigger ?? { kind: 'schedule' };
  const freeOf = options.freeBytes ?? freeBytes;
  const { e: found } = await ctx.find(ref);
  const outcome: AutoCheckpointOutcome = {
    machineId: found.manifest.id,
    machineName: found.manifest.name,
    result: 'not-due',
    snapshot: null,
    message: '',
    nextDueAt: null,
    pruned: [],
    kept: [],
  };
  const say = (result: AutoCheckpointResult, message: string): AutoCheckpointOutcome => Object.assign(outcome, { result, message });
  // Cheap check without the lock first: a schedule asks every machine often, and most of the time nothing is due.
  const policyBefore = found.manifest.autoCheckpoints;
  if (policyBefore !== undefined && !isDue(policyBefore, found.manifest, trigger, clock.now())) {
    outcome.nextDueAt = nextDueAt(policyBefore, found.manifest, clock.now()).toISOString();
    return say('not-due', `No checkpoint of "${found.manifest.name}" is due yet.`);
  }
  let policy: AutoCheckpointRecord | undefined;
  try {
    await ctx.withMachine(found.manifest.id, 'automatic checkpoint', async (e, all) => {
      const m = e.manifest;
      policy = m.autoCheckpoints;
      const now = clock.now();
      if (policy === undefined) return say('no-policy', `"${m.name}" has no automatic checkpoints (turn them on with vm edit --auto-every).`);
      // Due again under the lock: another scheduler may have taken it a moment ago.
      if (!isDue(policy, m, trigger, now)) {
        outcome.nextDueAt = nextDueAt(policy, m, now).toISOString();
        return say('not-due', `No checkpoint of "${m.name}" is due yet.`);
      }
      outcome.nextDueAt = new Date(now.getTime() + policy.everySeconds * 1000).toISOString();
      const running = await isRunning(e);
      if (!running && !(await topsHoldData(e))) return say('unchanged', `"${m.name}" has not changed since its last snapshot: no checkpoint taken.`);
      const expected = (running ? m.memoryMiB * 1024 * 1024 : 0) + m.disks.length * TOP_LAYER_BYTES;
      const free = await freeOf(e.folder);
      if (free !== null && free < expected + SPACE_SLACK) {
        return say(
          'no-space',
          `Skipped the automatic checkpoint of "${m.name}": it needs about ${Math.ceil(expected / 1048576)} MiB and ${Math.floor(free / 1048576)} MiB are free; free some space.`,
        );
      }
      const description = trigger.kind === 'schedule' ? `Automatic checkpoint (every ${formatInterval(policy.everySeconds)}).` : `Automatic checkpoint: ${trigger.reason}.`;
      const s = await takeSnapshotLocked(ctx, e, all, checkpointName(now), description, { diskOnly: false, auto: true, now });
      outcome.snapshot = s;
      const what = s.hasMemory ? ` with its memory (paused ${s.pauseMs} ms)` : '';
      return say('taken', `Took automatic checkpoint "${s.name}" of "${m.name}"${what}.`);
    });
  } catch (err) {
    if (!isMachineError(err)) throw err;
    if (err.code === 'BUSY') return say('busy', `Skipped the automatic checkpoint of "${found.manifest.name}": ${err.message}`);
    if (err.code === 'NO_SPACE') return say('no-space', `Skipped the automatic checkpoint of "${found.manifest.name}": ${err.message}`);
    return say('failed', `The automatic checkpoint of "${found.manifest.name}" failed: ${err.message}`);
  }
  if (policy !== undefined) await prune(ctx, outcome);
  return outcome;
}

/**
 * Deletes, oldest first, the automatic checkpoints the retention does not keep and pruneBlocker allows; each
 * deletion is one ordinary snapshot deletion whose guard re-checks, under its lock, that the snapshot is still
 * automatic, still let go by the retention and still cheap to delete.
 */
async function prune(ctx: LibraryContext, outcome: AutoCheckpointOutcome): Promise<void> {
  const tried = new Set<string>();
  for (;;) {
    const { e, all } = await ctx.find(outcome.machineId);
    const policy = e.manifest.autoCheckpoints;
    if (policy === undefined) return;
    const next = pruneCandidates(policy, e.manifest).find((s) => !tried.has(s.id));
    if (next === undefined) return;
    tried.add(next.id);
    const guard = async (fresh: MachineEntry): Promise<void> => {
      const m = fresh.manifest;
      const target = m.snapshots.find((s) => s.id === next.id);
      if (target === undefined) throw new PruneRefused('it is gone');
      if (m.autoCheckpoints === undefined || retainedIds(m.autoCheckpoints, m).has(target.id)) throw new PruneRefused('the retention keeps it now');
      const changed = m.current === target.id ? await topsHoldData(fresh) : false;
      const why = pruneBlocker(m, target, cloneSnapshotIds(all, m), () => changed);
      if (why !== null) throw new PruneRefused(why);
    };
    try {
      await deleteSnapshot(ctx, e.manifest.id, next.id, {}, guard);
      outcome.pruned.push({ id: next.id, name: next.name });
    } catch (err) {
      // Deleted meanwhile (another scheduler pruned it): nothing to say.
      if (isMachineError(err) && err.code === 'NOT_FOUND') continue;
      const reason = err instanceof PruneRefused ? err.message : isMachineError(err) ? keptReason(err) : null;
      if (reason === null) throw err;
      if (reason !== 'it is gone') outcome.kept.push({ id: next.id, name: next.name, reason });
      if (isMachineError(err) && err.code === 'BUSY') return;
    }
  }
}

function keptReason(err: MachineError): string {
  switch (err.code) {
    case 'LOCKED_BY_CLONES':
      return 'a linked clone depends on it';
    default:
      return err.message;
  }
}

/** The snapshots of machine `m` that its linked clones hang on. */
function cloneSnapshotIds(all: MachineEntry[], m: Manifest): Set<string> {
  const ids = new Set<string>();
  for (const c of all) {
    const cf = c.manifest.clonedFrom;
    if (cf?.kind === 'linked' && cf.machineId === m.id && cf.snapshotId !== null) ids.add(cf.snapshotId);
  }
  return ids;
}
