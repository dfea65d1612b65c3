// Damaged images made from qemu-made ones by editing single fields, shared by the engine and CLI tests of
// what the library does with them (issue 15: a short compressed stream, a damaged snapshot table, a v2 zero flag).
import { writeFileSync } from 'node:fs';
import { qemuImg, qemuIo } from '../../support/qemu';
import { readBytes, readU64, writeBytes, writeU64, XorShift } from '../../support/fixtures';

const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;
const COMPRESSED = 1n << 62n;

/** 1 MiB of text-like bytes: compressible, but each 64 KiB cluster compresses to well over 512 bytes. */
export function compressibleBytes(seed = 15): Buffer {
  const words = ['qcow2', 'cluster', 'refcount', 'snapshot', 'backing', 'layer', 'guest', 'host', 'table', 'entry'];
  const rng = new XorShift(seed);
  const parts: string[] = [];
  let length = 0;
  while (length < 1024 * 1024) {
    const w = `${rng.pick(words)}${rng.below(1000)} `;
    parts.push(w);
    length += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, 1024 * 1024);
}

/** The file offset of the first compressed L2 entry (the first L2 table of a small image). */
function firstCompressedEntry(path: string): number {
  const l1 = Number(readU64(path, 40));
  const l2 = Number(readU64(path, l1) & OFFSET_MASK);
  for (let i = 0; i < 8192; i++) {
    if (readU64(path, l2 + i * 8) & COMPRESSED) return l2 + i * 8;
  }
  throw new Error(`${path} has no compressed cluster`);
}

/**
 * `qemu-img convert -c` of 1 MiB of compressible bytes, then the first compressed entry's "additional sectors"
 * set to 0: the deflate stream is cut short after its first sector. Returns the raw bytes written.
 */
export function shortCompressedImage(path: string, rawPath: string): Buffer {
  const data = compressibleBytes();
  writeFileSync(rawPath, data);
  qemuImg('convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', rawPath, path);
  const at = firstCompressedEntry(path);
  const clusterBits = readBytes(path, 20, 4).readUInt32BE(0);
  const x = 62n - BigInt(clusterBits - 8);
  const entry = readU64(path, at);
  const sectors = (entry >> x) & ((1n << (62n - x)) - 1n);
  if (sectors === 0n) throw new Error('the first compressed cluster already fits in one sector: the bytes compress too well');
  writeU64(path, at, entry & ~(((1n << (62n - x)) - 1n) << x));
  return data;
}

/** A v2 image (compat=0.10) with data, whose first L2 entry has the v3-only zero flag set. */
export function v2ZeroFlagImage(path: string): void {
  qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', path, '4M');
  qemuIo(path, ['write -P 0x11 0 128k']);
  const l1 = Number(readU64(path, 40));
  const l2 = Number(readU64(path, l1) & OFFSET_MASK);
  writeU64(path, l2, readU64(path, l2) | 1n);
}

/** too-many: one entry more than the table holds; past-end: so many that the table runs past the end of the file. */
export type SnapshotTableDamage = 'too-many' | 'past-end' | 'nul-in-name' | 'l1-past-end';

/** An image with two internal snapshots; `damage` then says how its snapshot table is broken. */
export function damagedSnapshotTable(path: string, damage: SnapshotTableDamage): void {
  qemuImg('create', '-q', '-f', 'qcow2', path, '64M');
  qemuIo(path, ['write -P 0x11 0 1M']);
  qemuImg('snapshot', '-c', 'first', path);
  qemuImg('snapshot', '-c', 'second', path);
  const table = Number(readU64(path, 64));
  switch (damage) {
    case 'too-many':
    case 'past-end': {
      const count = Buffer.alloc(4);
      count.writeUInt32BE(damage === 'too-many' ? 3 : 5000);
      writeBytes(path, 60, count);
      break;
    }
    case 'nul-in-name': {
      // Entry 0: 40 bytes of header, extra data, then id and name; the name's first byte becomes NUL.
      const head = readBytes(path, table, 40);
      const nameAt = table + 40 + head.readUInt32BE(36) + head.readUInt16BE(12);
      writeBytes(path, nameAt, Buffer.from([0]));
      break;
    }
    case 'l1-past-end':
      writeU64(path, table, 0x10_0000_0000n);
      break;
  }
}
