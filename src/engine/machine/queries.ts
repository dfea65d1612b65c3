// Reading a machine without changing it: the snapshot tree, sizes, the difference between two states, and the
// rows of the snapshots-vs-clones comparison table.
import { join } from 'node:path';
import type { OperationOptions } from '../operation';
import { changedRanges } from '../qcow2/ops';
import { fromImageError } from './layer-files';
import type { LibraryContext } from './library-context';
import { directClones, familyRoot, machineById } from './lineage';
import { details, machineBytes, snapshotMemoryBytes, sumBytes } from './machine-info';
import type { MachineEntry } from './store';
import { ancestry, childrenOf, resolveSnapshot, snapshotById } from './tree';
import type { CompareDependency, CompareRow, MachineSizes, SnapshotTree, SnapshotTreeNode, StateDiff, StateRef } from './types';

export async function snapshotTree(ctx: LibraryContext, ref: string): Promise<SnapshotTree> {
  const { e, all } = await ctx.find(ref);
  const m = e.manifest;
  const build = (parentId: string | null): SnapshotTreeNode[] => {
    const nodes: SnapshotTreeNode[] = childrenOf(m, parentId).map((s) => ({
      kind: 'snapshot',
      id: s.id,
      name: s.name,
      description: s.description,
      createdAt: s.createdAt,
      isCurrentParent: m.current === s.id,
      takenWhileRunning: s.takenWhileRunning,
      hasMemory: s.stateFile !== null,
      quiesced: s.quiesced === true,
      lockedBy: directClones(all, m.id, s.id).map((c) => c.manifest.id),
      auto: s.auto === true,
      children: build(s.id),
    }));
    if (m.current === parentId) {
      nodes.push({ kind: 'current', id: 'current', name: 'You are here', description: '', createdAt: '', isCurrentParent: false, takenWhileRunning: false, hasMemory: false, quiesced: false, lockedBy: [], auto: false, children: [] });
    }
    return nodes;
  };
  return { machineId: m.id, machineName: m.name, roots: build(null) };
}

export async function sizes(ctx: LibraryContext, ref: string): Promise<MachineSizes> {
  const d = await ctx.read(ref, (e, all) => details(e, all));
  const snapshots = d.snapshots.map((s) => ({ id: s.id, name: s.name, sizeBytes: s.sizeBytes }));
  return {
    machineId: d.id,
    snapshots,
    current: { changedBytes: d.currentChangedBytes, sizeBytes: d.currentSizeBytes, parentId: d.current },
    totalBytes: snapshots.reduce((n, s) => n + s.sizeBytes, d.currentSizeBytes),
  };
}

export async function diff(ctx: LibraryContext, ref: string, a: StateRef, b: StateRef, options: { exact?: boolean } & OperationOptions): Promise<StateDiff> {
  return ctx.read(ref, (e) => diffOf(e, a, b, options));
}

async function diffOf(e: MachineEntry, a: StateRef, b: StateRef, options: { exact?: boolean } & OperationOptions): Promise<StateDiff> {
  const state = (r: StateRef): { snapshotId: string | null; layers: string[] } => {
    if (r.trim() === 'current') return { snapshotId: null, layers: e.manifest.disks.map((d) => join(e.folder, d.top)) };
    const s = resolveSnapshot(e.manifest, r);
    return { snapshotId: s.id, layers: s.layers.map((f) => join(e.folder, f)) };
  };
  const sa = state(a);
  const sb = state(b);
  const disks: StateDiff['disks'] = [];
  for (let i = 0; i < e.manifest.disks.length; i++) {
    try {
      const r = await changedRanges(sa.layers[i]!, sb.layers[i]!, options);
      disks.push({ index: i, bytes: r.bytes, ranges: r.ranges.map((x) => ({ offset: x.offset, length: x.length })) });
    } catch (err) {
      throw fromImageError(err, 'comparing two states');
    }
  }
  return {
    a: { ref: a, snapshotId: sa.snapshotId },
    b: { ref: b, snapshotId: sb.snapshotId },
    bytes: disks.reduce((n, d) => n + d.bytes, 0),
    disks,
    exact: options.exact === true,
  };
}

/**
 * The snapshots-vs-clones table for the machine's family: the original machine (found by following `clonedFrom`
 * up), its snapshots, its clones and theirs, with measured sizes. Rows are data; front ends word them.
 */
export async function compare(ctx: LibraryContext, ref: string): Promise<CompareRow[]> {
  return ctx.read(ref, (start, all) => compareRows(start, all));
}

async function compareRows(start: MachineEntry, all: MachineEntry[]): Promise<CompareRow[]> {
  const rows: CompareRow[] = [];
  const visit = async (e: MachineEntry, depth: number, seen: Set<string>): Promise<void> => {
    if (seen.has(e.manifest.id)) return;
    seen.add(e.manifest.id);
    const m = e.manifest;
    const cf = m.clonedFrom;
    const src = machineById(all, cf?.machineId);
    const srcSnap = src && cf?.snapshotId ? snapshotById(src.manifest, cf.snapshotId) : undefined;
    /** The source snapshot a linked clone's disks hang on. */
    const linkedSource: CompareDependency | null =
      cf?.kind === 'linked'
        ? { kind: 'snapshot', snapshotId: cf.snapshotId, snapshotName: srcSnap?.name ?? null, machineId: cf.machineId, machineName: src?.manifest.name ?? null }
        : null;
    rows.push({
      kind: cf ? cf.kind : 'machine',
      id: m.id,
      name: m.name,
      machineId: m.id,
      createdAt: m.createdAt,
      sizeBytes: await machineBytes(e),
      memoryBytes: 0,
      dependsOn: linkedSource ?? { kind: 'nothing' },
      canRunAlongsideSource: true,
      uuid: m.id,
      macAddress: m.macAddress,
      description: m.note,
      depth,
      auto: false,
    });
    for (const s of m.snapshots) {
      const parent = s.parentId ? snapshotById(m, s.parentId) : undefined;
      const memoryBytes = await snapshotMemoryBytes(e, s);
      rows.push({
        kind: 'snapshot',
        id: s.id,
        name: s.name,
        machineId: m.id,
        createdAt: s.createdAt,
        sizeBytes: (await sumBytes(s.layers.map((f) => join(e.folder, f)))) + memoryBytes,
        memoryBytes,
        dependsOn: parent
          ? { kind: 'snapshot', snapshotId: parent.id, snapshotName: parent.name, machineId: m.id, machineName: m.name }
          : (linkedSource ?? { kind: 'machine', machineId: m.id, machineName: m.name }),
        canRunAlongsideSource: false,
        uuid: m.id,
        macAddress: m.macAddress,
        description: s.description,
        depth: depth + 1 + ancestry(m, s.parentId).length,
        auto: s.auto === true,
      });
    }
    for (const c of all.filter((x) => x.manifest.clonedFrom?.machineId === m.id)) await visit(c, depth + 1, seen);
  };
  await visit(familyRoot(all, start), 0, new Set());
  return rows;
}
