// Internal snapshots: the snapshot table read and validated, and the read-only view of a disk as it was in one.
import type { ClusterMap } from './cluster-map';
import type { Disk, Extent } from './disk';
import { ImageError } from './errors';
import type { ImageFile } from './file';
import { MAX_L1_BYTES } from './header';
import { checkRange } from './raw';

/** QEMU's limit on the whole snapshot table, which bounds what a hostile image can make us read. */
export const MAX_SNAPSHOT_TABLE_BYTES = 64 * 1024 * 1024;

/** An internal snapshot, as qemu-img snapshot -c or libvirt's snapshot-create make them. */
export interface InternalSnapshot {
  id: string;
  name: string;
  date: Date;
  vmClockNs: number;
  /** Bytes of saved VM state (memory, devices); 0 for a disk-only snapshot. */
  vmStateSize: number;
  /** Virtual disk size when the snapshot was taken. */
  diskSize: number;
  l1TableOffset: number;
  l1Size: number;
}

export async function readSnapshotTable(
  file: ImageFile,
  offset: number,
  count: number,
  clusterSize: number,
  currentSize: number,
): Promise<InternalSnapshot[]> {
  if (count === 0) return [];
  const path = file.path;
  const buf = Buffer.alloc(Math.min(MAX_SNAPSHOT_TABLE_BYTES, file.size - offset));
  await file.readExact(buf, offset, 'snapshot table');
  const { snapshots, problem } = parseSnapshotTable(buf, count, clusterSize, currentSize, file.size);
  if (problem !== null) throw new ImageError('INVALID_IMAGE', `${path}: ${problem}`, path, 'damaged');
  return snapshots;
}

/**
 * Parses `count` entries of a snapshot table read into `buf` (from the table's offset to at most 64 MiB further).
 * Returns the entries before the first damaged one and what is wrong with it: opening refuses the image then,
 * and a check reports it as a corruption (both must agree on what makes an image unusable).
 */
export function parseSnapshotTable(
  buf: Buffer,
  count: number,
  clusterSize: number,
  currentSize: number,
  fileSize: number,
  /** The check walks each snapshot's L1 table itself and reports its problems its own way, as qemu-img does. */
  checkL1Tables = true,
): { snapshots: InternalSnapshot[]; problem: string | null } {
  const out: InternalSnapshot[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    const done = (problem: string): { snapshots: InternalSnapshot[]; problem: string } => ({ snapshots: out, problem });
    if (at + 40 > buf.length) return done(`the snapshot table ends inside entry ${i}.`);
    const l1TableOffset = Number(buf.readBigUInt64BE(at));
    const l1Size = buf.readUInt32BE(at + 8);
    const idLen = buf.readUInt16BE(at + 12);
    const nameLen = buf.readUInt16BE(at + 14);
    const sec = buf.readUInt32BE(at + 16);
    const nsec = buf.readUInt32BE(at + 20);
    const vmClockNs = Number(buf.readBigUInt64BE(at + 24));
    let vmStateSize = buf.readUInt32BE(at + 32);
    const extraLen = buf.readUInt32BE(at + 36);
    const extraAt = at + 40;
    const idAt = extraAt + extraLen;
    const end = idAt + idLen + nameLen;
    if (extraLen > 1024 || end > buf.length) return done(`snapshot ${i} runs past the snapshot table.`);
    let diskSize = currentSize;
    if (extraLen >= 8) vmStateSize = Number(buf.readBigUInt64BE(extraAt));
    if (extraLen >= 16) diskSize = Number(buf.readBigUInt64BE(extraAt + 8));
    if (checkL1Tables && (l1TableOffset % clusterSize !== 0 || l1Size * 8 > MAX_L1_BYTES || l1TableOffset + l1Size * 8 > fileSize)) {
      return done(`the L1 table of snapshot ${i} lies outside the file.`);
    }
    if (!Number.isSafeInteger(diskSize) || !Number.isSafeInteger(vmStateSize)) return done(`snapshot ${i} has an invalid size.`);
    // QEMU keeps ids and names as C strings: a NUL inside one means the entry's lengths are wrong.
    if (buf.subarray(idAt, end).includes(0)) return done(`snapshot ${i} has an id or name with a NUL byte (damaged snapshot table).`);
    if (idLen === 0) return done(`snapshot ${i} has an empty id.`);
    const id = buf.toString('utf8', idAt, idAt + idLen);
    if (out.some((s) => s.id === id)) return done(`two snapshots share the id "${id}".`);
    out.push({
      id,
      name: buf.toString('utf8', idAt + idLen, end),
      date: new Date(sec * 1000 + Math.floor(nsec / 1e6)),
      vmClockNs,
      vmStateSize,
      diskSize,
      l1TableOffset,
      l1Size,
    });
    at = Math.ceil(end / 8) * 8;
  }
  return { snapshots: out, problem: null };
}

/** The internal snapshot with this id, else with this name. */
export function findSnapshot(snapshots: readonly InternalSnapshot[], idOrName: string, path: string): InternalSnapshot {
  const s = snapshots.find((x) => x.id === idOrName) ?? snapshots.find((x) => x.name === idOrName);
  if (!s) {
    const names = snapshots.map((x) => x.name).join(', ') || 'none';
    throw new ImageError('SNAPSHOT_NOT_FOUND', `${path} has no internal snapshot "${idOrName}" (it has: ${names}).`, path);
  }
  return s;
}

/** A read-only view of an image as it was in one of its internal snapshots. */
export class SnapshotView implements Disk {
  readonly format = 'qcow2' as const;

  private constructor(
    /** The image the snapshot belongs to: the view reads its file and its current backing chain. */
    private readonly image: Disk,
    private readonly map: ClusterMap,
    private readonly l1: Buffer,
    readonly size: number,
  ) {}

  /** Reads the snapshot's L1 table and checks it covers the snapshot's disk size. */
  static async open(image: Disk, file: ImageFile, map: ClusterMap, s: InternalSnapshot): Promise<SnapshotView> {
    const l1 = Buffer.alloc(s.l1Size * 8);
    await file.readExact(l1, s.l1TableOffset, 'snapshot L1 table');
    const needed = Math.ceil(s.diskSize / map.clusterSize / map.l2Entries);
    if (s.l1Size < needed) map.damaged(`the L1 table of snapshot "${s.name}" is too small for its disk size`);
    return new SnapshotView(image, map, l1, Math.floor(s.diskSize / 512) * 512);
  }

  get path(): string {
    return this.image.path;
  }

  get backing(): Disk | null {
    return this.image.backing;
  }

  async read(buf: Buffer, offset: number): Promise<void> {
    checkRange(this, offset, buf.length);
    await this.map.read(this.l1, this.image.backing, buf, offset);
  }

  async layerMap(offset: number, length: number): Promise<Extent[]> {
    checkRange(this, offset, length);
    return this.map.layerMap(this.l1, offset, length);
  }

  async close(): Promise<void> {
    // The view borrows the image's file; closing the image closes it.
  }
}
