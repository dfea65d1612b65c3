// Automatic checkpoints decided without touching the disk: when one is due, which automatic checkpoints the
// retention keeps, and whether deleting one of the others would cost something the user did not ask for.
import type { AutoCheckpointRecord, Manifest, SnapshotRecord } from './manifest';
import { childrenOf, subtreeIds } from './tree';

/** Why a checkpoint is being considered: the schedule's interval, or an event (a branch switch, a git hook, a task). */
export type AutoTrigger = { kind: 'schedule' } | { kind: 'event'; reason: string };

/**
 * An event-triggered checkpoint is skipped when the last automatic one is younger than this (or than the
 * interval, if shorter): a git hook and the extension's watcher seeing the same branch switch make one checkpoint.
 */
export const EVENT_GAP_MS = 60_000;
/** Timers fire a little early or late; a checkpoint this close to its due time counts as due. */
const EARLY_TOLERANCE_MS = 250;

/** The machine's automatic checkpoints, newest first (ties: later in the manifest first). */
export function automaticNewestFirst(m: Manifest): SnapshotRecord[] {
  return m.snapshots
    .map((s, i) => ({ s, i, t: Date.parse(s.createdAt) }))
    .filter((x) => x.s.auto === true)
    .sort((a, b) => b.t - a.t || b.i - a.i)
    .map((x) => x.s);
}

/** When the schedule wants the next checkpoint: the newest automatic one plus the interval, or now when there is none. */
export function nextDueAt(policy: AutoCheckpointRecord, m: Manifest, now: Date): Date {
  const last = automaticNewestFirst(m)[0];
  return last === undefined ? now : new Date(Date.parse(last.createdAt) + policy.everySeconds * 1000);
}

/** Whether a checkpoint is due now for this trigger (unchanged machines are skipped later, by the runner). */
export function isDue(policy: AutoCheckpointRecord, m: Manifest, trigger: AutoTrigger, now: Date): boolean {
  const last = automaticNewestFirst(m)[0];
  if (last === undefined) return true;
  const age = now.getTime() - Date.parse(last.createdAt);
  const gap = trigger.kind === 'schedule' ? policy.everySeconds * 1000 : Math.min(EVENT_GAP_MS, policy.everySeconds * 1000);
  return age >= gap - EARLY_TOLERANCE_MS;
}

/** The local calendar day of a time ("2026-12-06"). */
function dayKey(t: Date): string {
  return `${t.getFullYear()}-${t.getMonth() + 1}-${t.getDate()}`;
}

/** The local week of a time, named by its Monday (ISO weeks start on Monday). */
function weekKey(t: Date): string {
  const monday = new Date(t.getFullYear(), t.getMonth(), t.getDate() - ((t.getDay() + 6) % 7));
  return dayKey(monday);
}

/**
 * The automatic checkpoints the retention keeps: the newest `keep`; plus the newest one of each of the `daily`
 * most recent local calendar days that have one; plus the newest one of each of the `weekly` most recent weeks
 * (Monday to Sunday) that have one. Days and weeks without a checkpoint do not count, so a week away from the
 * keyboard never empties the history. Depends only on the checkpoints, never on the time it is asked.
 */
export function retainedIds(policy: AutoCheckpointRecord, m: Manifest): Set<string> {
  const autos = automaticNewestFirst(m);
  const kept = new Set(autos.slice(0, policy.keep).map((s) => s.id));
  const newestPer = (key: (t: Date) => string, count: number): void => {
    const seen = new Set<string>();
    for (const s of autos) {
      if (seen.size >= count) return;
      const k = key(new Date(s.createdAt));
      if (seen.has(k)) continue;
      seen.add(k);
      kept.add(s.id);
    }
  };
  newestPer(dayKey, policy.daily);
  newestPer(weekKey, policy.weekly);
  return kept;
}

/** Automatic checkpoints the retention does not keep, oldest first: the ones pruning tries to delete. */
export function pruneCandidates(policy: AutoCheckpointRecord, m: Manifest): SnapshotRecord[] {
  const kept = retainedIds(policy, m);
  return automaticNewestFirst(m)
    .filter((s) => !kept.has(s.id))
    .reverse();
}

/**
 * Why pruning must leave this snapshot, or null when it may delete it. Pruning deletes only an automatic
 * checkpoint that no linked clone needs, whose deletion merges only automatic layers into each other: every
 * snapshot depending on it is automatic too, and the current state depends on it only when it changed nothing
 * since (its layer then simply becomes the top again). So a user's snapshot layer and the current state's layer are
 * never rewritten by a merge the user did not ask for.
 *
 * `cloneSnapshotIds`: the snapshots of this machine that linked clones hang on. `currentChanged`: whether the
 * current state holds data of its own (only asked when it depends on the target).
 */
export function pruneBlocker(m: Manifest, target: SnapshotRecord, cloneSnapshotIds: ReadonlySet<string>, currentChanged: () => boolean): string | null {
  if (target.auto !== true) return 'it is your own snapshot';
  if (childrenOf(m, target.id).some((c) => c.auto !== true)) return 'a snapshot of yours depends on it (deleting it would rewrite that snapshot\'s layer)';
  const below = subtreeIds(m, target.id);
  if ([...cloneSnapshotIds].some((id) => below.has(id))) return 'a linked clone depends on it';
  if (m.current === target.id && currentChanged()) return 'the current state depends on it and has changed since (deleting it would merge into the current state)';
  return null;
}
