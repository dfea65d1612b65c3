import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { OperationOptions } from '../operation';
import { commit, rebase, rollBackInterruptedCommit, rollBackInterruptedRebase } from '../qcow2/ops';
import { runningPid, runningTops } from '../runtime';
import { MachineError } from './errors';
import { atomicWriteJson, exists, fsyncDir, unlinkIfExists } from '../os';
import { setReadOnly, toMachineIoError } from './fsutil';
import { layerBacking, repairEmptyTop, setLayerBacking } from './layer-files';
import { baseLayerOf, MANIFEST_FILE, readManifest, validateManifest, writeManifest, type Manifest } from './manifest';
import { step } from './steps';
import { recoverLiveMerge } from './live-merge';

export const JOURNAL_FILE = 'operation.json';

/**
 * One in-place merge of a snapshot deletion or a promotion. Paths are relative to the machine folder (as the
 * layers store their backing names), so a library that was moved still recovers.
 */
export type MergeStep =
  /** Copy what `layer` reads through `from` into it, then back it by `onto` (null: standalone). Reversible: re-point it at `from`. */
  | { kind: 'rebase'; layer: string; from: string; onto: string | null; frozen: boolean }
  /** Commit `from` (kept as is) into its backing layer `into`, then rename `into` over `from`. Irreversible once the commit ran. */
  | { kind: 'commit'; from: string; into: string; frozen: boolean };

/**
 * One merge QEMU does on a running machine's chain (a block job, see runtime/block-jobs.ts); names relative to
 * the folder. Whether it is done is read from the layers' headers (and QEMU's graph for an active commit).
 */
export type LiveStep =
  /** block-stream: `layer` (in QEMU's chain) takes what it reads through `from` and is re-pointed at `onto`. */
  | { kind: 'stream'; job: string; disk: number; layer: string; from: string; onto: string | null }
  /**
   * block-commit of `top` into `base` (its backing file). `overlay`: the layer above `top` that QEMU re-points at
   * `base`; null for an active commit (then `pivot` records the swap: 'pausing' before the guest is stopped for it,
   * 'done' once QEMU writes into `base`). `repoint`: layers outside QEMU's chain backed by `top`, re-pointed after.
   */
  | { kind: 'commit'; job: string; disk: number; top: string; base: string; overlay: string | null; repoint: string[]; pivot?: 'pausing' | 'done' };

/**
 * operation.json: the intent of the one operation in progress on a machine. Until the manifest with
 * `after.revision` is written, the operation is rolled back on recovery (created files removed, merges undone),
 * unless `forward` says an irreversible merge step began; after it, it is rolled forward (files frozen, obsolete
 * files removed).
 */
export interface Journal {
  format: 'vmsnap-operation';
  version: 1;
  operation: string;
  pid: number;
  startedAt: string;
  after: Manifest;
  /** Layer files this operation creates (removed on roll-back). */
  created: string[];
  /** Layer files no longer referenced once committed (removed on roll-forward). */
  obsolete: string[];
  /** Layer files to make read-only once committed (new snapshot layers). */
  freeze: string[];
  /** Snapshot layers made writable for a merge (read-only again on roll-back). */
  thawed: string[];
  merge: MergeStep[];
  forward: boolean;
  /**
   * A new machine folder (relative to this one) whose appearance commits this operation too: a linked clone of
   * the current state takes the source's snapshot in the same breath, and neither may exist without the other.
   */
  companion?: string;
  /** Merges QEMU does with block jobs while the machine runs, after the offline `merge` steps (live-merge.ts). */
  live?: LiveStep[];
}

export type JournalPlan = Pick<Journal, 'operation' | 'after' | 'created' | 'obsolete' | 'freeze' | 'thawed' | 'merge'> & {
  companion?: string;
  live?: LiveStep[];
  /** Flush the journal before going on (default: only when there are merge steps). */
  durable?: boolean;
};

export async function readJournal(folder: string): Promise<Journal | null> {
  const file = join(folder, JOURNAL_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  if (text.length === 0) {
    // A journal that was never flushed, emptied by a power cut: its operation never committed anything.
    await rm(file, { force: true });
    return null;
  }
  let raw: Partial<Journal>;
  try {
    raw = JSON.parse(text) as Partial<Journal>;
  } catch {
    throw new MachineError('INVALID_MANIFEST', `${file} is not valid JSON; an interrupted operation cannot be recovered: move the file away and check the machine.`);
  }
  const lists = ['created', 'obsolete', 'freeze', 'thawed', 'merge'] as const;
  if (raw.format !== 'vmsnap-operation' || raw.version !== 1 || lists.some((k) => !Array.isArray(raw[k]))) {
    throw new MachineError('INVALID_MANIFEST', `${file}: field "format"/"version" is not a vmsnap operation journal this version reads.`);
  }
  const after = validateManifest(raw.after, `${file} (field "after")`);
  return { ...(raw as Journal), after };
}

/** A journaled change of one machine; the caller holds the machine's lock. */
export class Transaction {
  private constructor(
    readonly folder: string,
    private journal: Journal,
  ) {}

  static async begin(folder: string, plan: JournalPlan): Promise<Transaction> {
    const journal: Journal = {
      format: 'vmsnap-operation',
      version: 1,
      pid: process.pid,
      startedAt: new Date().toISOString(),
      forward: false,
      ...plan,
    };
    // A journal of reversible steps only lists files to clean up; it need not survive a power cut.
    await writeJournal(folder, journal, plan.durable ?? plan.merge.length > 0);
    step(`${plan.operation}: journal written`);
    return new Transaction(folder, journal);
  }

  /** begin() with every file list empty unless given. */
  static async start(folder: string, operation: string, after: Manifest, lists: Partial<Omit<JournalPlan, 'operation' | 'after'>> = {}): Promise<Transaction> {
    return Transaction.begin(folder, { operation, after, created: [], obsolete: [], freeze: [], thawed: [], merge: [], ...lists });
  }

  get after(): Manifest {
    return this.journal.after;
  }

  /** The journal as recorded: live merges mark their progress in it (writeJournal). */
  get record(): Journal {
    return this.journal;
  }

  /** Runs the merge steps; on failure undoes them when still possible (else the next open rolls forward). */
  async merge(options: OperationOptions): Promise<void> {
    try {
      await runMerge(this.folder, this.journal, options);
    } catch (e) {
      if (!this.journal.forward) await this.rollBack();
      throw e;
    }
  }

  /** Writes the new manifest (the commit point), then freezes and removes files and the journal. */
  async commit(): Promise<Manifest> {
    try {
      await writeManifest(this.folder, this.journal.after);
    } catch (e) {
      // Not committed (a full disk): undone now while nothing irreversible ran and no companion folder commits it
      // already; otherwise the next recovery finishes it.
      if (!this.journal.forward && this.journal.companion === undefined) await this.rollBack();
      throw toMachineIoError(e, `saving the result of "${this.journal.operation}"`);
    }
    step(`${this.journal.operation}: manifest written`);
    await finish(this.folder, this.journal);
    return this.journal.after;
  }

  async rollBack(): Promise<void> {
    await rollBack(this.folder, this.journal);
  }
}

export async function writeJournal(folder: string, journal: Journal, durable = true): Promise<void> {
  try {
    await atomicWriteJson(join(folder, JOURNAL_FILE), journal, durable);
  } catch (e) {
    throw toMachineIoError(e, `recording the operation "${journal.operation}"`);
  }
}

/**
 * Records durably that the operation only goes forward from here; false when the journal said so already. A write
 * that fails leaves it reversible, in memory as on disk: nothing irreversible may run then.
 */
export async function markForward(folder: string, journal: Journal): Promise<boolean> {
  if (journal.forward) return false;
  journal.forward = true;
  try {
    await writeJournal(folder, journal);
  } catch (e) {
    journal.forward = false;
    throw e;
  }
  return true;
}

export async function runMerge(folder: string, journal: Journal, options: OperationOptions): Promise<void> {
  const at = (name: string): string => resolve(folder, name);
  /** Whether a commit step got past its rename: from there on the operation can only be finished. */
  let pastReturn = false;
  for (const m of journal.merge) {
    if (m.kind === 'rebase') {
      if (m.frozen) await setReadOnly(at(m.layer), false);
      await rebase(at(m.layer), m.onto === null ? null : at(m.onto), options);
      step(`${journal.operation}: rebased ${m.layer}`);
    } else {
      // After the rename `into` is gone: the step is done.
      if (!(await exists(at(m.into)))) {
        pastReturn = true;
        continue;
      }
      if (await markForward(folder, journal)) step(`${journal.operation}: merge marked irreversible`);
      await setReadOnly(at(m.into), false);
      // keepTop: `from` stays whole until the rename, so the commit can always be run again.
      try {
        await commit(at(m.from), { ...options, keepTop: true });
      } catch (e) {
        // A failed commit (a full disk) put `into` back, or kept its undo journal for the roll-back, and `from` is
        // whole: until a rename, undoing is as right as finishing (which a crash still does, as the file says).
        if (!pastReturn) journal.forward = false;
        throw e;
      }
      step(`${journal.operation}: committed ${m.from} into ${m.into}`);
      await rename(at(m.into), at(m.from));
      pastReturn = true;
      await fsyncDir(folder);
      step(`${journal.operation}: renamed ${m.into} to ${m.from}`);
    }
  }
}

export async function finish(folder: string, journal: Journal): Promise<void> {
  for (const f of journal.freeze) await setReadOnly(join(folder, f), true);
  if (journal.freeze.length > 0) step(`${journal.operation}: layers frozen`);
  for (const f of journal.obsolete) {
    await unlinkIfExists(join(folder, f));
    await unlinkIfExists(join(folder, `${f}.vmsnap-undo`));
    step(`${journal.operation}: removed ${f}`);
  }
  // Not flushed: a journal that comes back after a power cut names the manifest's revision, so recovery rolls
  // it forward again (all of the above is idempotent), and the next manifest write flushes this folder anyway.
  await rm(join(folder, JOURNAL_FILE), { force: true });
  step(`${journal.operation}: journal removed`);
}

export async function rollBack(folder: string, journal: Journal): Promise<void> {
  const at = (name: string): string => resolve(folder, name);
  for (const m of [...journal.merge].reverse()) {
    if (m.kind === 'rebase') {
      // A rebase only ever copies what the layer already read, so pointing it back at `from` restores what it
      // reads; its undo journal, if it was cut short, also takes the copied clusters back out.
      if ((await exists(at(m.layer))) && (await exists(at(m.from)))) {
        await rollBackInterruptedRebase(at(m.layer));
        const now = await layerBacking(at(m.layer));
        if (now === null || resolve(folder, now) !== at(m.from)) await setLayerBacking(at(m.layer), at(m.from));
      }
    } else if (await exists(at(m.into))) {
      await rollBackInterruptedCommit(at(m.into));
    }
  }
  for (const f of journal.created) await unlinkIfExists(join(folder, f));
  for (const f of journal.thawed) await setReadOnly(join(folder, f), true);
  await rm(join(folder, JOURNAL_FILE), { force: true });
  await fsyncDir(folder);
}

/**
 * Completes or undoes the operation a killed process left in `folder` (the caller holds the lock). Returns what
 * it did, or null when there was nothing to do.
 */
export async function recoverFolder(folder: string): Promise<'rolled-forward' | 'rolled-back' | null> {
  await removeTemporaryFiles(folder);
  const journal = await readJournal(folder);
  if (journal === null) {
    await repairEmptyTops(folder, await readManifest(folder));
    return null;
  }
  const manifest = await readManifest(folder);
  if (manifest.revision > journal.after.revision) {
    // Its operation finished and a later change was saved since: only the removal of its journal did not reach
    // the disk before a power cut. Undoing it now would throw away that snapshot and what came after.
    await rm(join(folder, JOURNAL_FILE), { force: true });
    return 'rolled-forward';
  }
  const companionMade = journal.companion !== undefined && (await exists(join(resolve(folder, journal.companion), MANIFEST_FILE)));
  if (manifest.revision === journal.after.revision || companionMade) {
    if (manifest.revision !== journal.after.revision) await writeManifest(folder, journal.after);
    await finish(folder, journal);
    return 'rolled-forward';
  }
  if (journal.live !== undefined && journal.live.length > 0) return recoverLiveMerge(folder, journal);
  if (await switchedByQemu(folder, journal)) {
    // A snapshot of a running machine was interrupted after QEMU switched to the new tops: they are the current
    // state now (never delete a file QEMU writes into). Its memory was never recorded: the snapshot keeps the disks.
    const after = structuredClone(journal.after);
    after.revision = manifest.revision + 1;
    const dropped: string[] = [];
    for (const s of after.snapshots) {
      if (s.stateFile !== null && s.vm === null) {
        dropped.push(s.stateFile);
        s.stateFile = null;
      }
      // Its thumbnail is made after the guest resumed: it may not be there yet.
      if (s.thumbnail !== undefined && !(await exists(join(folder, s.thumbnail)))) delete s.thumbnail;
    }
    await writeManifest(folder, after);
    await finish(folder, { ...journal, after, obsolete: [...journal.obsolete, ...dropped, ...dropped.map((f) => `${f}.partial`), ...dropped.map((f) => `${f}.done`)] });
    return 'rolled-forward';
  }
  if (journal.forward) {
    await runMerge(folder, journal, {});
    await writeManifest(folder, journal.after);
    await finish(folder, journal);
    return 'rolled-forward';
  }
  await rollBack(folder, journal);
  await repairEmptyTops(folder, await readManifest(folder));
  return 'rolled-back';
}

/**
 * The hidden temporary files an operation writes next to their final name and renames into place: atomic writes
 * (`.<file>.<hex>.partial`), other writers' `.<file>.<…>.tmp`, new layers (`.<layer>.new-<pid>-<time>`). One left
 * in a machine folder belongs to a killed process (the caller holds the lock).
 */
export function isTemporaryName(name: string): boolean {
  return name.startsWith('.') && (/\.partial$/.test(name) || /\.tmp$/.test(name) || /\.new-\d+-\d+$/.test(name));
}

export async function hasTemporaryFiles(folder: string): Promise<boolean> {
  try {
    return (await readdir(folder)).some(isTemporaryName);
  } catch {
    return false;
  }
}

async function removeTemporaryFiles(folder: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(folder);
  } catch (e) {
    throw toMachineIoError(e, `reading ${folder}`);
  }
  for (const n of names.filter(isTemporaryName)) await rm(join(folder, n), { force: true });
}

/** Whether QEMU runs the machine on the journal's new top layers (a running snapshot got past its switch). */
async function switchedByQemu(folder: string, journal: Journal): Promise<boolean> {
  if (journal.operation !== 'take snapshot' || (await runningPid(folder)) === null) return false;
  const tops = await runningTops(folder).catch(() => null);
  const wanted = journal.after.disks.map((d) => resolve(folder, d.top));
  return tops !== null && tops.length === wanted.length && tops.every((t, i) => resolve(t) === wanted[i]);
}

/** Top layers are created without a flush (see createLayer): one a power cut emptied is made again. */
async function repairEmptyTops(folder: string, m: Manifest): Promise<void> {
  const current = m.current === null ? null : m.snapshots.find((s) => s.id === m.current);
  for (let i = 0; i < m.disks.length; i++) {
    const base = current ? current.layers[i]! : baseLayerOf(m, i);
    await repairEmptyTop(resolve(folder, m.disks[i]!.top), m.disks[i]!.virtualSize, base === null ? null : resolve(folder, base));
  }
}
