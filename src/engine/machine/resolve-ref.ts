// The rule by which a person names a machine or a snapshot: its id, its exact name, or a unique id prefix.

/** Prefixes shorter than this are never taken as an id: they would match too easily by chance. */
export const MIN_ID_PREFIX = 6;

export type RefMatch<T> =
  | { kind: 'found'; item: T }
  /** Several items carry the name: the caller asks for an id. */
  | { kind: 'ambiguous-name'; items: T[] }
  /** Several ids start with the prefix: the caller asks for more of it. */
  | { kind: 'ambiguous-prefix'; items: T[] }
  | { kind: 'none' };

/**
 * Resolves `ref` among `items`: a whole id (case-insensitive), else an exact name (trimmed, NFC), else an id prefix
 * of at least MIN_ID_PREFIX characters. A name wins over a prefix; an ambiguous name is not resolved by prefix.
 */
export function resolveRef<T>(items: readonly T[], ref: string, idOf: (item: T) => string, nameOf: (item: T) => string): RefMatch<T> {
  const wanted = ref.trim();
  const lower = wanted.toLowerCase();
  const byId = items.find((x) => idOf(x) === lower || idOf(x) === wanted);
  if (byId !== undefined) return { kind: 'found', item: byId };
  const byName = items.filter((x) => nameOf(x) === wanted.normalize('NFC'));
  if (byName.length === 1) return { kind: 'found', item: byName[0]! };
  if (byName.length > 1) return { kind: 'ambiguous-name', items: byName };
  if (wanted.length >= MIN_ID_PREFIX) {
    const byPrefix = items.filter((x) => idOf(x).startsWith(lower));
    if (byPrefix.length === 1) return { kind: 'found', item: byPrefix[0]! };
    if (byPrefix.length > 1) return { kind: 'ambiguous-prefix', items: byPrefix };
  }
  return { kind: 'none' };
}
