import { open } from 'node:fs/promises';
import { clusterSizeOf, INCOMPAT_EXTL2, parseHeader } from '../header';
import { toImageError } from '../errors';
import { mergeRanges, type ByteRange } from './ranges';

const OFFSET_MASK = 0x00fffffffffffe00n;
const COMPRESSED = 1n << 62n;

/**
 * The bytes of a qcow2 file that writing (or zeroing) the guest ranges `guest` may change in place, read from
 * the image's own tables: the header cluster, the L1 table, the refcount table and blocks, the L2 tables and
 * data clusters behind those guest ranges, and every free cluster (a new allocation may reuse one). Anything
 * else a write touches lies past the file's current end. Together with that length, this is all an undo
 * journal has to keep to put the file back byte for byte.
 *
 * 'tables': for an image opened with copyOnWrite, whose referenced data clusters are never written: only the
 * tables are at risk. Free clusters are left out too: whatever a change leaves in them, the restored tables do
 * not point there, so the image reads as before (though not byte for byte).
 */
export async function qcow2BytesAtRisk(
  path: string,
  guest: readonly ByteRange[],
  scope: 'everything' | 'tables' = 'everything',
): Promise<{ fileLength: number; ranges: ByteRange[] }> {
  const data = scope === 'everything';
  const file = await open(path, 'r').catch((e: unknown) => {
    throw toImageError(e, path);
  });
  try {
    const fileLength = (await file.stat()).size;
    const readAt = async (offset: number, length: number): Promise<Buffer> => {
      const buf = Buffer.alloc(Math.max(0, Math.min(length, fileLength - offset)));
      if (buf.length > 0) await file.read(buf, 0, buf.length, offset);
      return buf;
    };
    const header = parseHeader(await readAt(0, 2 * 1024 * 1024), fileLength, path);
    const cs = clusterSizeOf(header);
    const roundUp = (n: number): number => Math.ceil(n / cs) * cs;
    const ranges: ByteRange[] = [{ offset: 0, length: cs }];
    const cluster = (offset: number): void => {
      if (offset < fileLength) ranges.push({ offset, length: cs });
    };

    // Refcounts: their blocks change with every allocation, and a cluster whose refcount is 0 may be reused.
    ranges.push({ offset: header.refcountTableOffset, length: header.refcountTableClusters * cs });
    const refcountTable = await readAt(header.refcountTableOffset, header.refcountTableClusters * cs);
    const refcountBits = 2 ** header.refcountOrder;
    const perBlock = (cs * 8) / refcountBits;
    const fileClusters = Math.ceil(fileLength / cs);
    for (let t = 0; t * 8 < refcountTable.length && t * perBlock < fileClusters; t++) {
      const first = t * perBlock;
      const blockOffset = Number(refcountTable.readBigUInt64BE(t * 8) & ~0x1ffn);
      if (blockOffset === 0) {
        if (data) ranges.push({ offset: first * cs, length: perBlock * cs }); // no block: all free
        continue;
      }
      cluster(blockOffset);
      if (!data) continue;
      const block = await readAt(blockOffset, cs);
      for (let i = 0; i < perBlock && first + i < fileClusters; i++) {
        if (refcountAt(block, i, refcountBits) === 0) ranges.push({ offset: (first + i) * cs, length: cs });
      }
    }
    const covered = (refcountTable.length / 8) * perBlock * cs;
    if (covered < fileLength && data) ranges.push({ offset: covered, length: fileLength - covered });

    // The active L1 table, and the L2 tables and data clusters behind the guest ranges.
    ranges.push({ offset: header.l1TableOffset, length: roundUp(header.l1Size * 8) });
    const l1 = await readAt(header.l1TableOffset, header.l1Size * 8);
    const entryBytes = header.incompatibleFeatures & INCOMPAT_EXTL2 ? 16 : 8;
    const l2Entries = cs / entryBytes;
    for (const g of mergeRanges(guest)) {
      const firstCluster = Math.floor(g.offset / cs);
      const endCluster = Math.ceil((g.offset + g.length) / cs);
      for (let c = firstCluster; c < endCluster; ) {
        const l1Index = Math.floor(c / l2Entries);
        const l2End = Math.min(endCluster, (l1Index + 1) * l2Entries);
        const l2Offset = l1Index * 8 + 8 <= l1.length ? Number(l1.readBigUInt64BE(l1Index * 8) & OFFSET_MASK) : 0;
        if (l2Offset !== 0) cluster(l2Offset);
        if (l2Offset !== 0 && data) {
          const l2 = await readAt(l2Offset, cs);
          for (let k = c; k < l2End; k++) {
            const at = (k % l2Entries) * entryBytes;
            if (at + 8 > l2.length) break;
            const entry = l2.readBigUInt64BE(at);
            const host = Number(entry & OFFSET_MASK);
            if ((entry & COMPRESSED) === 0n && host !== 0) cluster(host);
          }
        }
        c = l2End;
      }
    }
    const clipped = mergeRanges(ranges)
      .map((r) => ({ offset: r.offset, length: Math.min(r.offset + r.length, fileLength) - r.offset }))
      .filter((r) => r.length > 0);
    return { fileLength, ranges: clipped };
  } finally {
    await file.close();
  }
}

/** Refcount entry `i` of a block; sub-byte widths are packed from the least significant bit, as QEMU does. */
function refcountAt(block: Buffer, i: number, bits: number): number {
  if (bits < 8) {
    const perByte = 8 / bits;
    const byte = block[Math.floor(i / perByte)] ?? 0;
    return (byte >> (bits * (i % perByte))) & ((1 << bits) - 1);
  }
  const bytes = bits / 8;
  const at = i * bytes;
  if (at + bytes > block.length) return 0;
  if (bytes === 8) return block.readBigUInt64BE(at) === 0n ? 0 : 1;
  return block.readUIntBE(at, bytes);
}
