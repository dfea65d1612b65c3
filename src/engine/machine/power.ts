// The machine layer's side of the runtime: powering machines on and off, the QEMU config a manifest describes,
// the power state kept in the manifest, and QEMU's errors as MachineErrors.
import type { Socket } from 'node:net';
import { join } from 'node:path';
import {
  isQemuError,
  machineStatus as runtimeStatus,
  runtimeInfo,
  watchRunState,
  openConsole as runtimeConsole,
  pauseMachine as runtimePause,
  resumeMachine as runtimeResume,
  runningPid,
  RUNTIME_FILE_NAMES,
  startMachine as runtimeStart,
  stopMachine as runtimeStop,
  FORWARD_HOST,
  guestInfo as runtimeGuestInfo,
  type GuestInfo,
  type MachineConfig,
  type RuntimeStatus,
} from '../runtime';
import { accelNotice, accelVerdict, DEFAULT_ACCEL_WATCH_MS, shouldWatch, startAccel } from './accelerator';
import { forwardsOf } from './devices';
import { MachineError, isMachineError } from './errors';
import { SEED_FILE, SSH_GUEST_PORT } from './guest-access';
import type { LibraryContext } from './library-context';
import { cloneManifest, writeManifest, type Manifest, type SnapshotRecord } from './manifest';
import { displayOf } from './screen';
import type { MachineEntry } from './store';
import { captureLastScreen } from './thumbnails';
import type { MachineStatus, PowerState, StopMachineOptions, StopMachineResult } from './types';

/**
 * Powers the machine on (QEMU runs detached and outlives this process). ALREADY_RUNNING when it runs. Under the
 * auto accelerator a guest KVM runs is watched for a few seconds: when KVM cannot run it, TCG takes over.
 */
export async function startMachine(ctx: LibraryContext, ref: string): Promise<MachineStatus> {
  return ctx.withMachine(ref, 'start', async (e) => {
    const r = await runtimeCall(() => runtimeStart(machineConfig(e), { ...ctx.qemu, accel: startAccel(ctx.qemu, e.manifest) }));
    if (shouldWatch(ctx.qemu, r.info.accel)) {
      const state = await runtimeCall(() => watchRunState(e.folder, ctx.qemu.accelWatchMs ?? DEFAULT_ACCEL_WATCH_MS, ctx.qemu));
      if (accelVerdict(ctx.qemu, state, r.info.accel) === 'fall-back') return fallBackToTcg(ctx, e);
    }
    const m = await setPower(e, 'running');
    return statusOf(r, m, r.info.accel, ctx);
  });
}

/** KVM stopped the guest with an internal error under auto: end that QEMU, remember it, start again with TCG. */
async function fallBackToTcg(ctx: LibraryContext, e: MachineEntry): Promise<MachineStatus> {
  await runtimeCall(() => runtimeStop(e.folder, { ...ctx.qemu, force: true }));
  const m = cloneManifest(e.manifest);
  m.kvmFailedAt = new Date().toISOString();
  m.powerState = 'off';
  m.revision++;
  const after = { folder: e.folder, manifest: await writeManifest(e.folder, m) };
  const r = await runtimeCall(() => runtimeStart(machineConfig(after), { ...ctx.qemu, accel: 'tcg' }));
  return statusOf(r, await setPower(after, 'running'), r.info.accel, ctx);
}

/** ACPI power button, then QEMU quit, then kill after the time-out; force: quit at once. */
export async function stopMachine(ctx: LibraryContext, ref: string, options: StopMachineOptions): Promise<StopMachineResult> {
  return ctx.withMachine(ref, 'stop', async (e) => {
    // What the screen showed before the power went: snapshots taken while off show it. Briefly: a QEMU that hangs
    // is why people force a stop.
    await captureLastScreen(e.folder, { ...ctx.qemu, qmp: { ...ctx.qemu.qmp, connectTimeoutMs: 2000, commandTimeoutMs: 5000 } });
    const r = await runtimeCall(() =>
      runtimeStop(e.folder, {
        ...ctx.qemu,
        force: options.force === true,
        powerdownTimeoutMs: options.powerdownTimeoutMs ?? 60000,
        ...(options.quitAfterTimeout !== undefined ? { quitAfterTimeout: options.quitAfterTimeout } : {}),
        ...(options.signal !== undefined ? { signal: options.signal } : {}),
      }),
    );
    if (r.method === 'still-running') return { method: r.method, ms: r.ms };
    await setPower(e, 'off');
    return { method: r.method, ms: r.ms };
  });
}

export async function pauseMachine(ctx: LibraryContext, ref: string): Promise<MachineStatus> {
  return ctx.withMachine(ref, 'pause', async (e) => {
    const r = await runtimeCall(() => runtimePause(e.folder, ctx.qemu));
    const accel = (await runtimeInfo(e.folder))?.accel ?? null;
    return statusOf(r, await setPower(e, r.powerState), accel, ctx);
  });
}

/** Resumes a paused machine; a guest KVM could not run is started again with TCG under auto, else refused. */
export async function resumeMachine(ctx: LibraryContext, ref: string): Promise<MachineStatus> {
  return ctx.withMachine(ref, 'resume', async (e) => {
    const before = await runtimeCall(() => runtimeStatus(e.folder, ctx.qemu));
    const accel = (await runtimeInfo(e.folder))?.accel ?? null;
    if (accelVerdict(ctx.qemu, before.qemuRunState, accel) === 'fall-back') return fallBackToTcg(ctx, e);
    if (before.failure !== null) throw new MachineError('RUNTIME_ERROR', `Machine "${e.manifest.name}" cannot resume: ${before.failure}`);
    const r = await runtimeCall(() => runtimeResume(e.folder, ctx.qemu));
    return statusOf(r, await setPower(e, r.powerState), accel, ctx);
  });
}

/**
 * The real power state from QEMU (pidfile, process, QMP); the manifest is corrected when it differs. A guest KVM
 * could not run under auto is started again with TCG here too (the start only watches its first seconds).
 */
export async function machineStatus(ctx: LibraryContext, ref: string): Promise<MachineStatus> {
  return ctx.withMachine(ref, 'status', async (e) => {
    const r = await runtimeCall(() => runtimeStatus(e.folder, ctx.qemu));
    const accel = r.pid === null ? null : ((await runtimeInfo(e.folder))?.accel ?? null);
    if (accelVerdict(ctx.qemu, r.qemuRunState, accel) === 'fall-back') return fallBackToTcg(ctx, e);
    return statusOf(r, await setPower(e, r.powerState), accel, ctx);
  });
}

/**
 * What the running guest says about itself through its agent (hostname, OS, addresses), or why it says nothing;
 * null when the machine is off. No lock: nothing changes; a silent agent costs at most a short time-out.
 */
export async function guestInfo(ctx: LibraryContext, ref: string): Promise<GuestInfo | null> {
  const { e } = await ctx.find(ref);
  return runtimeCall(() => runtimeGuestInfo(e.folder, ctx.qemu));
}

/** A connection to the machine's serial port (one client at a time; a second waits). No lock: nothing changes. */
export async function openConsole(ctx: LibraryContext, ref: string): Promise<Socket> {
  const { e } = await ctx.find(ref);
  return runtimeCall(() => runtimeConsole(e.folder));
}

/** From QEMU's process, not the manifest alone (which can be stale after a crash). */
export async function isRunning(e: MachineEntry): Promise<boolean> {
  return (await runningPid(e.folder)) !== null;
}

export async function requireOff(e: MachineEntry, what: string): Promise<void> {
  if (await isRunning(e)) {
    throw new MachineError('POWERED_ON', `Machine "${e.manifest.name}" is running: power it off to ${what}.`);
  }
}

/** Records the power state in the manifest when it changed (the caller holds the lock). */
export async function setPower(e: MachineEntry, state: PowerState): Promise<Manifest> {
  if (e.manifest.powerState === state) return e.manifest;
  const m = cloneManifest(e.manifest);
  m.powerState = state;
  m.revision++;
  return writeManifest(e.folder, m);
}

function statusOf(r: RuntimeStatus, m: Manifest, accel: 'kvm' | 'tcg' | null, ctx: LibraryContext): MachineStatus {
  const ssh = r.forwards.find((f) => f.guestPort === SSH_GUEST_PORT);
  return {
    powerState: r.powerState,
    pid: r.pid,
    serialLog: r.serialLog,
    consoleSocket: r.consoleSocket,
    startedAt: r.startedAt,
    qemuRunState: r.qemuRunState,
    failure: r.failure,
    notice: r.pid === null ? null : accelNotice(ctx.qemu, m, accel),
    forwards: r.forwards,
    ssh: ssh === undefined ? null : { host: FORWARD_HOST, port: ssh.hostPort, user: m.guest?.user ?? null },
  };
}

/** Files the runtime keeps in a machine folder are never leftovers (`*.state` files belong to snapshots). */
export function isRuntimeFileName(name: string): boolean {
  return RUNTIME_FILE_NAMES.includes(name) || name.endsWith('.state');
}

/** The state file a snapshot with memory gets: next to its layers, named after the snapshot. */
export function stateFileName(snapshotId: string): string {
  return `state-${snapshotId}.state`;
}

/**
 * What QEMU runs for the machine's current state: its cpus, memory, MAC and every disk's top layer, its id as the
 * SMBIOS UUID, SSH (and the user's forwards) on 127.0.0.1, the cloud-init seed of a machine from a cloud image,
 * the ISO in its CD-ROM drive, and its display device.
 */
export function machineConfig(e: MachineEntry, m: Manifest = e.manifest): MachineConfig {
  return {
    ...identityConfig(e, m),
    cpus: m.cpus,
    memoryMiB: m.memoryMiB,
    disks: m.disks.map((d) => join(e.folder, d.top)),
    macAddress: m.macAddress,
    ...(m.cdrom === undefined ? {} : { cdrom: m.cdrom }),
    display: displayOf(m),
  };
}

/** The parts of a machine's config that stay the same across its snapshots (a saved state loads with them). */
function identityConfig(e: MachineEntry, m: Manifest): Pick<MachineConfig, 'folder' | 'name' | 'uuid' | 'forwards' | 'seedImage'> {
  return {
    folder: e.folder,
    name: m.name,
    uuid: m.id,
    forwards: forwardsOf(m),
    ...(m.guest === undefined ? {} : { seedImage: join(e.folder, SEED_FILE) }),
  };
}

/** The config a snapshot's memory state was saved with, on the given top layers (a state loads only into that). */
export function stateConfig(e: MachineEntry, s: SnapshotRecord, tops: string[]): MachineConfig {
  const vm = s.vm!;
  return {
    ...identityConfig(e, e.manifest),
    cpus: vm.cpus,
    memoryMiB: vm.memoryMiB,
    disks: tops.map((t) => join(e.folder, t)),
    macAddress: vm.macAddress,
    machineType: vm.machineType,
    // The CD drive exactly as saved: a state loads only into the same devices.
    ...(vm.cdrom === undefined ? {} : { cdrom: vm.cdrom }),
    // A state saved before machines had displays has none.
    display: vm.display ?? 'none',
    // The agent channel as saved too: states from before machines had it load without it.
    guestAgent: vm.guestAgent === true,
  };
}

/** QEMU's refusals and failures as the library's errors; the runtime's message is kept as it is. */
export function fromRuntimeError(e: unknown): unknown {
  if (isMachineError(e) || !isQemuError(e)) return e;
  switch (e.code) {
    case 'ALREADY_RUNNING':
      return new MachineError('ALREADY_RUNNING', e.message, [], { cause: e });
    case 'NOT_RUNNING':
      return new MachineError('NOT_RUNNING', e.message, [], { cause: e });
    case 'QEMU_NOT_FOUND':
      return new MachineError('QEMU_MISSING', e.message, [], { cause: e });
    default:
      return new MachineError('RUNTIME_ERROR', e.message, [], { cause: e });
  }
}

/** Runs a runtime call, turning its errors into MachineErrors. */
export async function runtimeCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw fromRuntimeError(e);
  }
}
