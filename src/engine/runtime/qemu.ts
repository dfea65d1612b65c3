// One QEMU process per machine folder: start it from a machine's description, find it again after our process
// restarts (pidfile + QMP), pause, resume and stop it.
//
// The files it keeps in the machine folder are named in ./files.ts.
// QEMU is spawned detached (its own session, stdio to qemu.log) instead of -daemonize, so errors after start
// (a failed incoming migration) are not lost to /dev/null; it survives the CLI exiting all the same.
import { spawn } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { QemuError, isQemuError } from './errors';
import { RUNTIME_FILES, runtimeFiles, type RuntimeFiles } from './files';
import { isProcessAlive } from '../os';
import { acceleratorOf } from './accel';
import { bindForwards, hostfwdOptions, validPort, type BoundForward, type PortForward } from './forwards';
import { processArgv, readPid, sleep, StartLock, waitForExit } from './process';
import { QmpClient, withQmp, type QmpOptions } from './qmp';

export type RuntimePowerState = 'running' | 'paused' | 'off';

/** What QEMU needs to run a machine; the machine layer builds it from the manifest. */
export interface MachineConfig {
  /** The machine's folder (absolute); runtime files live here. */
  folder: string;
  /** Shown in QEMU's window title and process list. */
  name: string;
  cpus: number;
  memoryMiB: number;
  /** Absolute paths of each disk's current top layer (qcow2), in disk order: drive0, drive1, ... */
  disks: string[];
  /** The NIC's MAC address, e.g. 52:54:00:12:34:56. */
  macAddress: string;
  /** QEMU machine type. Default 'q35'; a state file must be loaded with the exact type it was saved on (e.g. 'pc-q35-7.2'). */
  machineType?: string;
  /** The SMBIOS system UUID the guest reads (/sys/class/dmi/id/product_uuid): the machine's id. */
  uuid?: string;
  /** Ports forwarded from 127.0.0.1 into the guest (SSH first); host ports are chosen at start. */
  forwards?: PortForward[];
  /** A cloud-init seed volume (raw, read-only), attached after the disks as a virtio disk. */
  seedImage?: string;
  /**
   * An ISO image in the CD-ROM drive (absolute path, opened read-only), e.g. an installer. It boots after the
   * disks: SeaBIOS skips a disk without a boot sector, so the CD boots until an operating system is installed.
   */
  cdrom?: string;
}

export interface QemuOptions {
  /** Default: $VMSNAP_QEMU, else `qemu-system-x86_64` on PATH. */
  qemuPath?: string;
  /** QEMU accelerator list. Default: $VMSNAP_QEMU_ACCEL, else 'kvm:tcg' (KVM when usable, TCG otherwise). */
  accel?: string;
  /** Time-out for QEMU to come up (default 30000 ms). */
  startTimeoutMs?: number;
  /**
   * How long the machine layer watches a guest KVM runs under the auto accelerator for KVM's internal error
   * right after a start (then it falls back to TCG); default 3000 ms. Later failures are caught by a status.
   */
  accelWatchMs?: number;
  qmp?: QmpOptions;
}

export interface StartOptions extends QemuOptions {
  /** Start with the CPUs stopped (-S). */
  paused?: boolean;
  /** A saved state to load as an incoming migration (`startFromState` uses this). */
  incomingStateFile?: string;
  /** The host ports of `config.forwards`, as bound for this start (spawnQemu sets them). */
  boundForwards?: BoundForward[];
}

/** The machine's power state as the CLI's `vm status --json` prints it. */
export interface RuntimeStatus {
  powerState: RuntimePowerState;
  pid: number | null;
  /** Absolute path of the serial log (exists once the machine has run). */
  serialLog: string;
  /** The serial port as a unix socket while the machine runs (`vm console` connects here), else null. */
  consoleSocket: string | null;
  /** When this QEMU process was started (ISO 8601), or null when off. */
  startedAt: string | null;
  /** QEMU's own run state ('running', 'paused', 'postmigrate', 'inmigrate', ...), or null when off or unknown. */
  qemuRunState: string | null;
  /** Ports forwarded from 127.0.0.1 into the guest while it runs (empty when off). */
  forwards: BoundForward[];
  /** Why the guest stopped by itself (QEMU's internal-error or guest-panicked run state), one sentence; else null. */
  failure: string | null;
}

/** runtime.json: what we know about the QEMU process serving the folder. */
export interface RuntimeInfo {
  pid: number;
  startedAt: string;
  qemuPath: string;
  /** The accelerator QEMU actually uses. */
  accel: 'kvm' | 'tcg';
  /** The resolved machine type (e.g. 'pc-q35-7.2'): a state saved now must be loaded with it. */
  machineType: string;
  qemuVersion: string;
  qmpSocket: string;
  consoleSocket: string;
  argv: string[];
  /** The disks' BlockBackend ids, in disk order (drive0, ...). */
  drives: string[];
  /** Ports forwarded from 127.0.0.1 into the guest. Absent in runtime.json files written before forwards existed. */
  forwards?: BoundForward[];
  /** The ISO in the CD-ROM drive (absolute path); absent when none (a memory snapshot records it). */
  cdrom?: string;
}

/** serial.log is kept below this size: a start moves a bigger one to serial.log.1. */
const MAX_SERIAL_LOG = 8 * 1024 * 1024;

export function qemuPath(options: QemuOptions = {}): string {
  return options.qemuPath ?? process.env['VMSNAP_QEMU'] ?? 'qemu-system-x86_64';
}

/** QEMU option values separate with commas: a comma inside a value is written twice. */
function opt(value: string): string {
  return value.replace(/,/g, ',,');
}

/** QEMU's command line for a machine; the same config gives the same devices, as loading a saved state needs. */
export function qemuArgs(config: MachineConfig, files: RuntimeFiles, options: StartOptions = {}): string[] {
  validateConfig(config);
  const args = [
    '-name', opt(config.name),
    ...(config.uuid === undefined ? [] : ['-uuid', config.uuid]),
    '-machine', `${opt(config.machineType ?? 'q35')},accel=${opt(acceleratorOf(options))}`,
    '-smp', String(config.cpus),
    '-m', `${config.memoryMiB}M`,
    '-nodefaults', '-no-user-config',
    '-display', 'none',
  ];
  config.disks.forEach((disk, i) => {
    args.push(
      '-drive', `file=${opt(resolve(disk))},format=qcow2,if=none,id=drive${i},node-name=disk${i}`,
      '-device', `virtio-blk-pci,drive=drive${i},id=disk${i}-dev,bootindex=${i}`,
    );
  });
  if (config.seedImage !== undefined) {
    args.push(
      '-drive', `file=${opt(resolve(config.seedImage))},format=raw,if=none,id=seed,readonly=on`,
      '-device', 'virtio-blk-pci,drive=seed,id=seed-dev',
    );
  }
  if (config.cdrom !== undefined) {
    // q35's AHCI controller (ide.0): an ide-cd reads the ISO with the same device on every accelerator.
    args.push(
      '-drive', `file=${opt(resolve(config.cdrom))},format=raw,if=none,id=cd0,media=cdrom,readonly=on`,
      '-device', `ide-cd,drive=cd0,bus=ide.0,id=cd0-dev,bootindex=${config.disks.length}`,
    );
  }
  // romfile= : no iPXE option ROM (not installed with --no-install-recommends; we never boot from the network).
  args.push('-netdev', `user,id=net0${hostfwdOptions(options.boundForwards ?? [])}`, '-device', `virtio-net-pci,netdev=net0,mac=${config.macAddress},romfile=`);
  args.push(
    '-chardev', `socket,id=console0,path=${opt(files.consoleSocket)},server=on,wait=off,logfile=${opt(files.serialLog)},logappend=on`,
    '-serial', 'chardev:console0',
    '-chardev', `socket,id=qmp0,path=${opt(files.qmpSocket)},server=on,wait=off`,
    '-mon', 'chardev=qmp0,mode=control',
    '-pidfile', files.pidFile,
  );
  if (options.paused || options.incomingStateFile !== undefined) args.push('-S');
  if (options.incomingStateFile !== undefined) args.push('-incoming', `exec:cat ${shellQuote(resolve(options.incomingStateFile))}`);
  return args;
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function validateConfig(config: MachineConfig): void {
  const bad = (what: string): never => {
    throw new QemuError('INVALID_ARGUMENT', `Cannot start machine "${config.name}": ${what}.`);
  };
  if (!Number.isInteger(config.cpus) || config.cpus < 1 || config.cpus > 255) bad(`${config.cpus} is not a CPU count from 1 to 255`);
  if (!Number.isInteger(config.memoryMiB) || config.memoryMiB < 16) bad(`${config.memoryMiB} MiB is not a memory size of at least 16 MiB`);
  if (config.disks.length === 0) bad('it has no disk');
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(config.macAddress)) bad(`"${config.macAddress}" is not a MAC address like 52:54:00:12:34:56`);
  if (config.machineType !== undefined && !/^[\w.-]+$/.test(config.machineType)) bad(`"${config.machineType}" is not a QEMU machine type`);
  if (config.uuid !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(config.uuid)) bad(`"${config.uuid}" is not a UUID`);
  for (const f of config.forwards ?? []) {
    if (!validPort(f.guestPort) || (f.hostPort !== undefined && !validPort(f.hostPort))) bad(`${f.hostPort ?? ''}:${f.guestPort} is not a port forward HOSTPORT:GUESTPORT with ports from 1 to 65535`);
  }
}

// ---- status ----------------------------------------------------------------------------------------------

async function readInfo(files: RuntimeFiles): Promise<RuntimeInfo | null> {
  try {
    return JSON.parse(await readFile(files.infoFile, 'utf8')) as RuntimeInfo;
  } catch {
    return null;
  }
}

/** The runtime.json of a running machine, or null when it is off. */
export async function runtimeInfo(folder: string): Promise<RuntimeInfo | null> {
  const files = runtimeFiles(folder);
  const pid = await livePid(files);
  return pid === null ? null : readInfo(files);
}

/**
 * The pid of the QEMU serving this folder, or null. A pid whose process is gone, or (on Linux) is some other
 * program that reused the number, does not count.
 */
async function livePid(files: RuntimeFiles): Promise<number | null> {
  const pid = (await readPid(files.pidFile)) ?? (await readInfo(files))?.pid ?? null;
  if (pid === null || !isProcessAlive(pid)) return null;
  const argv = processArgv(pid);
  if (argv !== null && !argv.includes(files.pidFile)) return null;
  return pid;
}

/** The pid of the QEMU running this machine folder, or null: a cheap check without QMP (for lists, refusals). */
export async function runningPid(folder: string): Promise<number | null> {
  return livePid(runtimeFiles(folder));
}

/** Removes what a QEMU that is gone left behind (QEMU removes them itself when it quits cleanly). */
async function cleanStale(files: RuntimeFiles): Promise<void> {
  const starter = await readPid(files.startLock);
  if (starter !== null && isProcessAlive(starter)) return; // a start in progress owns these files
  for (const f of [files.infoFile, files.pidFile, files.qmpSocket, files.consoleSocket]) await unlink(f).catch(() => {});
}

/** The power state from the pidfile and QMP, correct after our process (CLI, extension) restarted. */
export async function machineStatus(folder: string, options: QemuOptions = {}): Promise<RuntimeStatus> {
  const files = runtimeFiles(folder);
  const pid = await livePid(files);
  if (pid === null) {
    await cleanStale(files);
    return { powerState: 'off', pid: null, serialLog: files.serialLog, consoleSocket: null, startedAt: null, qemuRunState: null, forwards: [], failure: null };
  }
  const info = await readInfo(files);
  let runState: string | null = null;
  try {
    runState = await withQmp(files.qmpSocket, async (qmp) => (await qmp.execute<{ status: string }>('query-status')).status, options.qmp);
  } catch (e) {
    if (!isQemuError(e)) throw e;
    if (!isProcessAlive(pid)) return machineStatus(folder, options); // it ended while we asked
    // QMP busy (another client holds it): the process runs; say running rather than guess paused.
  }
  return {
    powerState: runState === null || runState === 'running' ? 'running' : 'paused',
    pid,
    serialLog: files.serialLog,
    consoleSocket: files.consoleSocket,
    startedAt: info?.startedAt ?? null,
    qemuRunState: runState,
    forwards: info?.forwards ?? [],
    failure: runStateFailure(runState, info),
  };
}

/**
 * A run state the guest cannot leave by itself, in words. On hosts where /dev/kvm exists but cannot run the guest
 * (nested virtualisation), KVM stops it with an internal error at the boot loader: the machine looks paused.
 */
export function runStateFailure(runState: string | null, info: RuntimeInfo | null): string | null {
  if (runState === 'internal-error') {
    return info?.accel === 'kvm'
      ? 'KVM could not run the guest (an internal error, common under nested virtualisation); start it with the TCG accelerator instead.'
      : 'QEMU stopped the guest after an internal error; see qemu.log, then stop and start the machine.';
  }
  if (runState === 'guest-panicked') return 'The guest operating system crashed (kernel panic); stop and start the machine.';
  return null;
}

// ---- start ----------------------------------------------------------------------------------------------

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
    for (const f of [files.infoFile, files.pidFile, files.qmpSocket, files.consoleSocket]) await unlink(f).catch(() => {});
    if (dirname(files.qmpSocket) !== files.folder) await mkdir(dirname(files.qmpSocket), { recursive: true, mode: 0o700 });
    await rotateSerialLog(files);
    return await spawnWithForwards(config, files, options);
  } finally {
    await lock.release();
  }
}

async function rotateSerialLog(files: RuntimeFiles): Promise<void> {
  const size = await stat(files.serialLog).then((s) => s.size, () => 0);
  if (size > MAX_SERIAL_LOG) await rename(files.serialLog, join(files.folder, RUNTIME_FILES.serialLogRotated)).catch(() => {});
}

/** QEMU refuses to start when a forwarded host port was taken between our check and its bind: pick others, 3 times. */
async function spawnWithForwards(config: MachineConfig, files: RuntimeFiles, options: StartOptions): Promise<StartResult> {
  const forwards = config.forwards ?? [];
  const taken = new Set<number>();
  for (let attempt = 0; ; attempt++) {
    const boundForwards = await bindForwards(forwards, taken);
    try {
      return await spawnQemu(config, files, { ...options, boundForwards });
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
      ...(config.cdrom === undefined ? {} : { cdrom: resolve(config.cdrom) }),
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

// ---- pause, resume, stop --------------------------------------------------------------------------------

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

async function withMachine<T>(folder: string, options: QemuOptions, fn: (qmp: QmpClient) => Promise<T>): Promise<T> {
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
}

export interface StopResult {
  /** How the process ended: the guest shut down, QEMU quit, or it was killed; 'already-off' when nothing ran. */
  method: 'already-off' | 'acpi' | 'quit' | 'kill';
  ms: number;
}

/**
 * Powers the machine off: the ACPI power button and up to `powerdownTimeoutMs` for the guest to shut down,
 * then QMP `quit`, then SIGKILL. A paused machine is resumed first so its guest can see the button.
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
      if (await waitForExit(pid, options.powerdownTimeoutMs ?? 60000)) return await done('acpi');
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
