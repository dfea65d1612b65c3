// Helpers the machine-layer verbs (vm, snapshot, clone, compare, diff) share: the library, references, dates.
import { defaultLibraryDir, Library, type ClonedFrom, type MachineSummary } from '../../engine/machine';
import { UsageError, type ArgSpec, type Invocation } from '../args';
import type { CliContext } from '../output';

/** The library named by --library, else VMSNAP_LIBRARY, else the platform's per-user data folder. */
export async function openLibrary(inv: Invocation, ctx: CliContext): Promise<Library> {
  const env = ctx.out.io.env;
  const qemu = { ...(env.VMSNAP_QEMU ? { qemuPath: env.VMSNAP_QEMU } : {}), ...(env.VMSNAP_QEMU_ACCEL ? { accel: env.VMSNAP_QEMU_ACCEL } : {}) };
  return Library.open(inv.global.library ?? defaultLibraryDir(env), { qemu });
}

export const VM_ARG: ArgSpec = { name: 'VM', description: 'a machine: its name, id, or a unique id prefix (6+ characters)' };
export const SNAP_ARG: ArgSpec = { name: 'SNAP', description: 'a snapshot: its name, id, or a unique id prefix (6+ characters)' };

/** Ids are UUIDs; eight hex digits tell them apart in listings, as git's short hashes do. */
export function shortId(id: string): string {
  return id.slice(0, 8);
}

/** "2024-05-01 12:34:56" (UTC), as the snapshot tree shows dates. */
export function formatDate(iso: string): string {
  return iso.replace('T', ' ').slice(0, 19);
}

/** A positive whole number option (--cpus, --memory, --disk). */
export function intOption(inv: Invocation, name: string, min: number): number | undefined {
  const text = inv.value(name);
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text.trim()) || Number(text) < min || !Number.isSafeInteger(Number(text))) {
    throw new UsageError(`--${name} "${text}" is not a whole number of at least ${min}.`, inv.path);
  }
  return Number(text);
}

/** One of a few words (--display std|virtio|none), or undefined when the option is not given. */
export function choiceOption<T extends string>(inv: Invocation, name: string, values: readonly T[]): T | undefined {
  const text = inv.value(name);
  if (text === undefined) return undefined;
  const v = values.find((x) => x === text.trim());
  if (v === undefined) throw new UsageError(`--${name} "${text}" is not ${values.slice(0, -1).join(', ')} or ${values[values.length - 1]}.`, inv.path);
  return v;
}

/** --cpus, --memory and --note, as `vm create` and `vm import` take them. */
export function hardwareOptions(inv: Invocation): { cpus?: number; memoryMiB?: number; note?: string } {
  const cpus = intOption(inv, 'cpus', 1);
  const memoryMiB = intOption(inv, 'memory', 1);
  const note = inv.value('note');
  return { ...(cpus !== undefined ? { cpus } : {}), ...(memoryMiB !== undefined ? { memoryMiB } : {}), ...(note !== undefined ? { note } : {}) };
}

/** "linked clone of snapshot "Base" of "dev"", from a machine's lineage and the library's machines. */
export function describeLineage(from: ClonedFrom, machines: readonly MachineSummary[]): string {
  const source = machines.find((m) => m.id === from.machineId);
  const sourceName = source ? `"${source.name}"` : `a deleted machine (id ${shortId(from.machineId)})`;
  const at = from.snapshotId === null ? 'the current state' : `snapshot ${shortId(from.snapshotId)}`;
  return `${from.kind} clone of ${sourceName}, from ${at}`;
}

/** "1 linked clone" / "2 linked clones". */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
