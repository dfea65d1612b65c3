// The machine layer's side of the runtime: the QEMU config a manifest describes, and QEMU's errors as MachineErrors.
import { join } from 'node:path';
import { isQemuError, RUNTIME_FILE_NAMES, type MachineConfig } from '../runtime';
import { MachineError, isMachineError } from './errors';
import type { Manifest, SnapshotRecord } from './manifest';
import type { MachineEntry } from './store';

/** Files the runtime keeps in a machine folder are never leftovers (`*.state` files belong to snapshots). */
export function isRuntimeFileName(name: string): boolean {
  return RUNTIME_FILE_NAMES.includes(name) || name.endsWith('.state');
}

/** The state file a snapshot with memory gets: next to its layers, named after the snapshot. */
export function stateFileName(snapshotId: string): string {
  return `state-${snapshotId}.state`;
}

/** What QEMU runs for the machine's current state: its cpus, memory, MAC and every disk's top layer. */
export function machineConfig(e: MachineEntry, m: Manifest = e.manifest): MachineConfig {
  return {
    folder: e.folder,
    name: m.name,
    cpus: m.cpus,
    memoryMiB: m.memoryMiB,
    disks: m.disks.map((d) => join(e.folder, d.top)),
    macAddress: m.macAddress,
  };
}

/** The config a snapshot's memory state was saved with, on the given top layers (a state loads only into that). */
export function stateConfig(e: MachineEntry, s: SnapshotRecord, tops: string[]): MachineConfig {
  const vm = s.vm!;
  return {
    folder: e.folder,
    name: e.manifest.name,
    cpus: vm.cpus,
    memoryMiB: vm.memoryMiB,
    disks: tops.map((t) => join(e.folder, t)),
    macAddress: vm.macAddress,
    machineType: vm.machineType,
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
