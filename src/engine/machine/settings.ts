// A machine's settings (cpus, memory, disk size) checked in one place, for create, import and edit alike.
import { MachineError } from './errors';

const GiB = 1024 * 1024 * 1024;
export const DEFAULT_DISK_SIZE = 16 * GiB;
const MAX_DISK_SIZE = 64 * 1024 * GiB;
export const DEFAULT_CPUS = 2;
export const DEFAULT_MEMORY_MIB = 2048;
const MAX_CPUS = 1024;
/** 16 TiB. */
const MAX_MEMORY_MIB = 16 * 1024 * 1024;

/** Refuses a cpu count or memory size QEMU could not be given; absent fields are not checked. */
export function validateSettings(s: { cpus?: number | undefined; memoryMiB?: number | undefined }): void {
  if (s.cpus !== undefined && (!Number.isInteger(s.cpus) || s.cpus < 1 || s.cpus > MAX_CPUS)) {
    throw new MachineError('INVALID_ARGUMENT', `${s.cpus} is not a CPU count from 1 to ${MAX_CPUS}.`);
  }
  if (s.memoryMiB !== undefined && (!Number.isInteger(s.memoryMiB) || s.memoryMiB < 1 || s.memoryMiB > MAX_MEMORY_MIB)) {
    throw new MachineError('INVALID_ARGUMENT', `${s.memoryMiB} is not a memory size in MiB.`);
  }
}

/** A new disk's virtual size: whole sectors from 1 MiB to 64 TiB. */
export function validateDiskSize(size: number): number {
  if (!Number.isSafeInteger(size) || size < 1024 * 1024 || size > MAX_DISK_SIZE || size % 512 !== 0) {
    throw new MachineError('INVALID_ARGUMENT', `The disk size ${size} is not a multiple of 512 bytes from 1 MiB to 64 TiB.`);
  }
  return size;
}
