// The snapshot tree of one machine's manifest: children, ancestry, subtrees, and finding a snapshot by reference.
import { MachineError } from './errors';
import type { Manifest, SnapshotRecord } from './manifest';
import { resolveRef } from './resolve-ref';

/** Children of `parentId` (null: roots) in creation order (the manifest keeps snapshots in creation order). */
export function childrenOf(m: Manifest, parentId: string | null): SnapshotRecord[] {
  return m.snapshots.filter((s) => s.parentId === parentId);
}

export function snapshotById(m: Manifest, id: string): SnapshotRecord | undefined {
  return m.snapshots.find((s) => s.id === id);
}

/** The snapshot and everything below it. */
export function subtreeIds(m: Manifest, rootId: string): Set<string> {
  const ids = new Set<string>([rootId]);
  // Creation order means parents come before children, but edits may not keep that: loop until stable.
  for (let grew = true; grew; ) {
    grew = false;
    for (const s of m.snapshots) {
      if (s.parentId !== null && ids.has(s.parentId) && !ids.has(s.id)) {
        ids.add(s.id);
        grew = true;
      }
    }
  }
  return ids;
}

/** Root first: the snapshots from the tree's root down to `id`. */
export function ancestry(m: Manifest, id: string | null): SnapshotRecord[] {
  const path: SnapshotRecord[] = [];
  for (let at = id; at !== null; ) {
    const s = snapshotById(m, at);
    if (!s) break;
    path.unshift(s);
    at = s.parentId;
  }
  return path;
}

/** "Base > Installed > Before update" */
export function treePath(m: Manifest, id: string): string {
  return ancestry(m, id)
    .map((s) => s.name)
    .join(' > ');
}

/** A snapshot by id, exact name, or unique id prefix (see resolveRef). */
export function resolveSnapshot(m: Manifest, ref: string): SnapshotRecord {
  const wanted = ref.trim();
  const r = resolveRef(m.snapshots, ref, (s) => s.id, (s) => s.name);
  switch (r.kind) {
    case 'found':
      return r.item;
    case 'ambiguous-name':
      if (r.byIdToo === true) {
        throw new MachineError(
          'AMBIGUOUS',
          `"${wanted}" is the name of one snapshot of "${m.name}" and the id (or its start) of another: name the one you mean by its whole id.`,
          r.items.map((s) => `${treePath(m, s.id)} (id ${s.id})`),
        );
      }
      throw new MachineError(
        'AMBIGUOUS',
        `${r.items.length} snapshots of "${m.name}" are named "${wanted}": name one by its id (${r.items.map((s) => s.id.slice(0, 8)).join(', ')}).`,
        r.items.map((s) => `${treePath(m, s.id)} (id ${s.id})`),
      );
    case 'ambiguous-prefix':
      throw new MachineError(
        'AMBIGUOUS',
        `Several snapshots of "${m.name}" have ids starting with "${wanted}": give more of the id.`,
        r.items.map((s) => `${treePath(m, s.id)} (id ${s.id})`),
      );
    case 'none':
      throw new MachineError('NOT_FOUND', `Machine "${m.name}" has no snapshot "${wanted}".`, [], {
        detail: { kind: 'snapshot-not-found', machineName: m.name, ref: wanted },
      });
  }
}
