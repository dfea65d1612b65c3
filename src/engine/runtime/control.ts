// A running machine's power: pause, resume, and stopping it (ACPI power button, then the guest agent's shutdown,
// then QMP quit, then a kill).
import { rm } from 'node:fs/promises';
import { QemuError, isQemuError } from './errors';
import { runtimeFiles } from './files';
import { agentShutdown } from './guest-actions';
import { waitForExit } from './process';
import { QmpClient } from './qmp';
import { cleanStale, livePid, machineStatus, readInfo, type QemuOptions, type RuntimeStatus } from './qemu';

/** Connects to the running machine's QMP, or throws NOT_RUNNING. */
export async function connectMachine(folder: string, options: QemuOptions = {}): Promise<QmpClient> {
  const files = runtimeFiles(folder);
  const pid = await livePid(files);
  if (pid === null) {
    await cleanStale(files);
    throw new QemuError('NOT_RUNNING', `The machine in ${files.folder} is not running; start it first.`);
  }
  return QmpClient.connect(files.qmpSocket, options.qmp);
}

/** Runs `fn` with one QMP connection to the running machine (QEMU serves one QMP client at a time). */
export async function withMachine<T>(folder: string, options: QemuOptions, fn: (qmp: QmpClient) => Promise<T>): Promise<T> {
  const qmp = await connectMachine(folder, options);
  try {
    return await fn(qmp);
  } finally {
    qmp.close();
  }
}

export async function pauseMachine(folder: string, options: QemuOptions = {}): Promise<RuntimeStatus> {
  await withMachine(folder, options, (qmp) => qmp.execute('stop'));
  return machineStatus(folder, options);
}

export async function resumeMachine(folder: string, options: QemuOptions = {}): Promise<RuntimeStatus> {
  await withMachine(folder, options, (qmp) => qmp.execute('cont'));
  return machineStatus(folder, options);
}

export interface StopOptions extends QemuOptions {
  /** Skip the ACPI power button: quit QEMU at once (like pulling the plug; QEMU still flushes its images). */
  force?: boolean;
  /** How long the guest gets to shut down after the ACPI power button (default 60000 ms). */
  powerdownTimeoutMs?: number;
  /**
   * When a guest with an agent has not reacted to the ACPI power button after this long (default: a third of
   * powerdownTimeoutMs, at most 20000 ms), its agent is asked to shut it down for the rest of the time.
   */
  acpiGraceMs?: number;
  /**
   * False: when the guest has not shut down by the time-out (or `signal` aborts the wait), leave it running and
   * report 'still-running', so the user decides whether to force it off. Default true: quit QEMU then.
   */
  quitAfterTimeout?: boolean;
  /** Stops waiting for the guest (with `quitAfterTimeout: false`; the power button stays pressed). */
  signal?: AbortSignal;
}

export interface StopResult {
  /**
   * How the process ended: the guest shut down on the ACPI power button, or (ignoring it) on its agent's request,
   * QEMU quit, or it was killed; 'already-off' when nothing ran; 'still-running' when the guest did not shut down
   * and `quitAfterTimeout` was false.
   */
  method: 'already-off' | 'acpi' | 'agent' | 'quit' | 'kill' | 'still-running';
  ms: number;
}

/**
 * Powers the machine off: the ACPI power button and up to `powerdownTimeoutMs` for the guest to shut down (a
 * guest that ignores the button but has an agent is asked by the agent after `acpiGraceMs`), then QMP `quit`,
 * then SIGKILL. A paused machine is resumed first so its guest can see the button.
 */
export async function stopMachine(folder: string, options: StopOptions = {}): Promise<StopResult> {
  const files = runtimeFiles(folder);
  const t0 = performance.now();
  const pid = await livePid(files);
  if (pid === null) {
    await cleanStale(files);
    return { method: 'already-off', ms: 0 };
  }
  const done = async (method: StopResult['method']): Promise<StopResult> => {
    await cleanStale(files);
    return { method, ms: performance.now() - t0 };
  };
  let qmp: QmpClient | null = null;
  try {
    qmp = await QmpClient.connect(files.qmpSocket, { connectTimeoutMs: 5000, ...options.qmp });
  } catch (e) {
    if (!isQemuError(e)) throw e; // QMP unreachable: fall through to the signal
  }
  try {
    if (qmp !== null && !options.force) {
      const state = await qmp.execute<{ status: string }>('query-status');
      if (state.status !== 'running') await qmp.execute('cont').catch(() => {});
      await qmp.execute('system_powerdown');
      const timeoutMs = options.powerdownTimeoutMs ?? 60000;
      const graceMs = Math.min(options.acpiGraceMs ?? Math.min(timeoutMs / 3, 20000), timeoutMs);
      if (await waitForExit(pid, graceMs, 20, options.signal)) return await done('acpi');
      // A guest shutting down stops its agent early (the channel closes): mostly a guest that ignored the button is asked.
      const asked = options.signal?.aborted === true ? false : await agentShutdown(qmp, (await readInfo(files))?.agentSocket).catch(() => false);
      if (await waitForExit(pid, Math.max(0, timeoutMs - (performance.now() - t0)), 20, options.signal)) return await done(asked ? 'agent' : 'acpi');
      if (options.quitAfterTimeout === false) return { method: 'still-running', ms: performance.now() - t0 };
    }
    if (qmp !== null && !qmp.closed) {
      await qmp.execute('quit', undefined, 5000).catch(() => {}); // the reply may race the socket closing
      if (await waitForExit(pid, 10000)) return await done('quit');
    }
    process.kill(pid, 'SIGKILL');
    if (!(await waitForExit(pid, 10000))) {
      throw new QemuError('TIMEOUT', `QEMU (pid ${pid}) did not end after SIGKILL; check the process and try again.`);
    }
    return await done('kill');
  } finally {
    qmp?.close();
  }
}

/** Ends QEMU before its machine folder is deleted (force: the disks are about to go). */
export async function killMachine(folder: string, options: QemuOptions = {}): Promise<StopResult> {
  return stopMachine(folder, { ...options, force: true });
}

/** Removes the runtime files of a machine that is off (for a machine's deletion); refuses while it runs. */
export async function removeRuntimeFiles(folder: string): Promise<void> {
  const files = runtimeFiles(folder);
  if ((await livePid(files)) !== null) throw new QemuError('ALREADY_RUNNING', `The machine in ${files.folder} is running; stop it first.`);
  await cleanStale(files);
  await rm(files.startLock, { force: true });
}
