// Deleting a snapshot whose layer a running machine reads: the offline planner's choice (commit the one dependant
// into the snapshot's layer, or rebase every dependant onto the layer below), carried out by QEMU's block jobs for
// the layers in QEMU's chain and by our own qcow2 ops for branches QEMU does not read. Offline the committed layer
// is renamed over its dependant; here files stay where QEMU has them open, so the manifest names the merged file
// instead, and branches that read through the committed layer are re-pointed at it (it reads the same).
import { resolve } from 'node:path';
import { isQemuError, runningPid } from '../runtime';
import type { OperationOptions } from '../operation';
import { MachineError } from './errors';
import { recoverFolder, Transaction, type LiveStep, type MergeStep } from './journal';
import { keepFilesInUse, runLiveSteps, stopForUndo } from './live-merge';
import type { DeletePlan } from './delete-planner';
import { setReadOnly } from './fsutil';
import { fromRuntimeError } from './power';
import type { LibraryContext } from './library-context';
import { readManifest, type Manifest } from './manifest';
import { ancestry } from './tree';

/** The layers QEMU reads for each disk, top first. */
function runningChains(m: Manifest): string[][] {
  const path = ancestry(m, m.current).reverse();
  return m.disks.map((d, i) => [d.top, ...path.map((s) => s.layers[i]!)]);
}

interface LivePlan {
  after: Manifest;
  offline: MergeStep[];
  live: LiveStep[];
  obsolete: string[];
  freeze: string[];
  thawed: string[];
}

/** Turns an offline deletion plan into block jobs for the layers in QEMU's chain (pure). */
export function livePlan(m: Manifest, plan: DeletePlan): LivePlan {
  const chains = runningChains(m);
  const stamp = `vmsnap-delete-${Date.now().toString(36)}`;
  const after = structuredClone(plan.after);
  const obsolete = [...plan.obsolete];
  const freeze = [...plan.freeze];
  const thawed = [...plan.thawed];
  const offline: MergeStep[] = [];
  const live: LiveStep[] = [];
  const diskOf = (layer: string): number => chains.findIndex((c) => c.includes(layer));
  const rename = (from: string, to: string): void => {
    for (const s of after.snapshots) s.layers = s.layers.map((l) => (l === from ? to : l));
    after.disks = after.disks.map((d) => (d.top === from ? { ...d, top: to } : d));
  };
  for (const step of plan.merge) {
    if (step.kind === 'rebase') {
      const disk = diskOf(step.layer);
      if (disk < 0) offline.push(step);
      else live.push({ kind: 'stream', job: `${stamp}-${live.length}`, disk, layer: step.layer, from: step.from, onto: step.onto });
      continue;
    }
    // commit: `from` (the one dependant) merges into `into` (the snapshot's layer), which takes its place.
    const disk = diskOf(step.from);
    if (disk < 0) throw new Error(`live delete: ${step.from} is not in QEMU's chain`);
    const chain = chains[disk]!;
    const at = chain.indexOf(step.from);
    const overlay = at === 0 ? null : chain[at - 1]!;
    const depSnapshot = m.snapshots.find((s) => s.layers[disk] === step.from);
    const repoint = depSnapshot === undefined ? [] : m.snapshots.filter((s) => s.parentId === depSnapshot.id && !chain.includes(s.layers[disk]!)).map((s) => s.layers[disk]!);
    live.push({ kind: 'commit', job: `${stamp}-${live.length}`, disk, top: step.from, base: step.into, overlay, repoint });
    rename(step.from, step.into);
    obsolete.push(step.from);
    const frozenAt = freeze.indexOf(step.from);
    if (frozenAt >= 0) freeze[frozenAt] = step.into;
    if (overlay !== null && overlay !== m.disks[disk]!.top) {
      // QEMU rewrites the overlay's backing file: a frozen snapshot layer is writable for that moment.
      thawed.push(overlay);
      freeze.push(overlay);
    }
  }
  for (const own of plan.reclaimed) {
    // The current state changed nothing since the snapshot (as measured): its layer becomes the top again, and
    // QEMU's active commit carries over whatever the guest wrote meanwhile.
    const disk = chains.findIndex((c) => c[1] === own);
    if (disk < 0) throw new Error(`live delete: ${own} is not below a top layer`);
    live.push({ kind: 'commit', job: `${stamp}-${live.length}`, disk, top: m.disks[disk]!.top, base: own, overlay: null, repoint: [] });
  }
  // Streams first (they can be cancelled), then the commits (the point of no return).
  live.sort((a, b) => (a.kind === b.kind ? 0 : a.kind === 'stream' ? -1 : 1));
  return { after, offline, live, obsolete, freeze, thawed };
}

/**
 * Runs a deletion plan on a running machine (the caller holds the lock, checked the plan and the space). Cancel
 * works until the first commit starts. If QEMU ends in the middle, the deletion is finished (or undone) offline at
 * once, as the next open would.
 */
export async function deleteWhileRunning(ctx: LibraryContext, folder: string, m: Manifest, plan: DeletePlan, options: OperationOptions): Promise<Manifest> {
  const p = livePlan(m, plan);
  const tx = await Transaction.start(folder, 'delete snapshot', p.after, {
    obsolete: p.obsolete,
    freeze: p.freeze,
    thawed: p.thawed,
    merge: p.offline,
    live: p.live,
    durable: true,
  });
  for (const own of plan.reclaimed) await setReadOnly(resolve(folder, own), false);
  await tx.merge(options); // branches QEMU does not read (undone by itself on failure)
  try {
    const end = await runLiveSteps(folder, tx.record, {
      qemu: ctx.qemu,
      ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    if (end === 'cancelled') throw new MachineError('ABORTED', 'Deleting the snapshot was cancelled; nothing was changed.');
    await keepFilesInUse(folder, tx.record);
  } catch (e) {
    if (isQemuError(e) && (await runningPid(folder)) === null) {
      // QEMU ended under the job: the chain on disk is consistent (see block-jobs.ts); finish or undo it now.
      const r = await recoverFolder(folder);
      if (r === 'rolled-forward') return readManifest(folder);
      throw new MachineError('RUNTIME_ERROR', `The machine stopped while its snapshot was being merged; nothing was changed: ${e.message}`, [], { cause: e });
    }
    // Before anything irreversible the deletion is undone now (once QEMU runs no job of it); after it, the next
    // open finishes it.
    if (!tx.record.forward && (await stopForUndo(folder, tx.record).catch(() => false))) await tx.rollBack();
    throw fromRuntimeError(e);
  }
  return tx.commit();
}
