// The plain records the Library returns about machines and snapshots, with sizes measured on the host disk.
import { join } from 'node:path';
import { runningPid } from '../runtime';
import { bytesOnDisk } from './fsutil';
import { fromImageError, layerAllocatedBytes } from './layer-files';
import { forwardsOf } from './devices';
import { directClones } from './lineage';
import type { SnapshotRecord } from './manifest';
import { displayOf } from './screen';
import type { MachineEntry } from './store';
import { thumbnailPath } from './thumbnails';
import type { DiskInfo, MachineDetails, MachineSummary, PowerState, SnapshotInfo } from './types';

export async function sumBytes(paths: string[]): Promise<number> {
  let n = 0;
  for (const p of paths) n += await bytesOnDisk(p);
  return n;
}

export async function sumAllocated(paths: string[]): Promise<number> {
  let n = 0;
  for (const p of paths) {
    try {
      n += await layerAllocatedBytes(p);
    } catch (e) {
      throw fromImageError(e, 'measuring the current state');
    }
  }
  return n;
}

/** Every layer file of the machine's own folder, on the host disk. */
export async function machineBytes(e: MachineEntry): Promise<number> {
  const m = e.manifest;
  return sumBytes([...m.disks.map((d) => join(e.folder, d.top)), ...m.snapshots.flatMap((s) => s.layers.map((f) => join(e.folder, f)))]);
}

/** The power state as QEMU's process tells it (cheap: pidfile and process, no QMP). */
export async function livePower(e: MachineEntry): Promise<PowerState> {
  if ((await runningPid(e.folder)) === null) return 'off';
  return e.manifest.powerState === 'off' ? 'running' : e.manifest.powerState;
}

export function summary(e: MachineEntry): MachineSummary {
  const m = e.manifest;
  return {
    id: m.id,
    name: m.name,
    folder: e.folder,
    macAddress: m.macAddress,
    cpus: m.cpus,
    memoryMiB: m.memoryMiB,
    powerState: m.powerState,
    createdAt: m.createdAt,
    note: m.note,
    diskCount: m.disks.length,
    snapshotCount: m.snapshots.length,
    current: m.current,
    clonedFrom: m.clonedFrom ? { machineId: m.clonedFrom.machineId, snapshotId: m.clonedFrom.snapshotId, kind: m.clonedFrom.kind } : null,
    guestUser: m.guest?.user ?? null,
    autoCheckpoints: m.autoCheckpoints === undefined ? null : { ...m.autoCheckpoints },
  };
}

export async function snapshotInfo(e: MachineEntry, s: SnapshotRecord, all: MachineEntry[]): Promise<SnapshotInfo> {
  const layers = s.layers.map((f) => join(e.folder, f));
  const memoryBytes = await snapshotMemoryBytes(e, s);
  return {
    id: s.id,
    name: s.name,
    description: s.description,
    parentId: s.parentId,
    createdAt: s.createdAt,
    takenWhileRunning: s.takenWhileRunning,
    hasMemory: s.stateFile !== null,
    quiesced: s.quiesced === true,
    layers,
    sizeBytes: (await sumBytes(layers)) + memoryBytes,
    memoryBytes,
    lockedBy: directClones(all, e.manifest.id, s.id).map((c) => c.manifest.id),
    auto: s.auto === true,
    thumbnail: thumbnailPath(e.folder, s),
  };
}

/** The saved memory and device state of a snapshot taken while running (0 when it holds none). */
export function snapshotMemoryBytes(e: MachineEntry, s: SnapshotRecord): Promise<number> {
  return s.stateFile === null ? Promise.resolve(0) : bytesOnDisk(join(e.folder, s.stateFile));
}

export async function details(e: MachineEntry, all: MachineEntry[]): Promise<MachineDetails> {
  const base: Omit<MachineSummary, 'diskCount' | 'snapshotCount'> & Partial<MachineSummary> = summary(e);
  delete base.diskCount;
  delete base.snapshotCount;
  const disks: DiskInfo[] = e.manifest.disks.map((d, index) => ({ index, path: join(e.folder, d.top), virtualSize: d.virtualSize }));
  // Every layer's size at once: one wait for the file system, not one per snapshot.
  const snapshots = await Promise.all(e.manifest.snapshots.map((s) => snapshotInfo(e, s, all)));
  return {
    ...base,
    disks,
    snapshots,
    currentChangedBytes: await sumAllocated(disks.map((d) => d.path)),
    currentSizeBytes: await sumBytes(disks.map((d) => d.path)),
    guest: e.manifest.guest === undefined ? null : { user: e.manifest.guest.user, hostKey: e.manifest.guest.hostKey },
    baseImage: e.manifest.baseImage === undefined ? null : { sha256: e.manifest.baseImage.sha256, source: e.manifest.baseImage.source },
    iso: e.manifest.cdrom ?? null,
    forwards: forwardsOf(e.manifest).map((f) => ({ ...f })),
    kvmFailedAt: e.manifest.kvmFailedAt ?? null,
    display: displayOf(e.manifest),
  };
}
