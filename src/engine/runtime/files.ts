// The files the runtime keeps in a machine folder, named here and nowhere else (all removed when the machine is
// off, except the logs, the last forwarded ports and the last screen).
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const RUNTIME_FILES = {
  /** QEMU's -pidfile (QEMU holds a lock on it and removes it on exit). */
  pid: 'qemu.pid',
  /** What we started: pid, sockets, machine type, accelerator, command line. */
  info: 'runtime.json',
  /** The control socket (QMP). */
  qmpSocket: 'qmp.sock',
  /** The serial port as a socket (a console attaches here). */
  consoleSocket: 'console.sock',
  /** QEMU's VNC server for the machine's screen (a unix socket: nobody else on the host can connect). */
  displaySocket: 'display.sock',
  /** The guest agent's virtio-serial channel (org.qemu.guest_agent.0) as a socket: QGA requests go here. */
  agentSocket: 'agent.sock',
  /** Held while a start or stop is under way (StartLock). */
  startLock: 'qemu.starting',
  /** Everything the guest writes to its serial port, appended by QEMU itself (chardev logfile=), so the log is complete even when no process of ours is attached. */
  serialLog: 'serial.log',
  /** The previous serial log: a start moves a big one here. */
  serialLogRotated: 'serial.log.1',
  /** QEMU's own messages (its stderr), e.g. why a start or a state load failed. */
  qemuLog: 'qemu.log',
  /**
   * The host ports the forwards had at the last start: the next start (a revert too) takes them again when they
   * are free, so an SSH session or a Remote-SSH window finds the machine where it was.
   */
  lastPorts: 'ports.json',
  /**
   * A thumbnail of the screen as it was when we last powered the machine off (or of the snapshot it was reverted
   * to): a snapshot taken while it is off shows it. Kept while the machine is off.
   */
  lastScreen: 'last-screen.png',
} as const;

/** Every file name the runtime may leave in a machine folder. */
export const RUNTIME_FILE_NAMES: readonly string[] = Object.values(RUNTIME_FILES);

/** Files a running machine writes to continuously (its logs): not changes anyone needs to react to. */
export const RUNTIME_LOG_FILE_NAMES: readonly string[] = [RUNTIME_FILES.serialLog, RUNTIME_FILES.serialLogRotated, RUNTIME_FILES.qemuLog];

export interface RuntimeFiles {
  folder: string;
  pidFile: string;
  infoFile: string;
  startLock: string;
  serialLog: string;
  qemuLog: string;
  qmpSocket: string;
  consoleSocket: string;
  displaySocket: string;
  agentSocket: string;
}

/** A unix socket path must fit sun_path (104-108 bytes); long folders get their sockets in a short per-user dir. */
const MAX_SOCKET_PATH = 100;

/** The runtime's files of one machine folder, as absolute paths. */
export function runtimeFiles(folder: string): RuntimeFiles {
  const dir = resolve(folder);
  let qmpSocket = join(dir, RUNTIME_FILES.qmpSocket);
  let consoleSocket = join(dir, RUNTIME_FILES.consoleSocket);
  let displaySocket = join(dir, RUNTIME_FILES.displaySocket);
  let agentSocket = join(dir, RUNTIME_FILES.agentSocket);
  if ([qmpSocket, consoleSocket, displaySocket, agentSocket].some((s) => s.length > MAX_SOCKET_PATH)) {
    const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
    const key = createHash('sha256').update(dir).digest('hex').slice(0, 16);
    const short = join(tmpdir(), `vmsnap-${uid}`);
    qmpSocket = join(short, `${key}-qmp.sock`);
    consoleSocket = join(short, `${key}-console.sock`);
    displaySocket = join(short, `${key}-display.sock`);
    agentSocket = join(short, `${key}-agent.sock`);
  }
  return {
    folder: dir,
    pidFile: join(dir, RUNTIME_FILES.pid),
    infoFile: join(dir, RUNTIME_FILES.info),
    startLock: join(dir, RUNTIME_FILES.startLock),
    serialLog: join(dir, RUNTIME_FILES.serialLog),
    qemuLog: join(dir, RUNTIME_FILES.qemuLog),
    qmpSocket,
    consoleSocket,
    displaySocket,
    agentSocket,
  };
}

/** What a running QEMU's folder holds that a QEMU which is gone leaves stale (removed before a start). */
export function transientFiles(f: RuntimeFiles): string[] {
  return [f.infoFile, f.pidFile, f.qmpSocket, f.consoleSocket, f.displaySocket, f.agentSocket];
}
