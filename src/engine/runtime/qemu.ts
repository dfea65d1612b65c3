// QEMU for one machine folder: the command line a machine's description gives, and its status found again after
// our process restarts (pidfile + QMP). Starting is in ./start.ts, pausing and stopping in ./control.ts; the files
// it keeps in the machine folder are named in ./files.ts.
import { readFile, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { isProcessAlive } from '../os';
import { acceleratorOf } from './accel';
import { fileNodeName } from './block-nodes';
import { displayArgs, isDisplayDevice, type DisplayDevice } from './display';
import { QemuError, isQemuError } from './errors';
import { runtimeFiles, transientFiles, type RuntimeFiles } from './files';
import { AGENT_CHARDEV } from './guest-agent';
import { hostfwdOptions, validPort, type BoundForward, type PortForward } from './forwards';
import { processArgv, readPid } from './process';
import { withQmp, type QmpOptions } from './qmp';

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
  /** The display device, shown over VNC on the folder's display socket; absent: none (a headless machine). */
  display?: DisplayDevice;
  /**
   * The guest agent's virtio-serial channel (a unix socket in the folder). Default on; off only to load a state
   * saved before machines had it (a state loads only into the devices it was saved with).
   */
  guestAgent?: boolean;
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
  /** The display device QEMU has; absent (runtime.json from before displays existed) or 'none': no screen. */
  display?: DisplayDevice;
  /** The VNC server's unix socket, when the machine has a display. */
  displaySocket?: string;
  /** The guest agent channel's socket; absent when QEMU runs without the channel (a state saved before it existed). */
  agentSocket?: string;
}

/** serial.log is kept below this size: a start moves a bigger one to serial.log.1. */
export const MAX_SERIAL_LOG = 8 * 1024 * 1024;

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
      '-drive', `file=${opt(resolve(disk))},format=qcow2,if=none,id=drive${i},node-name=disk${i},file.node-name=${fileNodeName(`disk${i}`)}`,
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
  args.push(...displayArgs(config.display ?? 'none', files));
  args.push(
    '-chardev', `socket,id=console0,path=${opt(files.consoleSocket)},server=on,wait=off,logfile=${opt(files.serialLog)},logappend=on`,
    '-serial', 'chardev:console0',
    '-chardev', `socket,id=qmp0,path=${opt(files.qmpSocket)},server=on,wait=off`,
    '-mon', 'chardev=qmp0,mode=control',
    '-pidfile', files.pidFile,
  );
  if (config.guestAgent !== false) {
    // The guest agent's channel: qemu-guest-agent in the guest opens the port by this name.
    args.push(
      '-device', 'virtio-serial-pci,id=vserial0',
      '-chardev', `socket,id=${AGENT_CHARDEV},path=${opt(files.agentSocket)},server=on,wait=off`,
      '-device', `virtserialport,bus=vserial0.0,chardev=${AGENT_CHARDEV},name=org.qemu.guest_agent.0`,
    );
  }
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
  if (config.display !== undefined && !isDisplayDevice(config.display)) bad(`"${String(config.display)}" is not a display device (std, virtio or none)`);
  if (config.uuid !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(config.uuid)) bad(`"${config.uuid}" is not a UUID`);
  for (const f of config.forwards ?? []) {
    if (!validPort(f.guestPort) || (f.hostPort !== undefined && !validPort(f.hostPort))) bad(`${f.hostPort ?? ''}:${f.guestPort} is not a port forward HOSTPORT:GUESTPORT with ports from 1 to 65535`);
  }
}

// ---- status ----------------------------------------------------------------------------------------------

export async function readInfo(files: RuntimeFiles): Promise<RuntimeInfo | null> {
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
export async function livePid(files: RuntimeFiles): Promise<number | null> {
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
export async function cleanStale(files: RuntimeFiles): Promise<void> {
  const starter = await readPid(files.startLock);
  if (starter !== null && isProcessAlive(starter)) return; // a start in progress owns these files
  for (const f of transientFiles(files)) await unlink(f).catch(() => {});
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
