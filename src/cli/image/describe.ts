// What `info` and `snapshots` report about an image, as data (for --json) and as text (like qemu-img).
import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Qcow2Image, type Disk, type InternalSnapshot } from '../../engine/qcow2';
import { COMPAT_LAZY_REFCOUNTS, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, INCOMPAT_EXTL2 } from '../../engine/qcow2/header';
import { formatTable } from '../table';
import { formatSize, formatSizeExact } from '../units';

export interface SnapshotInfo {
  id: string;
  name: string;
  /** ISO 8601. */
  date: string;
  vmClockNs: number;
  vmStateSize: number;
  diskSize: number;
}

export interface LayerInfo {
  filename: string;
  format: 'qcow2' | 'raw';
  virtualSize: number;
  /** Bytes the file occupies on the host disk. */
  actualSize: number;
  /** qcow2 only from here on. */
  clusterSize?: number;
  compat?: '0.10' | '1.1';
  backingFile?: string | null;
  /** The backing file resolved against the image's folder. */
  fullBackingFile?: string | null;
  backingFormat?: string | null;
  dirty?: boolean;
  corrupt?: boolean;
  extendedL2?: boolean;
  lazyRefcounts?: boolean;
  refcountBits?: number;
  compressionType?: 'zlib' | 'zstd';
  snapshots?: SnapshotInfo[];
}

export function snapshotInfo(s: InternalSnapshot): SnapshotInfo {
  return { id: s.id, name: s.name, date: s.date.toISOString(), vmClockNs: s.vmClockNs, vmStateSize: s.vmStateSize, diskSize: s.diskSize };
}

export async function describeLayer(disk: Disk): Promise<LayerInfo> {
  if (!(disk instanceof Qcow2Image)) {
    const st = await stat(disk.path);
    return { filename: disk.path, format: disk.format, virtualSize: disk.size, actualSize: st.blocks * 512 };
  }
  const h = disk.header;
  return {
    filename: disk.path,
    format: 'qcow2',
    virtualSize: disk.size,
    actualSize: await disk.bytesOnDisk(),
    clusterSize: disk.clusterSize,
    compat: h.version === 2 ? '0.10' : '1.1',
    backingFile: h.backingFile,
    fullBackingFile: h.backingFile === null ? null : (disk.backing?.path ?? resolve(dirname(disk.path), h.backingFile)),
    backingFormat: h.backingFormat,
    dirty: disk.wasDirty || (h.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n,
    corrupt: (h.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n,
    extendedL2: (h.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n,
    lazyRefcounts: (h.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n,
    refcountBits: 2 ** h.refcountOrder,
    compressionType: h.compressionType === 1 ? 'zstd' : 'zlib',
    snapshots: disk.snapshots.map(snapshotInfo),
  };
}

const yesNo = (b: boolean | undefined): string => (b ? 'yes' : 'no');

export function layerText(info: LayerInfo): string {
  const lines = [
    `image: ${info.filename}`,
    `file format: ${info.format}`,
    `virtual size: ${formatSizeExact(info.virtualSize)}`,
    `disk size: ${formatSize(info.actualSize)}`,
  ];
  if (info.format === 'qcow2') {
    lines.push(`cluster size: ${info.clusterSize}`);
    if (info.backingFile) {
      lines.push(`backing file: ${info.backingFile} (actual path: ${info.fullBackingFile})`);
      lines.push(`backing file format: ${info.backingFormat ?? '(not recorded; probed)'}`);
    }
    lines.push(`dirty: ${yesNo(info.dirty)}`);
    if (info.snapshots && info.snapshots.length > 0) lines.push('Snapshot list:', snapshotsTable(info.snapshots));
    lines.push(
      'Format specific information:',
      `    compat: ${info.compat}`,
      `    compression type: ${info.compressionType}`,
      `    lazy refcounts: ${info.lazyRefcounts}`,
      `    refcount bits: ${info.refcountBits}`,
      `    corrupt: ${info.corrupt}`,
      `    extended l2: ${info.extendedL2}`,
    );
  }
  return lines.join('\n');
}

function two(n: number): string {
  return String(n).padStart(2, '0');
}

/** Local time, as qemu-img prints snapshot dates. */
function localDate(iso: string): string {
  const d = new Date(iso);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** The guest clock at snapshot time: HH:MM:SS.mmm. */
function vmClock(ns: number): string {
  const ms = Math.floor(ns / 1e6);
  const h = Math.floor(ms / 3_600_000);
  return `${two(h)}:${two(Math.floor(ms / 60_000) % 60)}:${two(Math.floor(ms / 1000) % 60)}.${String(ms % 1000).padStart(3, '0')}`;
}

export function snapshotsTable(snapshots: readonly SnapshotInfo[]): string {
  return formatTable(
    [
      { header: 'ID' },
      { header: 'TAG' },
      { header: 'VM SIZE', align: 'right' },
      { header: 'DATE' },
      { header: 'VM CLOCK' },
      { header: 'DISK SIZE', align: 'right' },
    ],
    snapshots.map((s) => [s.id, s.name, formatSize(s.vmStateSize), localDate(s.date), vmClock(s.vmClockNs), formatSize(s.diskSize)]),
  );
}
