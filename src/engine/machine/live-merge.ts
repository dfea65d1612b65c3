// The merges of a snapshot deletion QEMU does while the machine runs (block jobs), and their recovery. The journal
// lists them as LiveStep; whether one is done is read from the layers' qcow2 headers (the backing file QEMU writes
// when a stream or a non-active commit completes) and, for an active commit, from QEMU's graph while it runs or
// from the pivot the journal recorded. Recovery rolls back only when no step finished and no commit began (a
// stream that did not finish leaves its layer reading the same through the same backing file); otherwise it
// finishes the remaining steps: with QEMU's jobs while the machine runs, with our own qcow2 ops when it is off.
import { dirname, relative, resolve } from 'node:path';
import { commit, rebase } from '../qcow2/ops';
import { blockJobs, filesInUse, flushDisks, followLiveMerge, releaseFiles, resumeMachine, runningPid, runningTops, machineStatus, settleJobs, startLiveMerge, type BlockJobOptions, type LiveMergeJob, type QemuOptions } from '../runtime';
import { setReadOnly } from './fsutil';
import { finish, markForward, rollBack, runMerge, writeJournal, type Journal, type LiveStep } from './journal';
import { layerBacking, setLayerBacking } from './layer-files';
import { writeManifest } from './manifest';
import { step } from './steps';

export interface LiveRunOptions {
  qemu: QemuOptions;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Bytes per second for QEMU's copying (tests); default from the environment (block-jobs.ts). */
  speed?: number;
}

/** The layer's backing file as an absolute path (null: standalone). */
async function backingOf(path: string): Promise<string | null> {
  const b = await layerBacking(path);
  return b === null ? null : resolve(dirname(path), b);
}

async function stepDone(folder: string, s: LiveStep, running: boolean): Promise<boolean> {
  const at = (n: string): string => resolve(folder, n);
  if (s.kind === 'stream') return (await backingOf(at(s.layer))) === (s.onto === null ? null : at(s.onto));
  if (s.overlay !== null) return (await backingOf(at(s.overlay))) === at(s.base);
  if (!running) return s.pivot === 'done';
  const tops = await runningTops(folder);
  return tops !== null && tops[s.disk] !== undefined && resolve(tops[s.disk]!) === at(s.base);
}

function jobOf(folder: string, s: LiveStep): LiveMergeJob {
  const at = (n: string): string => resolve(folder, n);
  // Backing names are written relative, as our own layers store them, so a moved library still opens.
  const nameFrom = (layer: string, target: string): string => relative(dirname(at(layer)), at(target));
  if (s.kind === 'stream') {
    return { kind: 'stream', disk: s.disk, layer: at(s.layer), onto: s.onto === null ? null : at(s.onto), backingName: s.onto === null ? null : nameFrom(s.layer, s.onto) };
  }
  return { kind: 'commit', disk: s.disk, top: at(s.top), base: at(s.base), backingName: s.overlay === null ? null : nameFrom(s.overlay, s.base) };
}

function pivotHooks(folder: string, journal: Journal, s: LiveStep): Pick<BlockJobOptions, 'beforePivot' | 'afterPivot'> {
  if (s.kind !== 'commit') return {};
  return {
    beforePivot: async (stopping) => {
      if (!stopping) return;
      s.pivot = 'pausing';
      await writeJournal(folder, journal);
    },
    afterPivot: async () => {
      s.pivot = 'done';
      await writeJournal(folder, journal);
      step(`${journal.operation}: pivoted ${s.top} to ${s.base}`);
    },
  };
}

/** Layers outside QEMU's chain that read through a committed top now read the same through its base. */
async function repointBranches(folder: string, journal: Journal): Promise<void> {
  for (const s of journal.live ?? []) {
    if (s.kind !== 'commit') continue;
    for (const f of s.repoint) {
      const path = resolve(folder, f);
      if ((await backingOf(path)) === resolve(folder, s.base)) continue;
      await setReadOnly(path, false);
      await setLayerBacking(path, resolve(folder, s.base));
      await setReadOnly(path, true);
    }
  }
}

/**
 * Runs the live steps not yet done, in order. A commit first marks the journal irreversible (durably); until then
 * a cancel (options.signal) stops the running stream with job-cancel and returns 'cancelled' (nothing to undo).
 */
export async function runLiveSteps(folder: string, journal: Journal, options: LiveRunOptions): Promise<'completed' | 'cancelled'> {
  const steps = journal.live ?? [];
  let bytesBefore = 0;
  for (const s of steps) {
    if (await stepDone(folder, s, true)) continue;
    const marked = s.kind === 'commit' && (await markForward(folder, journal));
    if (marked) step(`${journal.operation}: merge marked irreversible`);
    // QEMU reopens what it writes read-write: layers frozen on disk are made writable for the job.
    const writes = s.kind === 'stream' ? [s.layer] : [s.base, ...(s.overlay === null ? [] : [s.overlay])];
    for (const f of writes) await setReadOnly(resolve(folder, f), false);
    const speed = options.speed;
    try {
      await startLiveMerge(folder, s.job, jobOf(folder, s), { ...options.qemu, ...(speed === undefined ? {} : { speed }) });
    } catch (e) {
      // QEMU refused the job: nothing was written, the deletion can still be undone.
      if (marked) {
        journal.forward = false;
        await writeJournal(folder, journal);
      }
      throw e;
    }
    step(`${journal.operation}: block job ${s.job} started`);
    let lastTotal = 0;
    const end = await followLiveMerge(folder, s.job, {
      ...options.qemu,
      ...pivotHooks(folder, journal, s),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      cancellable: () => !journal.forward,
      onProgress: (done, total) => {
        lastTotal = total;
        options.onProgress?.(bytesBefore + done, bytesBefore + total);
      },
    });
    // A cancel that came as the job completed is too late: the layer is re-pointed, the deletion goes on.
    if (end === 'cancelled' && !(await stepDone(folder, s, true))) return 'cancelled';
    bytesBefore += lastTotal;
    // A finished step is not undone (QEMU holds the layer open): from here on the deletion only goes forward.
    await markForward(folder, journal);
    step(`${journal.operation}: block job ${s.job} done`);
  }
  await repointBranches(folder, journal);
  await flushDisks(folder, options.qemu);
  return 'completed';
}

/**
 * After a failure with QEMU still running and nothing irreversible recorded: cancels the jobs QEMU may still run
 * and says whether the deletion can be undone (no step finished), else records that it goes forward.
 */
export async function stopForUndo(folder: string, journal: Journal): Promise<boolean> {
  const cancel = new AbortController();
  cancel.abort();
  for (const s of journal.live ?? []) {
    const present = (await blockJobs(folder)).some((j) => j.id === s.job);
    if (present) await followLiveMerge(folder, s.job, { signal: cancel.signal, cancellable: () => true, pollMs: 20 });
  }
  for (const s of journal.live ?? []) {
    if (await stepDone(folder, s, true)) {
      journal.forward = true;
      await writeJournal(folder, journal);
      return false;
    }
  }
  return true;
}

/** Finishes the steps not done with our own qcow2 operations, QEMU being off (the chain is ours alone). */
async function finishOffline(folder: string, journal: Journal): Promise<void> {
  const at = (n: string): string => resolve(folder, n);
  for (const s of journal.live ?? []) {
    if (await stepDone(folder, s, false)) continue;
    if (s.kind === 'stream') {
      await setReadOnly(at(s.layer), false);
      await rebase(at(s.layer), s.onto === null ? null : at(s.onto));
    } else {
      // The top reads as the truth (a pivot, if any, happened with the guest stopped, so the base read the same):
      // committing it again only writes what the base has or should have.
      await setReadOnly(at(s.base), false);
      await commit(at(s.top), { keepTop: true });
      if (s.overlay !== null) {
        await setReadOnly(at(s.overlay), false);
        await setLayerBacking(at(s.overlay), at(s.base));
      }
    }
  }
  await repointBranches(folder, journal);
}

/**
 * Recovery of a deletion that merged with QEMU's jobs (the caller holds the lock and found the manifest older than
 * the journal's). Jobs QEMU still runs are let finish first (speed limit lifted, an active commit pivoted at READY).
 */
export async function recoverLiveMerge(folder: string, journal: Journal): Promise<'rolled-forward' | 'rolled-back'> {
  const steps = journal.live ?? [];
  let running = (await runningPid(folder)) !== null;
  if (running) {
    for (const s of steps) await settleJobs(folder, [s.job], pivotHooks(folder, journal, s));
    running = (await runningPid(folder)) !== null;
  }
  const done = await Promise.all(steps.map((s) => stepDone(folder, s, running)));
  if (!journal.forward && !done.some(Boolean)) {
    await rollBack(folder, journal);
    await resumeAfterPivot(folder, journal);
    return 'rolled-back';
  }
  await runMerge(folder, journal, {});
  if (running) {
    // Not cancellable here: the journal says forward, or a step already finished.
    journal.forward = true;
    await runLiveSteps(folder, journal, { qemu: {}, speed: 0 });
  } else {
    await finishOffline(folder, journal);
  }
  if (running) await keepFilesInUse(folder, journal);
  await writeManifest(folder, journal.after);
  await finish(folder, journal);
  await resumeAfterPivot(folder, journal);
  return 'rolled-forward';
}

/**
 * Layer files are deleted only once QEMU no longer reads them (it drops a merged node when its job ends); one it
 * still holds after a few seconds is kept on disk rather than pulled from under it.
 */
export async function keepFilesInUse(folder: string, journal: Journal): Promise<void> {
  const files = journal.obsolete.map((f) => resolve(folder, f));
  await releaseFiles(folder, files).catch(() => {});
  const deadline = Date.now() + 3000;
  const inUse = async (of: string[]): Promise<string[]> => [...(await filesInUse(folder, of).catch(() => new Set<string>()))];
  let held = await inUse(files);
  while (held.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    held = await inUse(held);
  }
  journal.obsolete = journal.obsolete.filter((f) => !held.includes(resolve(folder, f)));
}

/** A guest we stopped for a pivot and did not resume (our process died in between) runs again. */
async function resumeAfterPivot(folder: string, journal: Journal): Promise<void> {
  if (!(journal.live ?? []).some((s) => s.kind === 'commit' && s.pivot !== undefined)) return;
  const st = await machineStatus(folder).catch(() => null);
  if (st?.qemuRunState === 'paused') await resumeMachine(folder).catch(() => {});
}
