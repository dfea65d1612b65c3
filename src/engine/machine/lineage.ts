// Machines among the library's entries: finding one by reference, and who hangs on whom through linked clones.
import { MachineError } from './errors';
import { shortId } from './identity';
import { resolveRef } from './resolve-ref';
import type { MachineEntry } from './store';

/** A machine by id, exact name, or unique id prefix (see resolveRef). */
export function findMachine(all: MachineEntry[], ref: string): MachineEntry {
  const wanted = ref.trim();
  const r = resolveRef(all, ref, (e) => e.manifest.id, (e) => e.manifest.name);
  switch (r.kind) {
    case 'found':
      return r.item;
    case 'ambiguous-name':
      if (r.byIdToo === true) {
        throw new MachineError(
          'AMBIGUOUS',
          `"${wanted}" is the name of one machine and the id (or its start) of another: name the one you mean by its whole id.`,
          r.items.map((e) => `${e.manifest.name} (id ${e.manifest.id}, ${e.folder})`),
        );
      }
      throw new MachineError(
        'AMBIGUOUS',
        `${r.items.length} machines are named "${wanted}": name one by its id (${r.items.map((e) => shortId(e.manifest.id)).join(', ')}).`,
        r.items.map((e) => `${e.manifest.name} (id ${e.manifest.id}, ${e.folder})`),
      );
    case 'ambiguous-prefix':
      throw new MachineError('AMBIGUOUS', `Several machines have ids starting with "${wanted}": give more of the id.`, r.items.map((e) => `${e.manifest.name} (id ${e.manifest.id})`));
    case 'none':
      throw new MachineError('NOT_FOUND', `There is no machine "${wanted}" in the library.`, [], { detail: { kind: 'machine-not-found', ref: wanted } });
  }
}

export function machineById(all: MachineEntry[], id: string | undefined): MachineEntry | undefined {
  return id === undefined ? undefined : all.find((x) => x.manifest.id === id);
}

/** Linked clones whose disks hang directly on the machine's snapshot. */
export function directClones(all: MachineEntry[], machineId: string, snapshotId: string): MachineEntry[] {
  return all.filter((c) => c.manifest.clonedFrom?.kind === 'linked' && c.manifest.clonedFrom.machineId === machineId && c.manifest.clonedFrom.snapshotId === snapshotId);
}

/** Linked clones of the machine, and theirs, parents before children. */
export function linkedDescendants(all: MachineEntry[], machineId: string): MachineEntry[] {
  const out: MachineEntry[] = [];
  const queue = [machineId];
  while (queue.length > 0) {
    const id = queue.shift()!;
    for (const c of all) {
      if (c.manifest.clonedFrom?.kind === 'linked' && c.manifest.clonedFrom.machineId === id && !out.includes(c)) {
        out.push(c);
        queue.push(c.manifest.id);
      }
    }
  }
  return out;
}

/** The original machine of a family: `clonedFrom` followed up as far as the sources still exist. */
export function familyRoot(all: MachineEntry[], e: MachineEntry): MachineEntry {
  let root = e;
  for (const seen = new Set<string>(); root.manifest.clonedFrom && !seen.has(root.manifest.id); ) {
    seen.add(root.manifest.id);
    const up = machineById(all, root.manifest.clonedFrom?.machineId);
    if (!up) break;
    root = up;
  }
  return root;
}
