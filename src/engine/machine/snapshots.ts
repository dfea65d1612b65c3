// Snapshots of one machine: take (off or running), revert to one, rename or describe one, delete one.
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isImageError } from '../qcow2';
import { isQemuError, setGuestClock, snapshotRunning, startFromState, stopMachine as runtimeStop, type ClockOutcome, type QemuOptions, type QuiesceOutcome } from '../runtime';
import { MachineError } from './errors';
import { measurementsNeeded, planSnapshotDeletion, requireUnlocked, type DeletePlan } from './delete-planner';
import { deleteWhileRunning } from './live-delete';
import { bytesOnDisk, requireSpace, setReadOnly, toMachineIoError } from './fsutil';
import { newId } from './identity';
import { Transaction } from './journal';
import { createLayer, fromImageError, layerAllocatedBytes, newLayerName } from './layer-files';
import type { LibraryContext } from './library-context';
import { machineBytes, snapshotInfo, sumAllocated } from './machine-info';
import { cloneManifest, snapshotOwnFiles, writeManifest, type Manifest, type SnapshotRecord } from './manifest';
import { validateDescription, validateName } from './names';
import { refuseSnapshotIdLikeName } from './resolve-ref';
import { isRunning, runtimeCall, setPower, stateConfig, stateFileName } from './power';
import { step } from './steps';
import { copyPicture, hasLastScreen, lastScreenFromSnapshot, lastScreenPath, thumbnailFileName } from './thumbnails';
import { exists } from '../os';
import type { MachineEntry } from './store';
import { ancestry, resolveSnapshot } from './tree';
import type {
  TakenSnapshot,
  DeleteSnapshotOptions,
  DeleteSnapshotResult,
  EditSnapshotOptions,
  RevertOptions,
  RevertResult,
  SnapshotInfo,
  TakeSnapshotOptions,
} from './types';

export async function takeSnapshot(ctx: LibraryContext, ref: string, name: string, options: TakeSnapshotOptions): Promise<TakenSnapshot> {
  const snapName = validateName(name, 'snapshot name');
  const description = validateDescription(options.description ?? '');
  return ctx.withMachine(ref, 'take snapshot', async (e, all) => {
    refuseSnapshotIdLikeName(snapName, e.manifest.snapshots);
    return takeSnapshotLocked(ctx, e, all, snapName, description, { diskOnly: options.diskOnly === true });
  });
}

/**
 * Takes a snapshot of a machine whose lock the caller holds (name and description already validated). `auto`
 * marks an automatic checkpoint; `now` is its creation time (the schedule's clock).
 */
export async function takeSnapshotLocked(
  ctx: LibraryContext,
  e: MachineEntry,
  all: MachineEntry[],
  name: string,
  description: string,
  options: { diskOnly: boolean; auto?: boolean; now?: Date },
): Promise<TakenSnapshot> {
  const mark: RecordMark = { auto: options.auto === true, createdAt: (options.now ?? new Date()).toISOString() };
  const { entry, snapshot, pauseMs, quiesce } = (await isRunning(e))
    ? await takeRunningLocked(e, name, description, options.diskOnly, ctx.qemu, mark)
    : { ...(await takeLocked(e, name, description, mark)), pauseMs: 0, quiesce: null };
  return { ...(await snapshotInfo(entry, snapshot, all)), pauseMs, quiesce };
}

/** How a new snapshot record is marked: automatic or the user's own, and when it was taken. */
interface RecordMark {
  auto: boolean;
  createdAt: string;
}

export async function revert(ctx: LibraryContext, ref: string, snapshotRef: string, options: RevertOptions): Promise<RevertResult> {
  if (options.discardCurrent && options.saveCurrentAs !== undefined) {
    throw new MachineError('INVALID_ARGUMENT', 'Choose either to discard the current state or to save it as a snapshot, not both.');
  }
  if (!options.discardCurrent && options.saveCurrentAs === undefined) {
    throw new MachineError('NEEDS_CONFIRMATION', 'Reverting throws away the current state: confirm discarding it, or save it as a snapshot first.', [], {
      detail: { kind: 'revert-discards-current' },
    });
  }
  const saveName = options.saveCurrentAs === undefined ? undefined : validateName(options.saveCurrentAs, 'snapshot name');
  return ctx.withMachine(ref, 'revert', async (found, all) => {
    let e = found;
    if (saveName !== undefined) refuseSnapshotIdLikeName(saveName, e.manifest.snapshots);
    const target = resolveSnapshot(e.manifest, snapshotRef);
    await requireStateDevices(e.manifest, target);
    let savedRunning: SnapshotRecord | null = null;
    if (await isRunning(e)) {
      // A running machine's current state is saved with its memory (when asked) before QEMU is ended.
      if (saveName !== undefined) {
        const t = await takeRunningLocked(e, saveName, '', false, ctx.qemu);
        e = t.entry;
        savedRunning = t.snapshot;
      }
      await runtimeCall(() => runtimeStop(e.folder, { ...ctx.qemu, force: true }));
    }
    const m = e.manifest;
    const oldTops = m.disks.map((d) => d.top);
    const discardedBytes = saveName === undefined ? await sumAllocated(oldTops.map((f) => join(e.folder, f))) : 0;
    const saved = saveName === undefined || savedRunning !== null ? null : newSnapshotRecord(m, saveName, '', null, undefined, await hasLastScreen(e.folder));
    const newTops = m.disks.map((_, i) => newLayerName(i));
    const after = cloneManifest(m);
    after.revision++;
    if (saved) after.snapshots.push(saved);
    after.current = target.id;
    after.powerState = 'off';
    after.disks = m.disks.map((d, i) => ({ ...d, top: newTops[i]! }));
    if (target.stateFile !== null && target.vm !== null) {
      // The machine comes back with the CD drive it had at the snapshot: the current state has it too.
      if (target.vm.cdrom === undefined) delete after.cdrom;
      else after.cdrom = target.vm.cdrom;
    }
    const tx = await Transaction.start(e.folder, 'revert', after, { created: [...newTops, ...(saved ? snapshotOwnFiles(saved) : [])], obsolete: saved ? [] : oldTops, freeze: saved ? oldTops : [] });
    await createLayers(tx, e.folder, m, newTops, (i) => join(e.folder, target.layers[i]!), 'revert');
    if (saved) await copyLastScreen(tx, e.folder, saved, 'revert');
    let committed = await tx.commit();
    await lastScreenFromSnapshot(e.folder, target);
    let poweredOn = false;
    let stateLoadError: string | null = null;
    let guestClock: ClockOutcome | null = null;
    if (target.stateFile !== null && target.vm !== null) {
      // The snapshot holds the memory: the machine comes back running where it was.
      const stateFile = join(e.folder, target.stateFile);
      const config = stateConfig({ folder: e.folder, manifest: committed }, target, newTops);
      try {
        await startFromState(config, stateFile, { ...ctx.qemu, accel: target.vm.accel });
        committed = await setPower({ folder: e.folder, manifest: committed }, 'running');
        poweredOn = true;
        // The guest's clock stands where it was at the snapshot: its agent sets it to the host's time.
        guestClock = await setGuestClock(e.folder, ctx.qemu).catch((err: unknown) => ({ set: false, note: `The guest's clock was not set: ${err instanceof Error ? err.message : String(err)}` }));
      } catch (err) {
        if (!isQemuError(err)) throw err;
        stateLoadError = `reverted the disks; the memory state could not be loaded: ${err.message} Start the machine to boot it.`;
      }
    }
    const entry = { folder: e.folder, manifest: committed };
    const savedRecord = savedRunning ?? saved;
    return {
      snapshot: await snapshotInfo(entry, target, all),
      saved: savedRecord ? await snapshotInfo(entry, savedRecord, all) : null,
      discardedBytes,
      poweredOn,
      stateLoadError,
      guestClock,
    };
  });
}

export async function editSnapshot(ctx: LibraryContext, ref: string, snapshotRef: string, changes: EditSnapshotOptions): Promise<SnapshotInfo> {
  const name = changes.name === undefined ? undefined : validateName(changes.name, 'snapshot name');
  const description = changes.description === undefined ? undefined : validateDescription(changes.description);
  return ctx.withMachine(ref, 'edit snapshot', async (e, all) => {
    const m = cloneManifest(e.manifest);
    const s = resolveSnapshot(m, snapshotRef);
    if (name !== undefined) refuseSnapshotIdLikeName(name, m.snapshots);
    if (name !== undefined) s.name = name;
    if (description !== undefined) s.description = description;
    // A checkpoint the user names or describes is one they mean to keep: pruning never deletes it from now on.
    delete s.auto;
    m.revision++;
    await writeManifest(e.folder, m);
    step('edit snapshot: manifest written');
    return snapshotInfo({ folder: e.folder, manifest: m }, s, all);
  });
}

/** `guard`: a last check under the lock (pruning's: the snapshot is still automatic and cheap to delete); it throws to refuse. */
export async function deleteSnapshot(
  ctx: LibraryContext,
  ref: string,
  snapshotRef: string,
  options: DeleteSnapshotOptions,
  guard?: (e: MachineEntry, target: SnapshotRecord) => Promise<void>,
): Promise<DeleteSnapshotResult> {
  return ctx.withMachine(ref, 'delete snapshot', async (e, all) => {
    const m = e.manifest;
    const target = resolveSnapshot(m, snapshotRef);
    await guard?.(e, target);
    // A running machine reads the layers of the current state's ancestry: those merge with QEMU's block jobs.
    const live = (await isRunning(e)) && ancestry(m, m.current).some((s) => s.id === target.id);
    const children = options.children === true;
    const linkedClones = all
      .filter((c) => c.manifest.clonedFrom?.kind === 'linked' && c.manifest.clonedFrom.machineId === m.id)
      .map((c) => ({ id: c.manifest.id, name: c.manifest.name, snapshotId: c.manifest.clonedFrom!.snapshotId }));
    requireUnlocked(m, target, linkedClones);
    const bytesBefore = await machineBytes(e);
    const need = measurementsNeeded(m, target, children);
    const bytes = new Map<string, number>();
    for (const f of need.bytes) bytes.set(f, await bytesOnDisk(join(e.folder, f)));
    const allocated = new Map<string, number>();
    for (const f of need.allocated) allocated.set(f, await layerAllocatedBytes(join(e.folder, f)));
    const plan = planSnapshotDeletion({ manifest: m, target, children, linkedClones, bytes, allocated });
    await requireSpace(e.folder, plan.needSpace, 'deleting the snapshot');
    const committed = live ? await deleteWhileRunning(ctx, e.folder, m, plan, options) : await deleteOffline(e.folder, plan, options);
    const bytesAfter = await machineBytes({ folder: e.folder, manifest: committed });
    return { deleted: plan.deleted, merges: plan.merges, freedBytes: Math.max(0, bytesBefore - bytesAfter) };
  });
}

async function deleteOffline(folder: string, plan: DeletePlan, options: DeleteSnapshotOptions): Promise<Manifest> {
  const tx = await Transaction.start(folder, 'delete snapshot', plan.after, { obsolete: plan.obsolete, freeze: plan.freeze, thawed: plan.thawed, merge: plan.merge });
  try {
    for (const own of plan.reclaimed) await setReadOnly(join(folder, own), false);
    await tx.merge(options);
  } catch (err) {
    throw isImageError(err) ? fromImageError(err, 'deleting the snapshot') : err;
  }
  return tx.commit();
}

/**
 * A snapshot's memory state loads only into the devices it was saved with: refuses (before anything changes) a
 * revert to one saved with an ISO in the CD drive that is gone since.
 */
async function requireStateDevices(m: Manifest, target: SnapshotRecord): Promise<void> {
  const iso = target.stateFile !== null ? target.vm?.cdrom : undefined;
  if (iso === undefined) return;
  const st = await stat(iso).catch(() => null);
  if (st === null || !st.isFile()) {
    throw new MachineError(
      'INVALID_ARGUMENT',
      `Snapshot "${target.name}" of "${m.name}" was taken running with the ISO image ${iso} in its CD drive, which is gone: put that file back to revert to the snapshot with its memory.`,
    );
  }
}

async function takeLocked(e: MachineEntry, name: string, description: string, mark?: RecordMark): Promise<{ entry: MachineEntry; snapshot: SnapshotRecord }> {
  const { tx, snapshot } = await beginTake(e, name, description, undefined, mark);
  return { entry: { folder: e.folder, manifest: await tx.commit() }, snapshot };
}

/**
 * A snapshot of a running (or paused) machine: the runtime creates the new top layers, switches QEMU to them in
 * one transaction and saves the memory (unless diskOnly) at the same instant. Errors before the switch change
 * nothing; a memory save failing after it still commits the disks (QEMU writes into the new tops).
 */
async function takeRunningLocked(
  e: MachineEntry,
  name: string,
  description: string,
  diskOnly: boolean,
  qemu: QemuOptions,
  mark?: RecordMark,
): Promise<{ entry: MachineEntry; snapshot: SnapshotRecord; pauseMs: number; quiesce: QuiesceOutcome | null }> {
  const m = e.manifest;
  const { snapshot, newTops, after } = planTake(m, name, description, { memory: !diskOnly }, mark);
  let pauseMs = 0;
  let quiesce: QuiesceOutcome | null = null;
  const stateFile = snapshot.stateFile;
  const thumbnail = snapshot.thumbnail === undefined ? null : join(e.folder, snapshot.thumbnail);
  // Durable: once QEMU writes into the new tops, recovery must find this journal to keep them.
  const tx = await Transaction.start(e.folder, 'take snapshot', after, {
    created: [...newTops, ...snapshotOwnFiles(snapshot)],
    freeze: snapshot.layers,
    durable: true,
  });
  const record = tx.after.snapshots[tx.after.snapshots.length - 1]!;
  try {
    const r = await snapshotRunning(
      e.folder,
      { newTops: newTops.map((t) => join(e.folder, t)), stateFile: stateFile === null ? null : join(e.folder, stateFile), thumbnail },
      qemu,
    );
    // No screen to dump (no display device): the snapshot has no thumbnail.
    if (r.thumbnail === null) delete record.thumbnail;
    if (r.stateFile !== null) {
      record.vm = { cpus: r.cpus, memoryMiB: r.memoryMiB, macAddress: m.macAddress, machineType: r.machineType, accel: r.accel, qemuVersion: r.qemuVersion, guestAgent: r.guestAgent };
      if (r.cdrom !== null) record.vm.cdrom = r.cdrom;
      record.vm.display = r.display;
    }
    if (r.quiesce !== null) record.quiesced = r.quiesce.quiesced;
    after.powerState = r.resumed ? 'running' : 'paused';
    pauseMs = r.pauseMs;
    quiesce = r.quiesce;
  } catch (err) {
    if (isQemuError(err) && err.code === 'STATE_SAVE_FAILED' && err.switched !== null) {
      // QEMU already writes into the new tops: never delete them; the snapshot keeps the disks only.
      record.stateFile = null;
      if (thumbnail === null || !(await exists(thumbnail))) delete record.thumbnail;
      await tx.commit();
      throw new MachineError('RUNTIME_ERROR', `Snapshot "${name}" holds the disks only: ${err.message}`, [], { cause: err });
    }
    await tx.rollBack();
    throw err;
  }
  // Past the switch, a failure must not roll back (QEMU writes into the new tops): recovery rolls forward.
  step('take snapshot: disks switched');
  return { entry: { folder: e.folder, manifest: await tx.commit() }, snapshot: record, pauseMs, quiesce };
}

/**
 * The first half of taking a snapshot: journal, new empty top layers on the frozen ones. The caller commits the
 * transaction (or rolls it back); with `companion`, the appearance of that folder also commits it.
 */
export async function beginTake(e: MachineEntry, name: string, description: string, companion?: string, mark?: RecordMark): Promise<{ tx: Transaction; snapshot: SnapshotRecord }> {
  const m = e.manifest;
  const { snapshot, newTops, after } = planTake(m, name, description, null, mark, await hasLastScreen(e.folder));
  const tx = await Transaction.start(e.folder, 'take snapshot', after, {
    created: [...newTops, ...snapshotOwnFiles(snapshot)],
    freeze: snapshot.layers,
    ...(companion === undefined ? {} : { companion }),
  });
  await createLayers(tx, e.folder, m, newTops, (i) => join(e.folder, m.disks[i]!.top), 'taking the snapshot');
  await copyLastScreen(tx, e.folder, snapshot, 'taking the snapshot');
  return { tx, snapshot };
}

/**
 * A snapshot of the current state as the manifest records it: its layers are today's tops (they freeze into it).
 * `running` marks a snapshot of a running machine, with or without its memory. It gets a thumbnail when running
 * (dropped if QEMU has no screen) or when the machine, off, has a last screen.
 */
function newSnapshotRecord(
  m: Manifest,
  name: string,
  description: string,
  running: { memory: boolean } | null,
  mark?: RecordMark,
  lastScreen = false,
): SnapshotRecord {
  const id = newId();
  const record: SnapshotRecord = {
    id,
    name,
    description,
    parentId: m.current,
    createdAt: mark?.createdAt ?? new Date().toISOString(),
    takenWhileRunning: running !== null,
    layers: m.disks.map((d) => d.top),
    stateFile: running?.memory ? stateFileName(id) : null,
    vm: null,
    ...(mark?.auto ? { auto: true as const } : {}),
  };
  if (running !== null || lastScreen) record.thumbnail = thumbnailFileName(id);
  return record;
}

/** A snapshot of a machine that is off shows its last screen: a copy of its own. */
async function copyLastScreen(tx: Transaction, folder: string, s: SnapshotRecord, what: string): Promise<void> {
  if (s.thumbnail === undefined) return;
  try {
    await copyPicture(lastScreenPath(folder), join(folder, s.thumbnail));
  } catch (err) {
    await rm(join(folder, s.thumbnail), { force: true });
    await tx.rollBack();
    throw toMachineIoError(err, what);
  }
  step(`${what}: thumbnail copied`);
}

/** The manifest after a snapshot of the current state: each top freezes into the snapshot and a new empty top (named here) starts on it. */
function planTake(
  m: Manifest,
  name: string,
  description: string,
  running: { memory: boolean } | null,
  mark?: RecordMark,
  lastScreen = false,
): { snapshot: SnapshotRecord; newTops: string[]; after: Manifest } {
  const snapshot = newSnapshotRecord(m, name, description, running, mark, lastScreen);
  const newTops = m.disks.map((_, i) => newLayerName(i));
  const after = cloneManifest(m);
  after.revision++;
  after.snapshots.push(snapshot);
  after.current = snapshot.id;
  after.disks = m.disks.map((d, i) => ({ ...d, top: newTops[i]! }));
  return { snapshot, newTops, after };
}

async function createLayers(tx: Transaction, folder: string, m: Manifest, names: string[], backing: (i: number) => string, what: string): Promise<void> {
  try {
    for (let i = 0; i < names.length; i++) {
      await createLayer(join(folder, names[i]!), m.disks[i]!.virtualSize, backing(i));
      step(`${what}: layer created`);
    }
  } catch (err) {
    await tx.rollBack();
    throw isImageError(err) ? fromImageError(err, what) : toMachineIoError(err, what);
  }
}
