// The rule by which a person names a machine or a snapshot: its id, its exact name, or a unique id prefix; and
// the rule that keeps new names from reading as ids.
import { MachineError } from './errors';

/** Prefixes shorter than this are never taken as an id: they would match too easily by chance. */
export const MIN_ID_PREFIX = 6;

export type RefMatch<T> =
  | { kind: 'found'; item: T }
  /**
   * Several items answer to the reference: several carry the name, or (`byIdToo`) one carries it as its name and
   * another's id is or starts with it. The caller asks for a whole id.
   */
  | { kind: 'ambiguous-name'; items: T[]; byIdToo?: boolean }
  /** Several ids start with the prefix: the caller asks for more of it. */
  | { kind: 'ambiguous-prefix'; items: T[] }
  | { kind: 'none' };

/** Whether `ref` is `id` or a prefix of it long enough to be taken as one (case-insensitive). */
function idMatches(id: string, lower: string): boolean {
  return id === lower || (lower.length >= MIN_ID_PREFIX && id.startsWith(lower));
}

/**
 * Resolves `ref` among `items`: a whole id (case-insensitive), an exact name (trimmed, NFC), or an id prefix of at
 * least MIN_ID_PREFIX characters. When the name points at one item and the id (or prefix) at another, nothing is
 * chosen: a name that shadows an id must not make a delete remove the wrong thing.
 */
export function resolveRef<T>(items: readonly T[], ref: string, idOf: (item: T) => string, nameOf: (item: T) => string): RefMatch<T> {
  const wanted = ref.trim();
  const lower = wanted.toLowerCase();
  const byName = items.filter((x) => nameOf(x) === wanted.normalize('NFC'));
  const byWholeId = items.filter((x) => idOf(x) === lower || idOf(x) === wanted);
  const byId = byWholeId.length > 0 ? byWholeId : items.filter((x) => idMatches(idOf(x), lower));
  const all = [...new Set([...byName, ...byId])];
  if (all.length === 1) return { kind: 'found', item: all[0]! };
  if (all.length === 0) return { kind: 'none' };
  if (byName.length === 0) return { kind: 'ambiguous-prefix', items: byId };
  return byId.length === 0 ? { kind: 'ambiguous-name', items: byName } : { kind: 'ambiguous-name', items: all, byIdToo: true };
}

/**
 * Refuses a new name that is, or begins like, an id of the objects it will be told apart from (`others`): it
 * would shadow that id in every reference. `what` is "snapshot name" or "machine name".
 */
export function refuseIdLikeName(name: string, others: readonly { id: string; label: string }[], what: string): void {
  const lower = name.toLowerCase();
  const hit = others.find((o) => idMatches(o.id, lower) || idMatches(o.id.replace(/-/g, ''), lower.replace(/-/g, '')));
  if (hit !== undefined) {
    throw new MachineError(
      'INVALID_NAME',
      `The ${what} "${name}" reads as the id of ${hit.label} (${hit.id}): references to either would be ambiguous; choose another name.`,
    );
  }
}

/** refuseIdLikeName against every machine of the library (machine names). */
export function refuseMachineIdLikeName(name: string, all: readonly { manifest: { id: string; name: string } }[]): void {
  refuseIdLikeName(name, all.map((x) => ({ id: x.manifest.id, label: `machine "${x.manifest.name}"` })), 'machine name');
}

/** refuseIdLikeName against the machine's snapshots (snapshot names). */
export function refuseSnapshotIdLikeName(name: string, snapshots: readonly { id: string; name: string }[]): void {
  refuseIdLikeName(name, snapshots.map((s) => ({ id: s.id, label: `snapshot "${s.name}"` })), 'snapshot name');
}
