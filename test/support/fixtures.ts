// Fixture builders for the qcow2 interop suites, on top of qemu.ts. Images are made and filled by QEMU's own
// tools, and everything the suites compare against (raw conversions, maps, header fields) comes from QEMU or
// from a few lines of independent parsing here, never from the library under test.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { ChainExtent, Disk, ExtentKind } from '../../src/engine/qcow2/disk';
import { isImageError, type ImageError, type ImageErrorCode } from '../../src/engine/qcow2/errors';
import { qemuImg, run } from './qemu';

export const KiB = 1024;
export const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------------
// Creating and filling images with QEMU

export interface Qcow2Spec {
  /** Virtual size in bytes; omitted: the backing file's size. */
  size?: number;
  clusterSize?: number;
  compat?: '0.10' | '1.1';
  extendedL2?: boolean;
  backing?: string;
  backingFormat?: 'qcow2' | 'raw';
  compression?: 'zlib' | 'zstd';
  lazyRefcounts?: boolean;
}

export function createQcow2(path: string, spec: Qcow2Spec): void {
  const o: string[] = [];
  if (spec.clusterSize !== undefined) o.push(`cluster_size=${spec.clusterSize}`);
  if (spec.compat !== undefined) o.push(`compat=${spec.compat}`);
  if (spec.extendedL2) o.push('extended_l2=on');
  if (spec.compression !== undefined) o.push(`compression_type=${spec.compression}`);
  if (spec.lazyRefcounts) o.push('lazy_refcounts=on');
  const args = ['create', '-q', '-f', 'qcow2'];
  if (o.length > 0) args.push('-o', o.join(','));
  if (spec.backing !== undefined) args.push('-b', spec.backing, '-F', spec.backingFormat ?? 'qcow2');
  args.push(path);
  if (spec.size !== undefined) args.push(String(spec.size));
  qemuImg(...args);
}

export function createRaw(path: string, size: number): void {
  qemuImg('create', '-q', '-f', 'raw', path, String(size));
}

/** One guest operation, as qemu-io and the library both perform it. */
export type GuestOp =
  | { kind: 'write'; offset: number; length: number; pattern: number }
  /** Bytes from `source` repeated from its start, as `qemu-io write -s` fills its buffer. */
  | { kind: 'writeFile'; offset: number; length: number; source: string }
  | { kind: 'zero'; offset: number; length: number }
  | { kind: 'discard'; offset: number; length: number }
  /** Whole clusters written compressed (`write -c`). */
  | { kind: 'compressed'; offset: number; length: number; pattern: number };

export function qemuIoCommand(op: GuestOp): string {
  switch (op.kind) {
    case 'write':
      return `write -q -P ${op.pattern} ${op.offset} ${op.length}`;
    case 'writeFile':
      return `write -q -s ${op.source} ${op.offset} ${op.length}`;
    case 'zero':
      return `write -q -z ${op.offset} ${op.length}`;
    case 'discard':
      return `discard -q ${op.offset} ${op.length}`;
    case 'compressed':
      return `write -q -c -P ${op.pattern} ${op.offset} ${op.length}`;
  }
}

/** Applies operations with qemu-io, many `-c` commands per process so thousands of operations stay fast. */
export function qemuApply(file: string, ops: readonly GuestOp[], format: 'qcow2' | 'raw' = 'qcow2', batch = 400): void {
  for (let i = 0; i < ops.length; i += batch) {
    const args = ['-f', format];
    for (const op of ops.slice(i, i + batch)) args.push('-c', qemuIoCommand(op));
    args.push(file);
    const out = run('qemu-io', args);
    if (/error|failed/i.test(out)) throw new Error(`qemu-io on ${file}: ${out}`);
  }
}

/** The buffer an operation writes (zeros for zero writes and discards). */
export function opBytes(op: GuestOp, sources: ReadonlyMap<string, Buffer> = new Map()): Buffer {
  switch (op.kind) {
    case 'write':
    case 'compressed':
      return Buffer.alloc(op.length, op.pattern);
    case 'zero':
    case 'discard':
      return Buffer.alloc(op.length);
    case 'writeFile': {
      const src = sources.get(op.source);
      if (!src) throw new Error(`no bytes recorded for pattern file ${op.source}`);
      return repeatTo(src, op.length);
    }
  }
}

export function repeatTo(src: Buffer, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let at = 0; at < length; at += src.length) src.copy(out, at, 0, Math.min(src.length, length - at));
  return out;
}

/** `qemu-img convert -O raw` of an image (or of one of its internal snapshots). */
export function convertToRaw(src: string, dst: string, snapshot?: string): void {
  const args = ['convert', '-U', '-f', 'qcow2'];
  if (snapshot !== undefined) args.push('-l', `snapshot.name=${snapshot}`);
  args.push('-O', 'raw', src, dst);
  qemuImg(...args);
}

/** `qemu-img compare` of a qcow2 image with a raw file; returns qemu's message when they differ. */
export function compareWithRaw(image: string, raw: string): string | null {
  const r = spawnSync('qemu-img', ['compare', '-U', '-f', 'qcow2', '-F', 'raw', image, raw], { encoding: 'utf8' });
  if (r.status === 0) return null;
  if (r.status === 1) return r.stdout.trim();
  throw new Error(`qemu-img compare ${image} ${raw} failed (${r.status}): ${r.stderr}`);
}

/** Runs qemu-img from another working directory (relative backing paths must not depend on ours). */
export function qemuImgIn(cwd: string, ...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('qemu-img', args, { cwd, encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A model of a virtual disk kept in memory, the expected content for write tests. */
export class DiskModel {
  readonly bytes: Buffer;
  constructor(size: number, initial?: Buffer) {
    this.bytes = Buffer.alloc(size);
    if (initial) initial.copy(this.bytes, 0, 0, Math.min(size, initial.length));
  }
  apply(op: GuestOp, sources?: ReadonlyMap<string, Buffer>): void {
    opBytes(op, sources).copy(this.bytes, op.offset);
  }
  set(offset: number, data: Buffer): void {
    data.copy(this.bytes, offset);
  }
  save(path: string): void {
    writeFileSync(path, this.bytes);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reading a Disk and comparing it with QEMU's view

/** Reads a whole file (for small raw conversions). */
export async function readFileAt(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    return bytesRead === length ? buf : buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * Reads the whole virtual disk through `disk.read` in chunks of `chunk` bytes (any size, also unaligned) and
 * compares it with a raw file; returns null when equal or a sentence naming the first differing byte.
 */
export async function diffDiskWithRaw(disk: Disk, rawPath: string, chunk = MiB): Promise<string | null> {
  const rawSize = statSync(rawPath).size;
  if (disk.size !== rawSize) return `virtual size ${disk.size}, but qemu-img convert produced ${rawSize} bytes`;
  const fh = await open(rawPath, 'r');
  try {
    for (let at = 0; at < disk.size; at += chunk) {
      const len = Math.min(chunk, disk.size - at);
      const ours = Buffer.alloc(len);
      const theirs = Buffer.alloc(len);
      await disk.read(ours, at);
      await fh.read(theirs, 0, len, at);
      if (!ours.equals(theirs)) {
        const i = firstDifference(ours, theirs);
        return (
          `guest offset ${at + i} (0x${(at + i).toString(16)}, read of ${len} bytes at ${at}): ` +
          `library read 0x${ours[i]!.toString(16)}, qemu reads 0x${theirs[i]!.toString(16)}` +
          ` (differs over ${countDifferentRun(ours, theirs, i)} bytes from there)`
        );
      }
    }
  } finally {
    await fh.close();
  }
  return null;
}

export function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  // Compare in blocks first: a byte loop over 64 MiB is slow.
  for (let at = 0; at < n; at += 4096) {
    const end = Math.min(n, at + 4096);
    if (!a.subarray(at, end).equals(b.subarray(at, end))) {
      for (let i = at; i < end; i++) if (a[i] !== b[i]) return i;
    }
  }
  return n;
}

function countDifferentRun(a: Buffer, b: Buffer, from: number): number {
  let i = from;
  while (i < a.length && a[i] !== b[i]) i++;
  return i - from;
}

/** A range of the chain map in a form both sides can be normalised to. */
export interface MapRange {
  offset: number;
  length: number;
  kind: ExtentKind;
  /** The serving layer; -1 for unallocated (QEMU and the library number those differently). */
  depth: number;
}

interface QemuMapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
}

/**
 * `qemu-img map --output=json`, normalised: present+data -> data, present+zero -> zero, absent -> unallocated.
 * Layers listed in `rawDepths` report only data: QEMU reports holes of a raw host file as zeros, which is a
 * property of the host file, not of the image.
 */
export function qemuMap(image: string, rawDepths: ReadonlySet<number> = new Set()): MapRange[] {
  const args = image.startsWith('json:') ? [image] : ['-f', 'qcow2', image];
  const entries = JSON.parse(qemuImg('map', '-U', '--output=json', ...args)) as QemuMapEntry[];
  return normaliseMap(
    entries.map((e) => ({
      offset: e.start,
      length: e.length,
      kind: !e.present ? 'unallocated' : e.data ? 'data' : 'zero',
      depth: e.depth,
    })),
    rawDepths,
  );
}

/** One qcow2 layer alone, as QEMU opens it with `backing: null` (a `json:` filename for qemu-img). */
export function layerAlone(image: string): string {
  return `json:${JSON.stringify({ driver: 'qcow2', backing: null, file: { driver: 'file', filename: image } })}`;
}

/** A layer's own map (Disk.layerMap) in the same normal form, as depth 0. */
export function layerMapRanges(extents: readonly { offset: number; length: number; kind: ExtentKind }[]): MapRange[] {
  return normaliseMap(extents.map((e) => ({ offset: e.offset, length: e.length, kind: e.kind, depth: 0 })), new Set());
}

/** The library's chain map in the same normal form. */
export function libraryMap(extents: readonly ChainExtent[], rawDepths: ReadonlySet<number> = new Set()): MapRange[] {
  return normaliseMap(
    extents.map((e) => ({ offset: e.offset, length: e.length, kind: e.kind, depth: e.depth })),
    rawDepths,
  );
}

export function normaliseMap(ranges: readonly MapRange[], rawDepths: ReadonlySet<number>): MapRange[] {
  const out: MapRange[] = [];
  for (const r of ranges) {
    if (r.length === 0) continue;
    const kind: ExtentKind = r.kind !== 'unallocated' && rawDepths.has(r.depth) ? 'data' : r.kind;
    const depth = kind === 'unallocated' ? -1 : r.depth;
    const last = out[out.length - 1];
    if (last && last.kind === kind && last.depth === depth && last.offset + last.length === r.offset) {
      last.length += r.length;
    } else {
      out.push({ offset: r.offset, length: r.length, kind, depth });
    }
  }
  return out;
}

export function describeMap(ranges: readonly MapRange[]): string {
  return ranges.map((r) => `${r.offset}+${r.length} ${r.kind}${r.depth >= 0 ? `@${r.depth}` : ''}`).join(', ');
}

// ---------------------------------------------------------------------------------------------------------------
// Looking inside an image file independently of the library (for corruption fixtures)

export interface RawHeader {
  version: number;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  clusterSize: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  headerLength: number;
}

/** Header field offsets (qcow2.txt). */
export const HEADER_FIELD = {
  magic: 0,
  version: 4,
  backingFileOffset: 8,
  backingFileSize: 16,
  clusterBits: 20,
  size: 24,
  cryptMethod: 32,
  l1Size: 36,
  l1TableOffset: 40,
  refcountTableOffset: 48,
  refcountTableClusters: 56,
  nbSnapshots: 60,
  snapshotsOffset: 64,
  incompatibleFeatures: 72,
  compatibleFeatures: 80,
  autoclearFeatures: 88,
  refcountOrder: 96,
  headerLength: 100,
  compressionType: 104,
} as const;

export function readBytes(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    const n = readSync(fd, buf, 0, length, offset);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

export function writeBytes(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

export function readU64(path: string, offset: number): bigint {
  return readBytes(path, offset, 8).readBigUInt64BE(0);
}

export function writeU32(path: string, offset: number, value: number): void {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  writeBytes(path, offset, b);
}

export function writeU64(path: string, offset: number, value: bigint | number): void {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(value));
  writeBytes(path, offset, b);
}

export function writeU16(path: string, offset: number, value: number): void {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(value);
  writeBytes(path, offset, b);
}

export function readRawHeader(path: string): RawHeader {
  const b = readBytes(path, 0, 112);
  const version = b.readUInt32BE(4);
  const clusterBits = b.readUInt32BE(20);
  return {
    version,
    backingFileOffset: Number(b.readBigUInt64BE(8)),
    backingFileSize: b.readUInt32BE(16),
    clusterBits,
    clusterSize: 2 ** clusterBits,
    size: Number(b.readBigUInt64BE(24)),
    cryptMethod: b.readUInt32BE(32),
    l1Size: b.readUInt32BE(36),
    l1TableOffset: Number(b.readBigUInt64BE(40)),
    refcountTableOffset: Number(b.readBigUInt64BE(48)),
    refcountTableClusters: b.readUInt32BE(56),
    nbSnapshots: b.readUInt32BE(60),
    snapshotsOffset: Number(b.readBigUInt64BE(64)),
    incompatibleFeatures: version === 3 ? b.readBigUInt64BE(72) : 0n,
    headerLength: version === 3 ? b.readUInt32BE(100) : 72,
  };
}

const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;

/** Host offset of the L2 table for L1 index `i` (0 when unallocated). */
export function l2TableOffset(path: string, h: RawHeader, i: number): number {
  return Number(readU64(path, h.l1TableOffset + i * 8) & OFFSET_MASK);
}

/** File offset of the (first word of the) L2 entry for a guest offset; throws when its L2 table is unallocated. */
export function l2EntryLocation(path: string, h: RawHeader, guestOffset: number, extendedL2 = false): number {
  const entrySize = extendedL2 ? 16 : 8;
  const l2Entries = h.clusterSize / entrySize;
  const cluster = Math.floor(guestOffset / h.clusterSize);
  const l2 = l2TableOffset(path, h, Math.floor(cluster / l2Entries));
  if (l2 === 0) throw new Error(`${path}: no L2 table for guest offset ${guestOffset}`);
  return l2 + (cluster % l2Entries) * entrySize;
}

/** Host offset of the data cluster for a guest offset (standard, uncompressed clusters). */
export function dataClusterOffset(path: string, h: RawHeader, guestOffset: number, extendedL2 = false): number {
  return Number(readU64(path, l2EntryLocation(path, h, guestOffset, extendedL2)) & OFFSET_MASK);
}

/** Host offset of the first refcount block. */
export function refcountBlockOffset(path: string, h: RawHeader, index = 0): number {
  return Number(readU64(path, h.refcountTableOffset + index * 8) & ~0x1ffn);
}

export interface HeaderExtensionAt {
  type: number;
  /** File offset of the extension's 8-byte type/length. */
  at: number;
  length: number;
}

/** The header extensions of a v3 image, where they lie in the file. */
export function headerExtensions(path: string): HeaderExtensionAt[] {
  const h = readRawHeader(path);
  const cluster = readBytes(path, 0, h.clusterSize);
  const out: HeaderExtensionAt[] = [];
  let at = h.headerLength;
  while (at + 8 <= cluster.length) {
    const type = cluster.readUInt32BE(at);
    const length = cluster.readUInt32BE(at + 4);
    if (type === 0) break;
    out.push({ type, at, length });
    at += 8 + Math.ceil(length / 8) * 8;
  }
  return out;
}

export const EXT_FEATURE_NAMES = 0x6803f857;

/**
 * Replaces the first entry of the feature-name table with an incompatible feature `bit` called `name`
 * (the table keeps its length, so nothing else in the header moves).
 */
export function nameIncompatibleFeature(path: string, bit: number, name: string): void {
  const table = headerExtensions(path).find((e) => e.type === EXT_FEATURE_NAMES);
  if (!table) throw new Error(`${path} has no feature-name table`);
  const entry = Buffer.alloc(48);
  entry.writeUInt8(0, 0);
  entry.writeUInt8(bit, 1);
  entry.write(name, 2, 46, 'utf8');
  writeBytes(path, table.at + 8, entry);
}

// ---------------------------------------------------------------------------------------------------------------
// Test plumbing

const REPO_ROOT = resolve(__dirname, '..', '..');

/**
 * Runs `body` (TypeScript-free JavaScript; `Qcow2Image` and `openDisk` are in scope, top-level await allowed) in a
 * child process killed after `ms`: a runaway loop in the library then fails one test instead of the whole run.
 */
export function runIsolated(body: string, ms: number): { ok: boolean; timedOut: boolean; output: string } {
  const r = spawnSync(process.execPath, isolatedArgs(body), { cwd: REPO_ROOT, encoding: 'utf8', timeout: ms, killSignal: 'SIGKILL' });
  const timedOut = r.error !== undefined && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT';
  return { ok: r.status === 0, timedOut, output: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

function isolatedArgs(body: string): string[] {
  const code =
    `const { Qcow2Image } = require(${JSON.stringify(resolve(REPO_ROOT, 'src/engine/qcow2/image'))});\n` +
    `const { openDisk } = require(${JSON.stringify(resolve(REPO_ROOT, 'src/engine/qcow2/chain'))});\n` +
    `(async () => {\n${body}\n})().then(() => process.exit(0), (e) => { console.error(e && e.stack || String(e)); process.exit(1); });`;
  return ['-r', 'tsx/cjs', '-e', code];
}

/**
 * Runs `body` like runIsolated and kills it with SIGKILL once it prints `READY` and `killAfterMs` more have
 * passed (a crash in the middle of its work). Resolves with whether it was killed (false: it finished first).
 */
export function killIsolated(body: string, killAfterMs: number, limitMs = 20_000): Promise<{ killed: boolean; output: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, isolatedArgs(body), { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let killed = false;
    const limit = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
      if (output.includes('READY') && !killed) {
        killed = true;
        setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', fail);
    child.on('exit', (_code, signal) => {
      clearTimeout(limit);
      done({ killed: signal === 'SIGKILL', output });
    });
  });
}

/** xorshift32: small, fast and reproducible from its seed. */
export class XorShift {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let x = this.state;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.state = x;
    return x;
  }
  /** An integer in [0, n). */
  below(n: number): number {
    return Math.floor((this.next() / 0x1_0000_0000) * n);
  }
  /** An integer in [lo, hi]. */
  between(lo: number, hi: number): number {
    return lo + this.below(hi - lo + 1);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
}

/** Rejects with a clear message when `p` takes longer than `ms` (a hang is a failure, not a stuck suite). */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms (hang)`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `fn` and returns what it threw, or null; non-ImageErrors are returned too so callers can report them. */
export async function outcome<T>(fn: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await fn() };
  } catch (error) {
    return { ok: false, error };
  }
}

/** A one-line description of a thrown value: the code of an ImageError, or the class and message of anything else. */
export function describeError(e: unknown): string {
  if (isImageError(e)) return `ImageError ${e.code}: ${e.message}`;
  if (e instanceof Error) return `${e.name} (not an ImageError): ${e.message}\n${e.stack ?? ''}`;
  return `non-Error thrown: ${String(e)}`;
}

/** Awaits `fn` and returns the ImageError it must throw with one of `codes`; fails otherwise. */
export async function expectImageError(
  fn: () => Promise<unknown>,
  codes: ImageErrorCode | readonly ImageErrorCode[],
  what: string,
  ms = 10_000,
): Promise<ImageError> {
  const wanted = typeof codes === 'string' ? [codes] : codes;
  const r = await outcome(() => withTimeout(fn(), ms, what));
  if (r.ok) throw new Error(`${what}: expected ImageError ${wanted.join(' or ')}, but it succeeded`);
  if (!isImageError(r.error) || !wanted.includes(r.error.code)) {
    throw new Error(`${what}: expected ImageError ${wanted.join(' or ')}, got ${describeError(r.error)}`);
  }
  return r.error;
}
