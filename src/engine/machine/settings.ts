// A machine's settings (cpus, memory, disk size, automatic checkpoint policy) checked in one place, for create,
// import, edit and the manifest reader alike.
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

/** Bounds of an automatic checkpoint policy: an interval up to a year, up to 1000 of each kind kept. */
const MAX_AUTO_EVERY_SECONDS = 366 * 24 * 3600;
const MAX_AUTO_KEEP = 1000;

export interface AutoPolicyFields {
  everySeconds: number;
  keep: number;
  daily: number;
  weekly: number;
}

/** What a policy turned on with some fields left out gets: every 30 minutes, the newest 8. */
export const DEFAULT_AUTO_POLICY: Readonly<AutoPolicyFields> = { everySeconds: 30 * 60, keep: 8, daily: 0, weekly: 0 };

/** The first field of a policy out of bounds and why, or null when it is valid. */
export function autoPolicyProblem(p: AutoPolicyFields): { field: keyof AutoPolicyFields; message: string } | null {
  const whole = (v: number, min: number, max: number): boolean => Number.isSafeInteger(v) && v >= min && v <= max;
  if (!whole(p.everySeconds, 1, MAX_AUTO_EVERY_SECONDS)) return { field: 'everySeconds', message: `must be a whole number of seconds from 1 to ${MAX_AUTO_EVERY_SECONDS} (366 days)` };
  if (!whole(p.keep, 1, MAX_AUTO_KEEP)) return { field: 'keep', message: `must be from 1 to ${MAX_AUTO_KEEP}` };
  if (!whole(p.daily, 0, MAX_AUTO_KEEP)) return { field: 'daily', message: `must be from 0 to ${MAX_AUTO_KEEP}` };
  if (!whole(p.weekly, 0, MAX_AUTO_KEEP)) return { field: 'weekly', message: `must be from 0 to ${MAX_AUTO_KEEP}` };
  return null;
}

/** Refuses a policy out of bounds (INVALID_ARGUMENT, naming the setting as `vm edit` spells it). */
export function validateAutoPolicy(p: AutoPolicyFields): AutoPolicyFields {
  const problem = autoPolicyProblem(p);
  if (problem === null) return p;
  const flag = { everySeconds: 'every', keep: 'keep', daily: 'daily', weekly: 'weekly' }[problem.field];
  throw new MachineError('INVALID_ARGUMENT', `The automatic checkpoint setting "${flag}" ${problem.message}.`);
}
