// Snapshots of a running machine, and starting a machine again from one.
//
// Taking one with memory, pausing the guest as briefly as VMware does:
//  1. while the guest runs: create the new top layers (our qcow2 library; backing = the current top, by
//     relative path) and attach them to QEMU (blockdev-add, backing null), invisible to the guest so far;
//  2. start `migrate` to `exec:` a file with the capability pause-before-switchover: QEMU copies the RAM while
//     the guest keeps running, then stops the guest and waits (state pre-switchover, disks still active);
//  3. in that stop: switch every disk to its new top in one QMP `transaction` of blockdev-snapshot actions,
//     then `migrate-continue`: QEMU writes the last dirty pages and the device state;
//  4. `cont`. Disks and memory describe the one instant the guest stopped at.
// pauseMs is that stop as QEMU saw it: from its STOP event to its RESUME event (their QEMU timestamps).
// QEMU waits for the `exec:` command to exit before it lets the guest resume, so that command is only `cat`
// plus a marker file made by a shell builtin; the state is synced and renamed to its name after the resume.
// A disk-only snapshot is just the transaction, which is atomic on its own: no pause at all; when the guest's
// agent answers, its file systems are frozen around it (quiesced: consistent like a clean shutdown).
// A thumbnail of the screen is dumped raw (PPM) right after the transaction, inside the stop, and made a small PNG
// once the guest runs again (see thumbnail.ts).
import { open, rename, rm, stat, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Qcow2Image } from '../qcow2';
import { QemuError, isQemuError, type SwitchedDisks } from './errors';
import { sleep, waitForExit } from './process';
import { runtimeFiles } from './files';
import type { DisplayDevice } from './display';
import { fileNodeName, formatNodeFiles } from './block-nodes';
import type { QmpClient } from './qmp';
import { withFrozenGuest, type QuiesceOptions, type QuiesceOutcome } from './guest-actions';
import { connectMachine, stopMachine } from './control';
import { machineStatus, runtimeInfo, shellQuote, type MachineConfig, type QemuOptions, type RuntimeInfo } from './qemu';
import { qemuWords, startMachine, type StartResult } from './start';
import { dumpRawScreen, finishThumbnail, rawScreenFile } from './thumbnail';

export interface RunningSnapshotRequest {
  /** Where each disk's new top layer goes, in disk order (created here; they must not exist). */
  newTops: string[];
  /** Where the memory and device state goes; null for a disk-only snapshot (no pause at all). */
  stateFile: string | null;
  /** Where a PNG thumbnail of the screen at that instant goes; null or absent: none. */
  thumbnail?: string | null;
}

export interface RunningSnapshotResult {
  /** The former top layers, now frozen: the snapshot's layers, one per disk. */
  frozenLayers: string[];
  /** The new top layers QEMU writes into: the machine's current state. */
  newTops: string[];
  stateFile: string | null;
  /** Size of the state file in bytes (0 for disk-only). */
  stateBytes: number;
  /** How long the guest did not run (0 for disk-only). */
  pauseMs: number;
  totalMs: number;
  /** The CPUs and memory QEMU runs with (a state loads only with them; the manifest may have changed since). */
  cpus: number;
  memoryMiB: number;
  /** The machine type and accelerator the state was saved with: load it with the same. */
  machineType: string;
  accel: 'kvm' | 'tcg';
  qemuVersion: string;
  /** The ISO in the CD-ROM drive when the state was saved (the state loads only with a CD drive), else null. */
  cdrom: string | null;
  /** The display device the state was saved with (the state loads only into it); 'none' for a headless machine. */
  display: DisplayDevice;
  /** The guest runs again afterwards (false when it was paused before and stays paused). */
  resumed: boolean;
  /** The thumbnail written, or null (none asked, or QEMU had no screen to dump). */
  thumbnail: string | null;
  /** How long the raw screendump took inside the stop (0 without one). */
  screenMs: number;
  /** The machine has the guest agent's channel (a state saved now loads only with it). */
  guestAgent: boolean;
  /** Disk-only: whether the guest's file systems were frozen at the switch, and why not; null with memory. */
  quiesce: QuiesceOutcome | null;
}

export interface SnapshotOptions extends QemuOptions {
  /** Time-out for saving the memory state (default 120000 ms). */
  stateTimeoutMs?: number;
  /** Time-outs of the guest agent that quiesces a disk-only snapshot. */
  quiesce?: QuiesceOptions;
}

interface BlockInfo {
  device: string;
  inserted?: { file: string; 'node-name': string };
}

/** The file each drive's top node writes into, from QEMU's graph. */
async function topFiles(qmp: QmpClient, drives: readonly string[], folder: string): Promise<{ drive: string; file: string; node: string }[]> {
  const blocks = await qmp.execute<BlockInfo[]>('query-block');
  const files = await formatNodeFiles(qmp);
  return drives.map((drive) => {
    const b = blocks.find((x) => x.device === drive);
    if (!b?.inserted) throw new QemuError('QMP_ERROR', `QEMU has no disk ${drive} for the machine in ${folder}.`);
    const node = b.inserted['node-name'];
    const file = files.get(node);
    if (file === undefined) throw new QemuError('QMP_ERROR', `Cannot tell which file QEMU's ${drive} writes into (${b.inserted.file.slice(0, 200)}).`);
    return { drive, file, node };
  });
}

/**
 * The files QEMU writes into, per disk, while the machine runs (null when it is off). Recovery after a crash in
 * the middle of a running snapshot compares them with the manifest: QEMU's view is the truth.
 */
export async function runningTops(folder: string, options: QemuOptions = {}): Promise<string[] | null> {
  const info = await runtimeInfo(folder);
  if (info === null) return null;
  const qmp = await connectMachine(folder, options);
  try {
    return (await topFiles(qmp, info.drives, folder)).map((t) => t.file);
  } finally {
    qmp.close();
  }
}

/** Takes a snapshot of a running (or paused) machine; see the file comment for the steps. */
export async function snapshotRunning(folder: string, request: RunningSnapshotRequest, options: SnapshotOptions = {}): Promise<RunningSnapshotResult> {
  const t0 = performance.now();
  const info = await runtimeInfo(folder);
  if (info === null) throw new QemuError('NOT_RUNNING', `The machine in ${folder} is not running: take an ordinary snapshot instead.`);
  const qmp = await connectMachine(folder, options);
  try {
    const tops = await topFiles(qmp, info.drives, folder);
    if (request.newTops.length !== tops.length) {
      throw new QemuError('INVALID_ARGUMENT', `The machine has ${tops.length} disk(s) but ${request.newTops.length} new top layer(s) were given.`);
    }
    const newTops = request.newTops.map((p) => resolve(p));
    if (request.stateFile !== null && (await stat(request.stateFile).then(() => true, () => false))) {
      throw new QemuError('INVALID_ARGUMENT', `The state file ${resolve(request.stateFile)} already exists: pick a new name.`);
    }
    const frozenLayers = tops.map((t) => t.file);
    const stamp = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    const overlayNodes = newTops.map((_, i) => `top-${stamp}-${i}`);

    // Outside the pause: create and attach the new layers (empty; the guest cannot see them yet).
    const created: string[] = [];
    const added: string[] = [];
    const undo = async (): Promise<void> => {
      for (const node of added) await qmp.execute('blockdev-del', { 'node-name': node }).catch(() => {});
      for (const file of created) await unlink(file).catch(() => {});
    };
    try {
      for (const [i, top] of tops.entries()) {
        await Qcow2Image.create(newTops[i]!, { backingFile: top.file });
        created.push(newTops[i]!);
      }
      for (const [i, file] of newTops.entries()) {
        await qmp.execute('blockdev-add', {
          driver: 'qcow2',
          'node-name': overlayNodes[i],
          file: { driver: 'file', filename: file, 'node-name': fileNodeName(overlayNodes[i]!) },
          backing: null,
        });
        added.push(overlayNodes[i]!);
      }
    } catch (e) {
      await undo();
      throw e;
    }

    const wasRunning = (await qmp.execute<{ status: string }>('query-status')).status === 'running';
    const snapshotDisks = (): Promise<unknown> =>
      qmp.execute('transaction', {
        actions: tops.map((t, i) => ({ type: 'blockdev-snapshot', data: { node: t.node, overlay: overlayNodes[i] } })),
      });
    const thumbnail = request.thumbnail == null ? null : resolve(request.thumbnail);
    let screenMs = 0;
    let screenDumped = false;
    /** The raw screendump; a screen QEMU cannot dump (no display device) only means no thumbnail. */
    const dumpScreen = async (): Promise<void> => {
      if (thumbnail === null) return;
      const s0 = performance.now();
      screenDumped = await dumpRawScreen(qmp, rawScreenFile(thumbnail)).then(() => true, () => false);
      screenMs = performance.now() - s0;
    };
    const thumbnailDone = async (): Promise<string | null> => (thumbnail !== null && screenDumped && (await finishThumbnail(thumbnail)) ? thumbnail : null);
    const stateFile = request.stateFile === null ? null : resolve(request.stateFile);
    if (stateFile === null) {
      let quiesce: QuiesceOutcome;
      try {
        ({ quiesce } = await withFrozenGuest(qmp, info.agentSocket, wasRunning, snapshotDisks, options.quiesce));
      } catch (e) {
        await undo();
        throw e;
      }
      await dumpScreen();
      return { frozenLayers, newTops, stateFile, stateBytes: 0, pauseMs: 0, totalMs: performance.now() - t0, ...about(info), resumed: wasRunning, thumbnail: await thumbnailDone(), screenMs, quiesce };
    }

    const saved = await saveStateAround(qmp, stateFile, options, {
      atSwitchover: async () => {
        await snapshotDisks();
        await dumpScreen();
      },
      undo,
      switched: { frozenLayers, newTops },
      wasRunning,
    }).catch(async (e: unknown) => {
      if (thumbnail !== null) await rm(rawScreenFile(thumbnail), { force: true });
      throw e;
    });
    const thumbnailWritten = await thumbnailDone();
    let stateBytes: number;
    try {
      stateBytes = await waitForStateFile(stateFile, options.stateTimeoutMs ?? 120000);
    } catch (e) {
      await removeStateFiles(stateFile);
      throw new QemuError('STATE_SAVE_FAILED', `The disks were switched to new layers but the memory state was not written (${e instanceof Error ? e.message : String(e)}); the snapshot holds the disks only.`, {
        cause: e,
        switched: { frozenLayers, newTops },
      });
    }
    return { frozenLayers, newTops, stateFile, stateBytes, pauseMs: saved.pauseMs, totalMs: performance.now() - t0, ...about(info), resumed: wasRunning, thumbnail: thumbnailWritten, screenMs, quiesce: null };
  } finally {
    qmp.close();
  }
}

function about(info: RuntimeInfo): Pick<RunningSnapshotResult, 'cpus' | 'memoryMiB' | 'machineType' | 'accel' | 'qemuVersion' | 'cdrom' | 'display' | 'guestAgent'> {
  const arg = (flag: string): string => info.argv[info.argv.indexOf(flag) + 1] ?? '';
  return {
    cpus: Number.parseInt(arg('-smp'), 10),
    memoryMiB: Number.parseInt(arg('-m'), 10),
    machineType: info.machineType,
    accel: info.accel,
    qemuVersion: info.qemuVersion,
    cdrom: info.cdrom ?? null,
    display: info.display ?? 'none',
    guestAgent: info.agentSocket !== undefined,
  };
}

interface Switchover {
  /** Runs while QEMU holds the guest stopped before writing the device state (the disk transaction). */
  atSwitchover: () => Promise<unknown>;
  /** Undoes the preparations when the switchover action fails. */
  undo: () => Promise<void>;
  switched: SwitchedDisks;
  wasRunning: boolean;
}

/** QEMU's migration status: setup, active, pre-switchover, device, completed, failed, cancelling, cancelled. */
type MigrationStatus = string;

/**
 * Saves RAM and device state into `stateFile` with a live migration that stops the guest only for the last
 * dirty pages, the device state and `atSwitchover`. Resolves once the guest runs again (or stays paused).
 */
async function saveStateAround(qmp: QmpClient, stateFile: string, options: SnapshotOptions, step: Switchover): Promise<{ pauseMs: number }> {
  const timeoutMs = options.stateTimeoutMs ?? 120000;
  const partial = partialName(stateFile);
  await unlink(partial).catch(() => {});
  await unlink(doneMarker(stateFile)).catch(() => {});
  const statuses: MigrationStatus[] = [];
  let stopAt: number | null = null;
  let resumeAt: number | null = null;
  let wake: (() => void) | null = null;
  const off = qmp.onEvent((e) => {
    const at = e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000;
    if (e.event === 'MIGRATION' && typeof e.data['status'] === 'string') statuses.push(e.data['status']);
    else if (e.event === 'STOP') stopAt = at;
    else if (e.event === 'RESUME') resumeAt = at;
    wake?.();
  });
  /** Waits for one of the migration states (from events; query-migrate as a fallback every 100 ms). */
  const until = async (wanted: MigrationStatus[], deadline: number, onSlow?: () => Promise<void>): Promise<MigrationStatus> => {
    let slowDone = false;
    while (true) {
      const hit = statuses.find((s) => wanted.includes(s) || s === 'failed' || s === 'cancelled');
      if (hit !== undefined) return hit;
      const now = Date.now();
      if (now > deadline) throw new QemuError('TIMEOUT', `Saving the memory state took longer than ${timeoutMs} ms`);
      if (onSlow && !slowDone && now > deadline - timeoutMs / 2) {
        slowDone = true;
        await onSlow();
      }
      const woken = await new Promise<boolean>((r) => {
        const t = setTimeout(() => r(false), 100);
        wake = () => {
          clearTimeout(t);
          r(true);
        };
      });
      wake = null;
      if (woken) continue; // an event came: look at it first, no extra round trip inside the pause
      const polled = (await qmp.execute<{ status?: string }>('query-migrate')).status;
      if (polled !== undefined && !statuses.includes(polled)) statuses.push(polled);
    }
  };
  /** Cancels the migration and waits for QEMU to finish cancelling (a running guest resumes by itself). */
  const cancel = async (): Promise<void> => {
    await qmp.execute('migrate_cancel').catch(() => {});
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      const m = await qmp.execute<{ status?: string }>('query-migrate').catch(() => null);
      if (m?.status !== 'cancelling' && m?.status !== 'pre-switchover') return;
      await sleep(5);
    }
  };
  const failure = async (): Promise<string> => {
    const m = await qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate').catch(() => null);
    return m?.['error-desc'] ?? `the state save was ${m?.status ?? 'stopped'}`;
  };
  try {
    await qmp.execute('migrate-set-capabilities', {
      capabilities: [
        { capability: 'events', state: true },
        { capability: 'pause-before-switchover', state: true },
      ],
    });
    // Unlimited bandwidth (the default 128 MiB/s only stretches the save); stop for at most ~100 ms of pages.
    await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 2 ** 40, 'downtime-limit': 100 });
  } catch (e) {
    await step.undo();
    throw e;
  }
  const deadline = Date.now() + timeoutMs;
  try {
    // QEMU waits for this command to exit before the guest can resume, so it stays cheap: cat, then a marker
    // made by a shell builtin (no second process) that says cat has written everything.
    await qmp.execute('migrate', { uri: `exec:cat > ${shellQuote(partial)} && : > ${shellQuote(doneMarker(stateFile))}` });
    // A guest that dirties RAM faster than it is copied never converges: halfway to the time-out, accept a longer stop.
    const reached = await until(['pre-switchover'], deadline, () => qmp.execute('migrate-set-parameters', { 'downtime-limit': 10000 }).then(() => {}));
    if (reached !== 'pre-switchover') throw new QemuError('STATE_SAVE_FAILED', await failure());
  } catch (e) {
    await cancel();
    await step.undo();
    await removeStateFiles(stateFile);
    throw isQemuError(e) && e.code === 'STATE_SAVE_FAILED' ? e : new QemuError('STATE_SAVE_FAILED', `The memory state could not be saved: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  try {
    await step.atSwitchover();
  } catch (e) {
    // Cancelling in pre-switchover lets QEMU resume a guest that was running.
    await cancel();
    await step.undo();
    await removeStateFiles(stateFile);
    throw e;
  }
  // From here the guest writes into the new tops: any failure must tell the caller about them.
  try {
    await qmp.execute('migrate-continue', { state: 'pre-switchover' });
    const end = await until(['completed'], deadline);
    if (end !== 'completed') throw new QemuError('STATE_SAVE_FAILED', await failure());
    // 'completed' is announced just before QEMU leaves its finish-migrate run state; `cont` is refused until then.
    while ((await qmp.execute<{ status: string }>('query-status')).status === 'finish-migrate') await sleep(1);
    // After a completed save QEMU's disks are inactive until `cont`; a machine paused before gets cont + stop.
    await qmp.execute('cont');
    if (!step.wasRunning) await qmp.execute('stop');
  } catch (e) {
    if (step.wasRunning) await qmp.execute('cont').catch(() => {});
    await removeStateFiles(stateFile);
    const why = e instanceof Error ? e.message : String(e);
    throw new QemuError('STATE_SAVE_FAILED', `The disks were switched to new layers but the memory state could not be saved (${why}); the snapshot holds the disks only.`, {
      cause: e,
      switched: step.switched,
    });
  } finally {
    off();
    await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'pause-before-switchover', state: false }] }).catch(() => {});
  }
  const start = stopAt as number | null;
  const end = resumeAt as number | null;
  return { pauseMs: step.wasRunning && start !== null && end !== null ? end - start : 0 };
}

/** The temporary name the state is written under until complete: a reader never sees half a state. */
function partialName(stateFile: string): string {
  return `${stateFile}.partial`;
}

/** Made once `cat` has written the whole stream. */
function doneMarker(stateFile: string): string {
  return `${stateFile}.done`;
}

async function removeStateFiles(stateFile: string): Promise<void> {
  await unlink(partialName(stateFile)).catch(() => {});
  await unlink(doneMarker(stateFile)).catch(() => {});
}

/** Waits for cat's done marker, syncs the state, and moves it to its name; returns its size. */
async function waitForStateFile(stateFile: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  const partial = partialName(stateFile);
  while (!(await stat(doneMarker(stateFile)).then(() => true, () => false))) {
    if (Date.now() > deadline) throw new QemuError('TIMEOUT', `The state file ${stateFile} was not complete within ${timeoutMs} ms.`);
    await sleep(2);
  }
  const fh = await open(partial, 'r');
  let size: number;
  try {
    await fh.sync();
    size = (await fh.stat()).size;
  } finally {
    await fh.close();
  }
  await rename(partial, stateFile);
  await unlink(doneMarker(stateFile)).catch(() => {});
  return size;
}

export interface StartFromStateOptions extends QemuOptions {
  /** Leave the machine paused after loading (default: resume it). */
  paused?: boolean;
  /** Time-out for loading the state (default 120000 ms). */
  loadTimeoutMs?: number;
}

export interface StartFromStateResult extends StartResult {
  /** From spawning QEMU until the state was loaded. */
  loadMs: number;
  /** From spawning QEMU until the guest runs again. */
  totalMs: number;
}

/**
 * Starts QEMU on a snapshot's layers (config.disks: new, empty top layers over the snapshot's layers, made by
 * the caller) with the saved state as an incoming migration, then resumes it. config must describe the same
 * devices as when the state was saved, with the machine type the snapshot recorded.
 */
export async function startFromState(config: MachineConfig, stateFile: string, options: StartFromStateOptions = {}): Promise<StartFromStateResult> {
  const t0 = performance.now();
  const file = resolve(stateFile);
  const size = await stat(file).then((s) => s.size, () => -1);
  if (size <= 0) throw new QemuError('STATE_LOAD_FAILED', `The saved state ${file} is missing or empty: revert to the snapshot's disks only, or pick another snapshot.`);
  const loadFailed = async (cause: unknown): Promise<QemuError> => {
    const said = (await qemuWords(config.folder)) || `see ${runtimeFiles(config.folder).qemuLog}`;
    return new QemuError(
      'STATE_LOAD_FAILED',
      `QEMU could not load the saved state ${file} (${said}): it was saved with another device configuration or QEMU version; revert to the snapshot's disks only.`,
      { cause },
    );
  };
  let started: StartResult;
  try {
    started = await startMachine(config, { ...options, incomingStateFile: file });
  } catch (e) {
    // A bad state can make QEMU exit before it even answers QMP.
    throw isQemuError(e) && e.code === 'START_FAILED' ? await loadFailed(e) : e;
  }
  const deadline = Date.now() + (options.loadTimeoutMs ?? 120000);
  let qmp: QmpClient;
  try {
    qmp = await connectMachine(config.folder, options);
  } catch (e) {
    throw isQemuError(e) ? await loadFailed(e) : e;
  }
  try {
    // QEMU leaves 'inmigrate' once the whole state is in; with -S it then waits paused for `cont`.
    while ((await qmp.execute<{ status: string }>('query-status')).status === 'inmigrate') {
      if (Date.now() > deadline) {
        await stopMachine(config.folder, { force: true }).catch(() => {});
        throw new QemuError('TIMEOUT', `Loading the saved state ${file} took longer than ${options.loadTimeoutMs ?? 120000} ms.`);
      }
      await sleep(2);
    }
    const loadMs = performance.now() - t0;
    if (!options.paused) await qmp.execute('cont');
    const runState = (await qmp.execute<{ status: string }>('query-status')).status;
    return { ...started, powerState: runState === 'running' ? 'running' : 'paused', qemuRunState: runState, loadMs, totalMs: performance.now() - t0 };
  } catch (e) {
    // A state QEMU cannot load makes it exit: the connection drops.
    if (isQemuError(e) && (await waitForExit(started.pid ?? 0, 3000))) {
      await machineStatus(config.folder).catch(() => {}); // cleans the dead process's files
      throw await loadFailed(e);
    }
    throw e;
  } finally {
    qmp.close();
  }
}

