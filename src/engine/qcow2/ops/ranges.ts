/** Byte ranges of a virtual disk, and the set arithmetic the operations plan their I/O with. */
export interface ByteRange {
  offset: number;
  length: number;
}

/** Sorted, with overlapping and touching ranges joined; empty ranges dropped. */
export function mergeRanges(ranges: readonly ByteRange[]): ByteRange[] {
  const sorted = ranges.filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: ByteRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else {
      out.push({ offset: r.offset, length: r.length });
    }
  }
  return out;
}

/** The parts of `from` not covered by `minus` (both merged). */
export function subtractRanges(from: readonly ByteRange[], minus: readonly ByteRange[]): ByteRange[] {
  const out: ByteRange[] = [];
  let j = 0;
  for (const r of from) {
    let start = r.offset;
    const end = r.offset + r.length;
    while (j < minus.length && minus[j]!.offset + minus[j]!.length <= start) j++;
    for (let k = j; k < minus.length && minus[k]!.offset < end; k++) {
      const m = minus[k]!;
      if (m.offset > start) out.push({ offset: start, length: m.offset - start });
      start = Math.max(start, m.offset + m.length);
      if (start >= end) break;
    }
    if (start < end) out.push({ offset: start, length: end - start });
  }
  return out;
}

/** Widens every range to whole `unit`s (so writes fill whole clusters), clipped to `limit`, then merged. */
export function alignRanges(ranges: readonly ByteRange[], unit: number, limit: number): ByteRange[] {
  return mergeRanges(
    ranges.map((r) => {
      const start = Math.floor(r.offset / unit) * unit;
      const end = Math.min(limit, Math.ceil((r.offset + r.length) / unit) * unit);
      return { offset: start, length: end - start };
    }),
  );
}

/** Cuts ranges into pieces of at most `chunk` bytes, each ending on a multiple of `chunk` where it can. */
export function splitRanges(ranges: readonly ByteRange[], chunk: number): ByteRange[] {
  const out: ByteRange[] = [];
  for (const r of ranges) {
    let at = r.offset;
    const end = r.offset + r.length;
    while (at < end) {
      const next = Math.min(end, (Math.floor(at / chunk) + 1) * chunk);
      out.push({ offset: at, length: next - at });
      at = next;
    }
  }
  return out;
}

export function totalLength(ranges: readonly ByteRange[]): number {
  let n = 0;
  for (const r of ranges) n += r.length;
  return n;
}
