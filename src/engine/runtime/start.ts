// Starting QEMU for a machine folder: one process per folder (a start lock and QEMU's own pid-file lock), the
// forwarded ports bound (others picked when taken meanwhile), and QEMU's own words when it will not start.
// QEMU is spawned detached (its own session, stdio to qemu.log) instead of -daemonize, so errors after start
// (a failed incoming migration) are not lost to /dev/null; it survives the CLI exiting all the same.
import { spawn } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { QemuError, isQemuError } from './errors';
import { RUNTIME_FILES, runtimeFiles, transientFiles, type RuntimeFiles } from './files';
import { bindForwards } from './forwards';
import { readPid, sleep, StartLock, waitForExit } from './process';
import { QmpClient } from './qmp';
import {
  cleanStale,
  livePid,
  MAX_SERIAL_LOG,
  qemuArgs,
  qemuPath,
  runStateFailure,
  type MachineConfig,
  type RuntimeInfo,
  type RuntimeStatus,
  type StartOptions,
} from './qemu';

export interface StartResult extends RuntimeStatus {
  info: RuntimeInfo;
  /** Milliseconds from spawning QEMU until QMP answered. */
  startMs: number;
}

/** Starts QEMU for the machine; refuses when one already runs for the folder (in any process). */
export async function startMachine(config: MachineConfig, options: StartOptions = {}): Promise<StartResult> {
  const files = runtimeFiles(config.folder);
  const lock = await StartLock.acquire(files.startLock, `Machine "${config.name}"`);
  try {
    const pid = await livePid(files);
    if (pid !== null) {
      throw new QemuError('ALREADY_RUNNING', `Machine "${config.name}" is already running (QEMU pid ${pid}); stop it first.`);
    }
    for (const f of transientFiles(files)) await unlink(f).catch(() => {});
    if (dirname(files.qmpSocket) !== files.folder) await mkdir(dirname(files.qmpSocket), { recursive: true, mode: 0o700 });
    await rotateSerialLog(files);
    return await spawnWithForwards(config, files, options);
  } finally {
    await lock.release();
  }
}

async function readLastPorts(file: string): Promise<Map<number, number>> {
  try {
    const list = JSON.parse(await readFile(file, 'utf8')) as unknown;
    const ports = new Map<number, number>();
    if (Array.isArray(list)) {
      for (const f of list as { guestPort?: unknown; hostPort?: unknown }[]) {
        if (Number.isInteger(f?.guestPort) && Number.isInteger(f?.hostPort)) ports.set(f.guestPort as number, f.hostPort as number);
      }
    }
    return ports;
  } catch {
    return new Map();
  }
}

async function rotateSerialLog(files: RuntimeFiles): Promise<void> {
  const size = await stat(files.serialLog).then((s) => s.size, () => 0);
  if (size > MAX_SERIAL_LOG) await rename(files.serialLog, join(files.folder, RUNTIME_FILES.serialLogRotated)).catch(() => {});
}

/**
 * Binds the forwards (a port without a wanted one takes the one it had last time when free) and starts QEMU.
 * QEMU refuses to start when a forwarded port was taken between our check and its bind: pick others, 3 times.
 */
async function spawnWithForwards(config: MachineConfig, files: RuntimeFiles, options: StartOptions): Promise<StartResult> {
  const lastFile = join(files.folder, RUNTIME_FILES.lastPorts);
  const last = await readLastPorts(lastFile);
  const forwards = (config.forwards ?? []).map((f) => (f.hostPort === undefined && last.has(f.guestPort) ? { ...f, hostPort: last.get(f.guestPort)!, lastTime: true } : f));
  const taken = new Set<number>();
  for (let attempt = 0; ; attempt++) {
    // A port it had last time is a preference, not a wish the user made: another one is not worth a word.
    const boundForwards = (await bindForwards(forwards, taken)).map((b, i) => ('lastTime' in forwards[i]! ? { guestPort: b.guestPort, hostPort: b.hostPort } : b));
    try {
      const started = await spawnQemu(config, files, { ...options, boundForwards });
      await writeFile(lastFile, `${JSON.stringify(boundForwards.map((b) => ({ guestPort: b.guestPort, hostPort: b.hostPort })))}\n`).catch(() => {});
      return started;
    } catch (e) {
      const port = isQemuError(e) && e.code === 'PORT_TAKEN' ? e.port : null;
      if (port === null || attempt === 2) throw e;
      taken.add(port);
    }
  }
}

async function spawnQemu(config: MachineConfig, files: RuntimeFiles, options: StartOptions): Promise<StartResult> {
  const exe = qemuPath(options);
  const args = qemuArgs(config, files, options);
  const logStart = await stat(files.qemuLog).then((s) => s.size, () => 0);
  let logFd: number;
  try {
    logFd = openSync(files.qemuLog, 'a');
    writeSync(logFd, `--- ${new Date().toISOString()} ${exe} ${args.join(' ')}\n`);
  } catch (e) {
    throw new QemuError('IO_ERROR', `Cannot write ${files.qemuLog}: ${(e as Error).message}`, { cause: e });
  }
  const t0 = performance.now();
  const child = spawn(exe, args, { cwd: files.folder, detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  // Set from the child's events while we poll for QMP.
  const seen: { exited: boolean; error: NodeJS.ErrnoException | null } = { exited: false, error: null };
  child.on('exit', () => (seen.exited = true));
  child.on('error', (e) => (seen.error = e));
  const deadline = Date.now() + (options.startTimeoutMs ?? 30000);
  let qmp: QmpClient | null = null;
  try {
    while (qmp === null) {
      if (seen.error !== null) {
        const err = seen.error;
        throw err.code === 'ENOENT'
          ? new QemuError('QEMU_NOT_FOUND', `${exe} is not installed: install Debian's qemu-system-x86 (apt-get install --no-install-recommends qemu-system-x86) or set VMSNAP_QEMU to its path.`)
          : new QemuError('START_FAILED', `Cannot run ${exe}: ${err.message}`, { cause: err });
      }
      if (seen.exited) throw await startFailure(config, files, logStart);
      if (Date.now() > deadline) throw new QemuError('TIMEOUT', `QEMU did not come up for machine "${config.name}" within ${options.startTimeoutMs ?? 30000} ms; see ${files.qemuLog}.`);
      try {
        qmp = await QmpClient.connect(files.qmpSocket, { connectTimeoutMs: 5000, ...options.qmp });
      } catch (e) {
        if (!isQemuError(e)) throw e;
        await sleep(5); // the socket does not exist yet, or QEMU is still initialising
      }
    }
    const startMs = performance.now() - t0;
    const pid = child.pid ?? (await readPid(files.pidFile));
    if (pid === null || pid === undefined) throw new QemuError('START_FAILED', `QEMU started for machine "${config.name}" but reported no pid.`);
    const [runState, kvm, type] = await Promise.all([
      qmp.execute<{ status: string }>('query-status'),
      qmp.execute<{ enabled: boolean }>('query-kvm'),
      qmp.execute<string>('qom-get', { path: '/machine', property: 'type' }),
    ]);
    const v = qmp.greeting.version;
    const info: RuntimeInfo = {
      pid,
      startedAt: new Date().toISOString(),
      qemuPath: exe,
      accel: kvm.enabled ? 'kvm' : 'tcg',
      machineType: type.replace(/-machine$/, ''),
      qemuVersion: `${v.major}.${v.minor}.${v.micro}`,
      qmpSocket: files.qmpSocket,
      consoleSocket: files.consoleSocket,
      argv: [exe, ...args],
      drives: config.disks.map((_, i) => `drive${i}`),
      forwards: options.boundForwards ?? [],
      ...(config.guestAgent === false ? {} : { agentSocket: files.agentSocket }),
      ...(config.cdrom === undefined ? {} : { cdrom: resolve(config.cdrom) }),
      display: config.display ?? 'none',
      ...((config.display ?? 'none') === 'none' ? {} : { displaySocket: files.displaySocket }),
    };
    await writeFile(files.infoFile, `${JSON.stringify(info, null, 2)}\n`);
    child.unref();
    return {
      powerState: runState.status === 'running' ? 'running' : 'paused',
      pid,
      serialLog: files.serialLog,
      consoleSocket: files.consoleSocket,
      startedAt: info.startedAt,
      qemuRunState: runState.status,
      forwards: info.forwards ?? [],
      failure: runStateFailure(runState.status, info),
      info,
      startMs,
    };
  } catch (e) {
    // QEMU that quits right after greeting (e.g. a state it cannot load) drops QMP: report its own words.
    const died = isQemuError(e) && e.code === 'QMP_UNAVAILABLE' && child.pid !== undefined && (await waitForExit(child.pid, 3000));
    if (!died && !seen.exited && child.pid !== undefined) {
      child.kill('SIGKILL');
      await waitForExit(child.pid, 5000);
    }
    await cleanStale(files).catch(() => {});
    throw died ? await startFailure(config, files, logStart) : e;
  } finally {
    qmp?.close();
  }
}

/** What QEMU said (in qemu.log) since its last start, warnings left out; '' when it said nothing. */
export async function qemuWords(folder: string, from?: number): Promise<string> {
  const log = await readFile(runtimeFiles(folder).qemuLog, 'utf8').catch(() => '');
  const section = from !== undefined ? log.slice(from) : log.slice(Math.max(0, log.lastIndexOf('\n--- ') + 1));
  return section
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('--- '))
    .map((l) => l.replace(/^qemu-system-\w+: /, ''))
    .filter((l) => !/^warning:/i.test(l))
    .join(' ')
    .trim();
}

/** Turns QEMU's own words into an error the user can act on. */
async function startFailure(config: MachineConfig, files: RuntimeFiles, logStart: number): Promise<QemuError> {
  const said = await qemuWords(files.folder, logStart);
  if (/Cannot lock pid file/i.test(said)) {
    return new QemuError('ALREADY_RUNNING', `Machine "${config.name}" is already running in another QEMU process; stop it first.`);
  }
  const fwd = /Could not set up host forwarding rule 'tcp:[\d.]*:(\d+)-/i.exec(said);
  if (fwd !== null) {
    return new QemuError('PORT_TAKEN', `Port ${fwd[1]} on 127.0.0.1 is taken by another program; machine "${config.name}" could not forward it.`, { port: Number(fwd[1]) });
  }
  if (/Failed to get "?(write|shared)"? lock/i.test(said)) {
    return new QemuError('IMAGE_IN_USE', `A disk of machine "${config.name}" is in use by another program (${said}); close it and try again.`);
  }
  return new QemuError('START_FAILED', `QEMU could not start machine "${config.name}": ${said || `it exited; see ${files.qemuLog}`}.`);
}
