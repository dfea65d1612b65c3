// Clones: a new machine from another's current state or snapshot (linked or full), and promoting a linked clone.
import { rename, rm } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import type { OperationOptions } from '../operation';
import { flatten } from '../qcow2/ops';
import { MachineError } from './errors';
import { machineFolderPath, makeMachineFolder } from './folders';
import { requireSpace } from './fsutil';
import { newId } from './identity';
import { guestSetupOf, writeGuestAccess } from './guest-access';
import { Transaction, type MergeStep } from './journal';
import { createLayer, fromImageError, newLayerName } from './layer-files';
import type { LibraryContext } from './library-context';
import { details, snapshotInfo, sumBytes } from './machine-info';
import { newManifest } from './machines';
import { cloneManifest, type SnapshotRecord } from './manifest';
import { validateName } from './names';
import { refuseMachineIdLikeName } from './resolve-ref';
import { isRunning, requireOff } from './power';
import { beginTake } from './snapshots';
import { step } from './steps';
import { deletingFolder } from './store';
import { copyPicture, hasLastScreen, lastScreenPath, thumbnailPath } from './thumbnails';
import { childrenOf, resolveSnapshot } from './tree';
import type { CloneOptions, CloneResult, MachineDetails } from './types';

export async function clone(ctx: LibraryContext, ref: string, newName: string, options: CloneOptions): Promise<CloneResult> {
  const displayName = validateName(newName, 'clone name');
  if (options.kind !== 'linked' && options.kind !== 'full') {
    throw new MachineError('INVALID_ARGUMENT', 'Choose a linked or a full clone.');
  }
  return ctx.withMachine(ref, `${options.kind} clone`, async (src, all) => {
    refuseMachineIdLikeName(displayName, all);
    if (await isRunning(src)) {
      throw new MachineError('POWERED_ON', `Machine "${src.manifest.name}" is running: power it off before cloning it (a clone is made only from a powered-off machine).`);
    }
    const fromCurrent = options.from === undefined || options.from.trim() === 'current';
    const id = newId();
    const final = machineFolderPath(ctx.store, displayName, id, options.dir);
    let snap: SnapshotRecord | null = fromCurrent ? null : resolveSnapshot(src.manifest, options.from!);
    // A linked clone of the current state takes a snapshot of the source; the clone folder appearing commits both.
    let taking: Transaction | null = null;
    if (options.kind === 'linked' && snap === null) {
      const t = await beginTake(src, `Linked clone "${displayName}"`, `Taken to make the linked clone "${displayName}".`, relative(src.folder, final));
      taking = t.tx;
      snap = t.snapshot;
    }
    const m = src.manifest;
    const tops = m.disks.map((_, i) => newLayerName(i));
    try {
      await makeMachineFolder(ctx.store, final, async (staging) => {
        const manifest = newManifest(id, displayName, all, { cpus: m.cpus, memoryMiB: m.memoryMiB }, m.disks.map((d, i) => ({ virtualSize: d.virtualSize, top: tops[i]! })));
        if (options.kind === 'linked') {
          const bases = snap!.layers.map((f) => join(src.folder, f));
          for (let i = 0; i < tops.length; i++) {
            await createLayer(join(staging, tops[i]!), m.disks[i]!.virtualSize, bases[i]!);
            step('linked clone: layer created');
          }
          manifest.clonedFrom = { machineId: m.id, snapshotId: snap!.id, kind: 'linked', baseLayers: bases.map((b) => relative(final, b)) };
        } else {
          const chains = snap ? snap.layers.map((f) => join(src.folder, f)) : m.disks.map((d) => join(src.folder, d.top));
          await flattenAll(chains, tops.map((t) => join(staging, t)), options, 'making the full clone');
          step('full clone: layers written');
          manifest.clonedFrom = { machineId: m.id, snapshotId: snap?.id ?? null, kind: 'full', baseLayers: null };
        }
        // A new instance for cloud-init: its own seed (instance-id, hostname, host key), the same user and keys.
        if (m.guest !== undefined) manifest.guest = await writeGuestAccess(staging, manifest, await guestSetupOf(src.folder, m.guest));
        if (m.forwards !== undefined) manifest.forwards = m.forwards.map((f) => ({ guestPort: f.guestPort }));
        // The same guest on the same host: the CD drive and a known KVM failure carry over.
        if (m.cdrom !== undefined) manifest.cdrom = m.cdrom;
        if (m.kvmFailedAt !== undefined) manifest.kvmFailedAt = m.kvmFailedAt;
        // The clone starts as the source's state looked: its own copy of that picture, as its last screen.
        const picture = snap ? thumbnailPath(src.folder, snap) : (await hasLastScreen(src.folder)) ? lastScreenPath(src.folder) : null;
        if (picture !== null) await copyPicture(picture, lastScreenPath(staging));
        return manifest;
      });
    } catch (err) {
      await taking?.rollBack();
      throw err;
    }
    let source = src;
    if (taking) {
      try {
        source = { folder: src.folder, manifest: await taking.commit() };
      } catch (err) {
        // The source's manifest could not be written (a full disk): the clone folder, whose presence would
        // commit the snapshot on recovery, is moved aside first, so that both are undone now.
        const aside = deletingFolder(final);
        await rename(final, aside);
        await taking.rollBack();
        await rm(aside, { recursive: true, force: true });
        await ctx.store.forget(final).catch(() => {});
        throw err;
      }
    }
    const entries = await ctx.entries();
    const e = entries.find((x) => x.folder === final)!;
    return { machine: await details(e, entries), takenSnapshot: taking ? await snapshotInfo(source, snap!, entries) : null };
  });
}

export async function promote(ctx: LibraryContext, ref: string, options: OperationOptions): Promise<MachineDetails> {
  return ctx.withMachine(ref, 'promote', async (e, all) => {
    const m = e.manifest;
    const cf = m.clonedFrom;
    if (!cf || cf.kind !== 'linked' || cf.baseLayers === null) {
      throw new MachineError('INVALID_ARGUMENT', `Machine "${m.name}" is not a linked clone: it already stands alone.`);
    }
    await requireOff(e, 'promote');
    const merge: MergeStep[] = [];
    const thawed: string[] = [];
    for (let i = 0; i < m.disks.length; i++) {
      for (const s of childrenOf(m, null)) {
        merge.push({ kind: 'rebase', layer: s.layers[i]!, from: cf.baseLayers[i]!, onto: null, frozen: true });
        thawed.push(s.layers[i]!);
      }
      if (m.current === null) merge.push({ kind: 'rebase', layer: m.disks[i]!.top, from: cf.baseLayers[i]!, onto: null, frozen: false });
    }
    const need = (await sumBytes(cf.baseLayers.map((b) => resolve(e.folder, b)))) * Math.max(1, merge.length / m.disks.length);
    await requireSpace(e.folder, need, 'promoting the clone');
    const after = cloneManifest(m);
    after.revision++;
    after.clonedFrom = { ...cf, kind: 'full', baseLayers: null };
    const tx = await Transaction.start(e.folder, 'promote', after, { freeze: thawed, thawed, merge });
    try {
      await tx.merge(options);
    } catch (err) {
      throw fromImageError(err, 'promoting the clone');
    }
    const committed = await tx.commit();
    return details({ folder: e.folder, manifest: committed }, all);
  });
}

async function flattenAll(sources: string[], targets: string[], options: OperationOptions, what: string): Promise<void> {
  const totals = new Array<number>(sources.length).fill(0);
  const dones = new Array<number>(sources.length).fill(0);
  for (let i = 0; i < sources.length; i++) {
    try {
      await flatten(sources[i]!, targets[i]!, {
        ...(options.signal ? { signal: options.signal } : {}),
        onProgress: (done, total) => {
          dones[i] = done;
          totals[i] = total;
          options.onProgress?.(
            dones.reduce((a, b) => a + b, 0),
            totals.reduce((a, b) => a + b, 0),
          );
        },
      });
    } catch (err) {
      throw fromImageError(err, what);
    }
  }
}
