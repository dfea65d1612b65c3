// QEMU's block jobs on a running machine's disk chain: block-stream (copy a layer's backing data up into it and
// re-point it), block-commit of a layer below the top (merge it down; QEMU re-points the layer above it) and the
// active commit (merge the top down, then pivot with job-complete so QEMU writes into the base from then on).
//
// What QEMU guarantees, and what the machine layer's journal builds on:
// - block-stream only writes into its top layer data that layer already read through its backing chain, and
//   changes the layer's backing file (header and graph) only when the job completes. Interrupted or cancelled,
//   the chain is as it was: the layer reads the same, through the same backing file.
// - block-commit writes the top's data into the base. Until the job completes, the top and every layer above it
//   stay valid and read the same (they shadow what was written into the base), but the base alone no longer reads
//   as it did: a commit that began can be finished (again) but not undone. A non-active commit completes by
//   itself and then rewrites the backing file string of the layer above the top (to `backingName` here).
// - An active commit never completes by itself: at READY the base holds all of the top, and job-complete swaps
//   the base in (the pivot). No header changes on disk then; only QEMU's graph tells which file is written.
//   We stop the guest around the pivot, so the base reads exactly as the top did at that instant.
// Jobs run with auto-finalize (QEMU changes the graph on its own when done, also when our process is gone) and
// without auto-dismiss, so a finished job keeps its error for us to read (then we dismiss it). Each call takes its
// own short QMP connection: QEMU serves one QMP client at a time and a job may run for long.
import { resolve } from 'node:path';
import { QemuError } from './errors';
import { withMachine } from './control';
import { sleep } from './process';
import { runtimeInfo, type QemuOptions } from './qemu';
import { formatNodeFiles } from './block-nodes';
import type { QmpClient } from './qmp';

export interface JobInfo {
  id: string;
  type: string;
  /** created, running, paused, ready, standby, waiting, pending, aborting, concluded, null. */
  status: string;
  'current-progress': number;
  'total-progress': number;
  error?: string;
}

export type LiveMergeJob =
  /** Copy into `layer` what it reads through the layers above `onto`, then back it by `onto` (null: standalone). */
  | { kind: 'stream'; disk: number; layer: string; onto: string | null; backingName: string | null }
  /** Merge `top` into its backing file `base`; an active commit when `top` is the disk's top layer. */
  | { kind: 'commit'; disk: number; top: string; base: string; backingName: string | null };

export interface BlockJobOptions extends QemuOptions {
  /** Bytes per second QEMU may copy (0: no limit). Default: $VMSNAP_TEST_BLOCK_JOB_SPEED (tests only), else 0. */
  speed?: number;
  onProgress?: (done: number, total: number) => void;
  /** Cancels the job (job-cancel): honoured only while `cancellable()` says so. */
  signal?: AbortSignal;
  cancellable?: () => boolean;
  /** Active commit: called (awaited) just before the pivot, with the guest stopped if it ran. */
  beforePivot?: (guestStopped: boolean) => Promise<void>;
  /** Active commit: called (awaited) right after the pivot, before the guest runs again. */
  afterPivot?: () => Promise<void>;
  /** How often the job is polled (default 200 ms). */
  pollMs?: number;
}

/** Format nodes (not protocol nodes) by the absolute path of the file they read. */
async function formatNodes(qmp: QmpClient): Promise<Map<string, string>> {
  const byFile = new Map<string, string>();
  for (const [node, file] of await formatNodeFiles(qmp)) if (!byFile.has(file)) byFile.set(file, node);
  return byFile;
}

/** Which of `files` a node of the running machine still reads (a layer file is deleted only when none does). */
export async function filesInUse(folder: string, files: readonly string[], options: QemuOptions = {}): Promise<Set<string>> {
  if (files.length === 0 || (await runtimeInfo(folder)) === null) return new Set();
  return withMachine(folder, options, async (qmp) => {
    const nodes = await formatNodes(qmp);
    return new Set(files.filter((f) => nodes.has(resolve(f))));
  });
}

/**
 * Lets QEMU close layer files a job dropped from the chain: a node added with blockdev-add (a live snapshot's new
 * top) stays as a named node after that until it is deleted. blockdev-del refuses a node still in use: ignored.
 */
export async function releaseFiles(folder: string, files: readonly string[], options: QemuOptions = {}): Promise<void> {
  if ((await runtimeInfo(folder)) === null) return;
  await withMachine(folder, options, async (qmp) => {
    // A dropped node may still be the backing of another dropped one: delete from the top down, pass by pass.
    let left = files.map((f) => resolve(f));
    for (let pass = 0; pass < files.length && left.length > 0; pass++) {
      const nodes = await formatNodes(qmp);
      const still: string[] = [];
      for (const f of left) {
        const node = nodes.get(f);
        if (node === undefined) continue;
        const gone = await qmp.execute('blockdev-del', { 'node-name': node }).then(() => true, () => false);
        if (!gone) still.push(f);
      }
      if (still.length === left.length) break;
      left = still;
    }
  });
}

/**
 * Makes what the jobs wrote durable before the layers they replaced are deleted: a flush of each disk's chain
 * (QEMU keeps qcow2 metadata in its own cache until a flush). Through HMP's qemu-io, as QMP has no flush command.
 */
export async function flushDisks(folder: string, options: QemuOptions = {}): Promise<void> {
  const info = await runtimeInfo(folder);
  if (info === null) return;
  await withMachine(folder, options, async (qmp) => {
    for (const drive of info.drives) await qmp.hmp(`qemu-io ${drive} "flush"`);
  });
}

/** Every block job QEMU has for the machine (running, ready, concluded...), or [] when it is off. */
export async function blockJobs(folder: string, options: QemuOptions = {}): Promise<JobInfo[]> {
  if ((await runtimeInfo(folder)) === null) return [];
  return withMachine(folder, options, (qmp) => qmp.execute<JobInfo[]>('query-jobs'));
}

function defaultSpeed(): number {
  const v = Number(process.env['VMSNAP_TEST_BLOCK_JOB_SPEED'] ?? '');
  return Number.isInteger(v) && v > 0 ? v : 0;
}

/** Starts the job under `jobId` (throws what QEMU refused; nothing changed then). */
export async function startLiveMerge(folder: string, jobId: string, job: LiveMergeJob, options: BlockJobOptions = {}): Promise<void> {
  const info = await runtimeInfo(folder);
  if (info === null) throw new QemuError('NOT_RUNNING', `The machine in ${folder} is not running.`);
  const drive = info.drives[job.disk];
  if (drive === undefined) throw new QemuError('INVALID_ARGUMENT', `The machine has no disk ${job.disk}.`);
  const speed = options.speed ?? defaultSpeed();
  await withMachine(folder, options, async (qmp) => {
    const nodes = await formatNodes(qmp);
    const node = (file: string): string => {
      const n = nodes.get(resolve(file));
      if (n === undefined) throw new QemuError('QMP_ERROR', `QEMU does not read ${file} for the machine in ${folder}: its disk chain is not what the manifest says.`);
      return n;
    };
    const common = { 'job-id': jobId, device: drive, speed, 'auto-dismiss': false };
    if (job.kind === 'stream') {
      const args: Record<string, unknown> = { ...common, device: node(job.layer) };
      if (job.onto !== null) args['base-node'] = node(job.onto);
      if (job.backingName !== null) args['backing-file'] = job.backingName;
      await qmp.execute('block-stream', args);
    } else {
      const args: Record<string, unknown> = { ...common, 'top-node': node(job.top), 'base-node': node(job.base) };
      if (job.backingName !== null) args['backing-file'] = job.backingName;
      await qmp.execute('block-commit', args);
    }
  });
}

export type JobEnd = 'completed' | 'cancelled';

/**
 * Follows a started job to its end: progress, cancellation (while allowed), the pivot of an active commit at
 * READY. Dismisses the finished job. Throws QMP_ERROR with QEMU's words when the job failed, and what QMP throws
 * when QEMU ends meanwhile (the chain on disk is then as the file comment says).
 */
export async function followLiveMerge(folder: string, jobId: string, options: BlockJobOptions = {}): Promise<JobEnd> {
  const pollMs = options.pollMs ?? 200;
  let cancelSent = false;
  while (true) {
    const job = (await blockJobs(folder, options)).find((j) => j.id === jobId);
    if (job === undefined) throw new QemuError('QMP_ERROR', `QEMU has no block job ${jobId} any more.`);
    options.onProgress?.(job['current-progress'], job['total-progress']);
    if (job.status === 'concluded') {
      await withMachine(folder, options, (qmp) => qmp.execute('job-dismiss', { id: jobId }));
      if (cancelSent) return 'cancelled';
      if (job.error !== undefined) throw new QemuError('QMP_ERROR', `QEMU's block job ${jobId} failed: ${job.error}`);
      return 'completed';
    }
    if (!cancelSent && options.signal?.aborted && (options.cancellable?.() ?? true)) {
      await withMachine(folder, options, (qmp) => qmp.execute('job-cancel', { id: jobId }));
      cancelSent = true;
    } else if (job.status === 'ready' && !cancelSent) {
      await pivot(folder, jobId, options);
    }
    await sleep(pollMs);
  }
}

/**
 * job-complete of an active commit with the guest stopped, so the base reads exactly as the top did. One connection
 * for all of it: the guest stays stopped no longer than QEMU needs (the hooks only write the journal, never QMP).
 */
async function pivot(folder: string, jobId: string, options: BlockJobOptions): Promise<void> {
  await withMachine(folder, options, async (qmp) => {
    const running = (await qmp.execute<{ status: string }>('query-status')).status === 'running';
    await options.beforePivot?.(running);
    if (running) await qmp.execute('stop');
    try {
      await qmp.execute('job-complete', { id: jobId });
      await waitConcluded(qmp, jobId);
      await options.afterPivot?.();
    } finally {
      if (running) await qmp.execute('cont');
    }
  });
}

async function waitConcluded(qmp: QmpClient, jobId: string): Promise<void> {
  for (let i = 0; i < 5000; i++) {
    const job = (await qmp.execute<JobInfo[]>('query-jobs')).find((j) => j.id === jobId);
    if (job === undefined || job.status === 'concluded') return;
    await sleep(2);
  }
  throw new QemuError('TIMEOUT', `QEMU did not finish the pivot of block job ${jobId}.`);
}

/**
 * Lets jobs a killed process left running end (recovery): lifts their speed limit, pivots an active commit at
 * READY (via `options`), dismisses them. Returns the ids that were found.
 */
export async function settleJobs(folder: string, jobIds: readonly string[], options: BlockJobOptions = {}): Promise<string[]> {
  const quiet = { ...options };
  delete quiet.signal; // recovery never cancels
  const found = (await blockJobs(folder, options)).filter((j) => jobIds.includes(j.id));
  for (const job of found) {
    if (job.status === 'running') await withMachine(folder, options, (qmp) => qmp.execute('block-job-set-speed', { device: job.id, speed: 0 })).catch(() => {});
    await followLiveMerge(folder, job.id, { ...quiet, pollMs: 50 }).catch((e: unknown) => {
      // A failed job left the chain readable; recovery looks at the headers either way.
      if (!(e instanceof QemuError) || e.code !== 'QMP_ERROR') throw e;
    });
  }
  return found.map((j) => j.id);
}
