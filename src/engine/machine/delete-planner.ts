// Deleting a snapshot, planned without touching the disk: which layers merge into which, which files go, the
// manifest after. The caller measures the layers the plan needs (measurementsNeeded) and runs the plan.
import { MachineError } from './errors';
import type { MergeStep } from './journal';
import { baseLayerOf, cloneManifest, snapshotOwnFiles, type Manifest, type SnapshotRecord } from './manifest';
import { ancestry, childrenOf, snapshotById, subtreeIds } from './tree';
import type { DeleteSnapshotResult } from './types';

/** A linked clone of the machine, as far as deleting its snapshots cares. */
export interface LinkedCloneRef {
  id: string;
  name: string;
  /** The snapshot of this machine its disks hang on. */
  snapshotId: string | null;
}

export interface DeletePlanInput {
  manifest: Manifest;
  target: SnapshotRecord;
  /** Delete the target's whole subtree. */
  children: boolean;
  /** The machine's linked clones (a snapshot they hang on, or one below it, is locked). */
  linkedClones: readonly LinkedCloneRef[];
  /** Host bytes of the layer files measurementsNeeded listed under `bytes` (names relative to the folder). */
  bytes: ReadonlyMap<string, number>;
  /** Bytes each layer listed under `allocated` holds itself. */
  allocated: ReadonlyMap<string, number>;
}

export interface DeletePlan {
  deleted: { id: string; name: string }[];
  /** The manifest once the deletion is committed. */
  after: Manifest;
  merge: MergeStep[];
  obsolete: string[];
  freeze: string[];
  thawed: string[];
  /** Snapshot layers that become a disk's top again (made writable before the merge). */
  reclaimed: string[];
  merges: DeleteSnapshotResult['merges'];
  /** Free space the merges may need, in bytes. */
  needSpace: number;
}

/** Refuses (LOCKED_BY_CLONES) when a linked clone reads the target's layer or one below it. */
export function requireUnlocked(m: Manifest, target: SnapshotRecord, linkedClones: readonly LinkedCloneRef[]): void {
  const below = subtreeIds(m, target.id);
  const hanging = linkedClones.filter((c) => below.has(c.snapshotId ?? ''));
  if (hanging.length === 0) return;
  const many = hanging.length > 1;
  throw new MachineError(
    'LOCKED_BY_CLONES',
    `Snapshot "${target.name}" is locked: the linked clone${many ? 's' : ''} ${hanging.map((c) => `"${c.name}"`).join(', ')} depend${many ? '' : 's'} on it; delete or promote ${many ? 'them' : 'it'} first.`,
    hanging.map((c) => `${c.name} (id ${c.id})`),
  );
}

/** What depends directly on the target: its child snapshots' layers and, when it is the current state's parent, the tops. */
function dependants(m: Manifest, target: SnapshotRecord): { files: string[]; frozen: boolean }[] {
  const deps = childrenOf(m, target.id).map((c) => ({ files: c.layers, frozen: true }));
  if (m.current === target.id) deps.push({ files: m.disks.map((d) => d.top), frozen: false });
  return deps;
}

/** The layer files whose sizes the plan needs: host bytes, and bytes held by the layer itself. */
export function measurementsNeeded(m: Manifest, target: SnapshotRecord, children: boolean): { bytes: string[]; allocated: string[] } {
  if (children) {
    const doomed = subtreeIds(m, target.id);
    const currentDoomed = m.current !== null && doomed.has(m.current);
    return { bytes: currentDoomed ? ancestry(m, m.current).filter((s) => doomed.has(s.id)).flatMap((s) => s.layers) : [], allocated: [] };
  }
  const deps = dependants(m, target);
  if (deps.length === 0) return { bytes: [], allocated: [] };
  return {
    bytes: [...target.layers, ...deps.flatMap((d) => d.files)],
    allocated: deps.length === 1 && !deps[0]!.frozen ? deps[0]!.files : [],
  };
}

/**
 * Plans deleting a snapshot (with children: its subtree) so that every other state reads exactly as before.
 * One dependant: the cheaper of committing it into the snapshot's layer (which then takes its place) and
 * rebasing it onto the layer below; a current state that changed nothing gets the snapshot's layer back as its
 * top. Several dependants: each is rebased. None: the layer is removed.
 */
export function planSnapshotDeletion(input: DeletePlanInput): DeletePlan {
  const { manifest: m, target, children } = input;
  requireUnlocked(m, target, input.linkedClones);
  const measured = (map: ReadonlyMap<string, number>, file: string): number => {
    const n = map.get(file);
    if (n === undefined) throw new Error(`delete planner: ${file} was not measured`);
    return n;
  };
  const bytes = (file: string): number => measured(input.bytes, file);
  const doomed = children ? subtreeIds(m, target.id) : new Set([target.id]);
  const parentLayer = (i: number): string | null =>
    target.parentId !== null ? snapshotById(m, target.parentId)!.layers[i]! : baseLayerOf(m, i);
  const stateFiles = m.snapshots.filter((s) => doomed.has(s.id)).flatMap(snapshotOwnFiles);

  const merge: MergeStep[] = [];
  const obsolete: string[] = [];
  const thawed: string[] = [];
  const freeze: string[] = [];
  const merges: DeleteSnapshotResult['merges'] = [];
  /** Disks whose empty top is dropped and whose snapshot layer becomes the top again. */
  const reclaimed = new Map<number, string>();
  let needSpace = 0;
  if (children) {
    for (const id of doomed) obsolete.push(...snapshotById(m, id)!.layers);
    const currentDoomed = m.current !== null && doomed.has(m.current);
    if (currentDoomed) {
      // The current state keeps its content: the doomed layers it reads through are copied into its top.
      for (let i = 0; i < m.disks.length; i++) {
        merge.push({ kind: 'rebase', layer: m.disks[i]!.top, from: snapshotById(m, m.current!)!.layers[i]!, onto: parentLayer(i), frozen: false });
      }
      for (const s of ancestry(m, m.current)) if (doomed.has(s.id)) for (const f of s.layers) needSpace += bytes(f);
    }
    merges.push({ snapshotId: target.id, strategy: currentDoomed ? 'rebase' : 'none', dependants: currentDoomed ? 1 : 0 });
  } else {
    const deps = dependants(m, target);
    let strategy: 'none' | 'commit' | 'rebase' = 'none';
    const commits: MergeStep[] = [];
    for (let i = 0; i < m.disks.length; i++) {
      const own = target.layers[i]!;
      if (deps.length === 0) {
        obsolete.push(own);
        continue;
      }
      const ownBytes = bytes(own);
      if (deps.length === 1 && !deps[0]!.frozen && measured(input.allocated, deps[0]!.files[i]!) === 0) {
        // The current state changed nothing since this snapshot: the snapshot's layer becomes the top again,
        // with no data to move (constant time, the common "delete the snapshot I just took").
        reclaimed.set(i, own);
        thawed.push(own);
        obsolete.push(deps[0]!.files[i]!);
        strategy = 'commit';
        continue;
      }
      if (deps.length === 1) {
        const dep = deps[0]!;
        const depBytes = bytes(dep.files[i]!);
        if (depBytes <= ownBytes) {
          // Cheaper to merge the dependant into this layer, which then takes the dependant's file name.
          commits.push({ kind: 'commit', from: dep.files[i]!, into: own, frozen: dep.frozen });
          thawed.push(own);
          if (dep.frozen) freeze.push(dep.files[i]!);
          needSpace += 2 * depBytes; // the data, and the undo copy of what it overwrites
          strategy = 'commit';
          continue;
        }
      }
      for (const dep of deps) {
        merge.push({ kind: 'rebase', layer: dep.files[i]!, from: own, onto: parentLayer(i), frozen: dep.frozen });
        if (dep.frozen) {
          thawed.push(dep.files[i]!);
          freeze.push(dep.files[i]!);
        }
        needSpace += ownBytes;
      }
      obsolete.push(own);
      if (strategy === 'none') strategy = 'rebase';
    }
    // Reversible rebases first; the first commit is the point of no return.
    merge.push(...commits);
    merges.push({ snapshotId: target.id, strategy, dependants: deps.length });
  }

  const after = cloneManifest(m);
  after.revision++;
  after.snapshots = m.snapshots.filter((s) => !doomed.has(s.id)).map((s) => (s.parentId === target.id ? { ...s, parentId: target.parentId } : s));
  if (m.current !== null && doomed.has(m.current)) after.current = target.parentId;
  for (const [i, own] of reclaimed) after.disks[i] = { ...after.disks[i]!, top: own };
  return {
    deleted: m.snapshots.filter((s) => doomed.has(s.id)).map((s) => ({ id: s.id, name: s.name })),
    after,
    merge,
    obsolete: [...obsolete, ...stateFiles],
    freeze,
    thawed,
    reclaimed: [...reclaimed.values()],
    merges,
    needSpace,
  };
}
