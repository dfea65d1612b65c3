/**
 * A minimal ISO 9660 image writer for cloud-init seeds: one root directory of small files, with Rock Ridge
 * (RRIP 1.10, what Linux's isofs shows) and Joliet (UCS-2 names, what Windows and macOS show) so names such as
 * `meta-data` survive; the plain ISO 9660 tree carries level-1 (8.3) names underneath as the standard requires.
 * The layout follows what `genisoimage -joliet -rock` writes, so the same readers accept it.
 *
 * Sector map (2048-byte sectors):
 *   0-15 system area (zero) · 16 primary volume descriptor · 17 Joliet supplementary descriptor · 18 terminator
 *   19/20 primary path tables (L/M) · 21/22 Joliet path tables (L/M) · primary root directory · Joliet root
 *   directory · Rock Ridge continuation area (the ER entry, too long for the root's "." record) · file data.
 */
import { SeedError } from './errors';

export const SECTOR = 2048;

export interface IsoFile {
  /** Name as the guest sees it (Rock Ridge / Joliet). */
  name: string;
  data: Buffer;
}

export interface IsoOptions {
  /** Volume identifier, the label `blkid` reports. */
  label: string;
  /** Recorded as every file's and the volume's modification time (UTC). */
  modified: Date;
}

/** Seed file names: portable on every reader (Joliet forbids `*` `/` `:` `;` `?` `\`), one directory, no dot names. */
export const ISO_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;
/** Joliet's volume identifier holds 16 UCS-2 characters; d-characters plus `-` and lower case, as genisoimage allows. */
export const ISO_LABEL_PATTERN = /^[A-Za-z0-9_-]{1,16}$/;

const FIRST_PATH_TABLE = 19;
const PRIMARY_ROOT = 23;
// ISO 9660 stores sizes in 32 bits; seeds are kilobytes, so a far smaller cap keeps the in-memory image sane.
const MAX_IMAGE_BYTES = 64 * 1024 * 1024;

const RRIP_ID = 'RRIP_1991A';
const RRIP_DESCRIPTOR = 'THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS';
const RRIP_SOURCE =
  'PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.';

const FILE_MODE = 0o100444; // regular, r--r--r--: the medium is read-only
const DIR_MODE = 0o040555; // directory, r-xr-xr-x

/** Builds the whole image in memory (a seed is a few kilobytes). */
export function buildIso9660(files: readonly IsoFile[], options: IsoOptions): Buffer {
  checkInput(files, options);
  const stamp = dirDate(options.modified);
  const entries = assignPrimaryNames(files);

  // Record sizes do not depend on extents, so the directories are packed once with placeholder extents to learn
  // how many sectors they take, then built for real.
  const layout = (extents: Map<IsoFile, number>, rootJ: number, cont: number, sizes: { primary: number; joliet: number }) => ({
    primary: packRecords(primaryRecords(entries, extents, PRIMARY_ROOT, sizes.primary, cont, stamp)),
    joliet: packRecords(jolietRecords(entries, extents, rootJ, sizes.joliet, stamp)),
  });
  const dry = layout(new Map(), 0, 0, { primary: 0, joliet: 0 });
  const primarySectors = dry.primary.length / SECTOR;
  const jolietSectors = dry.joliet.length / SECTOR;
  const jolietRoot = PRIMARY_ROOT + primarySectors;
  const continuation = jolietRoot + jolietSectors;

  const extents = new Map<IsoFile, number>();
  let next = continuation + 1;
  for (const { file } of entries) {
    // An empty file takes no sector; it points at the next free one, as genisoimage does.
    extents.set(file, next);
    next += Math.ceil(file.data.length / SECTOR);
  }
  // One spare zero sector at the end: an empty file's extent (the next free sector) then lies inside the volume.
  const totalSectors = next + 1;
  if (totalSectors * SECTOR > MAX_IMAGE_BYTES) {
    throw new SeedError('INVALID_FILE', `The seed files are too large for a seed image (over ${MAX_IMAGE_BYTES >> 20} MiB).`);
  }
  // Rebuilt with real extents: the "." and ".." records of each tree also carry the directory's own size.
  const dirs = layout(extents, jolietRoot, continuation, { primary: dry.primary.length, joliet: dry.joliet.length });
  if (dirs.primary.length !== dry.primary.length || dirs.joliet.length !== dry.joliet.length) {
    throw new Error('ISO 9660 layout changed between passes'); // a bug here, never bad input
  }

  const image = Buffer.alloc(totalSectors * SECTOR);
  const at = (sector: number) => sector * SECTOR;
  const volumeDate = volumeDateField(options.modified);
  const common = { totalSectors, volumeDate, rootDate: stamp, label: options.label };
  volumeDescriptor({ ...common, type: 1, root: PRIMARY_ROOT, rootSize: dirs.primary.length, pathTable: FIRST_PATH_TABLE }).copy(image, at(16));
  volumeDescriptor({ ...common, type: 2, root: jolietRoot, rootSize: dirs.joliet.length, pathTable: FIRST_PATH_TABLE + 2 }).copy(image, at(17));
  terminator().copy(image, at(18));
  pathTable(PRIMARY_ROOT, 'L').copy(image, at(FIRST_PATH_TABLE));
  pathTable(PRIMARY_ROOT, 'M').copy(image, at(FIRST_PATH_TABLE + 1));
  pathTable(jolietRoot, 'L').copy(image, at(FIRST_PATH_TABLE + 2));
  pathTable(jolietRoot, 'M').copy(image, at(FIRST_PATH_TABLE + 3));
  dirs.primary.copy(image, at(PRIMARY_ROOT));
  dirs.joliet.copy(image, at(jolietRoot));
  extensionReference().copy(image, at(continuation));
  for (const { file } of entries) file.data.copy(image, at(extents.get(file) ?? 0));
  return image;
}

function checkInput(files: readonly IsoFile[], options: IsoOptions): void {
  if (!ISO_LABEL_PATTERN.test(options.label)) {
    throw new SeedError('INVALID_FILE', `The volume label "${printable(options.label)}" is not allowed: use 1 to 16 letters, digits, "_" or "-".`);
  }
  if (files.length === 0) throw new SeedError('INVALID_FILE', 'A seed image needs at least one file.');
  const seen = new Set<string>();
  for (const f of files) {
    if (!ISO_NAME_PATTERN.test(f.name) || f.name === '.' || f.name === '..') {
      throw new SeedError(
        'INVALID_FILE',
        `The seed file name "${printable(f.name)}" is not allowed: use up to 64 letters, digits, ".", "_" or "-", not starting with "." or "-".`,
      );
    }
    // Joliet readers (Windows, macOS) compare names without case.
    const key = f.name.toLowerCase();
    if (seen.has(key)) throw new SeedError('INVALID_FILE', `The seed file name "${f.name}" appears twice.`);
    seen.add(key);
  }
}

function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 80);
}

// ---------------------------------------------------------------------------------------------------------------
// Names

interface Entry {
  file: IsoFile;
  /** Level-1 identifier in the primary tree, e.g. `META_DAT.;1`. */
  primaryName: string;
}

/** 8.3 upper-case d-character names, made unique with a numeric tail; sorted as ECMA-119 9.3 orders them. */
function assignPrimaryNames(files: readonly IsoFile[]): Entry[] {
  const taken = new Set<string>();
  const entries: Entry[] = [];
  for (const file of files) {
    const upper = file.name.toUpperCase();
    const dot = upper.lastIndexOf('.');
    const dChars = (s: string) => s.replace(/[^A-Z0-9_]/g, '_');
    const stem = dChars(dot > 0 ? upper.slice(0, dot) : upper).slice(0, 8) || '_';
    const ext = dot > 0 ? dChars(upper.slice(dot + 1)).slice(0, 3) : '';
    let base = stem;
    for (let n = 1; taken.has(`${base}.${ext}`); n++) base = stem.slice(0, 8 - String(n).length) + String(n);
    taken.add(`${base}.${ext}`);
    entries.push({ file, primaryName: `${base}.${ext};1` });
  }
  const sortKey = (e: Entry) => {
    const [name = '', rest = ''] = e.primaryName.split('.');
    return name.padEnd(8, ' ') + rest.split(';')[0]!.padEnd(3, ' ');
  };
  return entries.sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));
}

function ucs2(s: string): Buffer {
  const b = Buffer.alloc(s.length * 2);
  for (let i = 0; i < s.length; i++) b.writeUInt16BE(s.charCodeAt(i), i * 2);
  return b;
}

// ---------------------------------------------------------------------------------------------------------------
// Directory records (ECMA-119 9.1)

interface RecordSpec {
  extent: number;
  size: number;
  directory: boolean;
  id: Buffer;
  systemUse?: Buffer;
  date: Buffer;
}

function directoryRecord(r: RecordSpec): Buffer {
  const idPad = r.id.length % 2 === 0 ? 1 : 0; // the identifier is padded so system use starts on an even offset
  const su = r.systemUse ?? Buffer.alloc(0);
  let length = 33 + r.id.length + idPad + su.length;
  if (length % 2 === 1) length++;
  if (length > 255) throw new Error(`ISO 9660 directory record too long (${length})`); // names are capped: a bug
  const b = Buffer.alloc(length);
  b[0] = length;
  both32(b, 2, r.extent);
  both32(b, 10, r.size);
  r.date.copy(b, 18);
  b[25] = r.directory ? 0x02 : 0x00;
  both16(b, 28, 1); // volume sequence number
  b[32] = r.id.length;
  r.id.copy(b, 33);
  su.copy(b, 33 + r.id.length + idPad);
  return b;
}

const DOT = Buffer.from([0]);
const DOTDOT = Buffer.from([1]);

function primaryRecords(
  entries: readonly Entry[],
  extents: ReadonlyMap<IsoFile, number>,
  root: number,
  rootSize: number,
  continuation: number,
  date: Buffer,
): Buffer[] {
  const erLength = extensionReference().readUInt8(2);
  const dirSu = (first: boolean) =>
    Buffer.concat([
      ...(first ? [susp('SP', Buffer.from([0xbe, 0xef, 0]))] : []),
      susp('RR', Buffer.from([0x81])), // PX + TF follow
      posixAttributes(DIR_MODE, 2),
      timestamps(date),
      ...(first ? [continuationEntry(continuation, erLength)] : []),
    ]);
  return [
    directoryRecord({ extent: root, size: rootSize, directory: true, id: DOT, systemUse: dirSu(true), date }),
    directoryRecord({ extent: root, size: rootSize, directory: true, id: DOTDOT, systemUse: dirSu(false), date }),
    ...entries.map(({ file, primaryName }) =>
      directoryRecord({
        extent: extents.get(file) ?? 0,
        size: file.data.length,
        directory: false,
        id: Buffer.from(primaryName, 'ascii'),
        systemUse: Buffer.concat([
          susp('RR', Buffer.from([0x89])), // PX + NM + TF follow
          susp('NM', Buffer.concat([Buffer.from([0]), Buffer.from(file.name, 'utf8')])),
          posixAttributes(FILE_MODE, 1),
          timestamps(date),
        ]),
        date,
      }),
    ),
  ];
}

function jolietRecords(
  entries: readonly Entry[],
  extents: ReadonlyMap<IsoFile, number>,
  root: number,
  rootSize: number,
  date: Buffer,
): Buffer[] {
  const sorted = [...entries].sort((a, b) => Buffer.compare(ucs2(a.file.name), ucs2(b.file.name)));
  return [
    directoryRecord({ extent: root, size: rootSize, directory: true, id: DOT, date }),
    directoryRecord({ extent: root, size: rootSize, directory: true, id: DOTDOT, date }),
    // Without the ";1" version suffix, as genisoimage writes Joliet names (readers strip it anyway).
    ...sorted.map(({ file }) =>
      directoryRecord({ extent: extents.get(file) ?? 0, size: file.data.length, directory: false, id: ucs2(file.name), date }),
    ),
  ];
}

/** Records laid into whole sectors; a record never crosses a sector boundary (ECMA-119 6.8.1.1). */
function packRecords(records: readonly Buffer[]): Buffer {
  const sectors: Buffer[] = [];
  let current = Buffer.alloc(SECTOR);
  let used = 0;
  for (const r of records) {
    if (used + r.length > SECTOR) {
      sectors.push(current);
      current = Buffer.alloc(SECTOR);
      used = 0;
    }
    r.copy(current, used);
    used += r.length;
  }
  sectors.push(current);
  return Buffer.concat(sectors);
}

// ---------------------------------------------------------------------------------------------------------------
// System Use Sharing Protocol / Rock Ridge entries

function susp(signature: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(signature, 'ascii'), Buffer.from([4 + body.length, 1]), body]);
}

/** PX in its RRIP 1.10 form (36 bytes, no inode number), as RRIP_1991A announces. */
function posixAttributes(mode: number, links: number): Buffer {
  const b = Buffer.alloc(32);
  both32(b, 0, mode);
  both32(b, 8, links);
  both32(b, 16, 0); // uid root
  both32(b, 24, 0); // gid root
  return susp('PX', b);
}

/** TF with modification, access and attribute-change times. */
function timestamps(date: Buffer): Buffer {
  return susp('TF', Buffer.concat([Buffer.from([0x0e]), date, date, date]));
}

function continuationEntry(sector: number, length: number): Buffer {
  const b = Buffer.alloc(24);
  both32(b, 0, sector);
  both32(b, 8, 0);
  both32(b, 16, length);
  return susp('CE', b);
}

/**
 * The ER entry naming RRIP_1991A. Linux prefers Rock Ridge over Joliet only when it finds this entry, so it must be
 * there; at 237 bytes it cannot fit in the root's "." record and lives in the continuation sector.
 */
function extensionReference(): Buffer {
  const body = Buffer.concat([
    Buffer.from([RRIP_ID.length, RRIP_DESCRIPTOR.length, RRIP_SOURCE.length, 1]),
    Buffer.from(RRIP_ID + RRIP_DESCRIPTOR + RRIP_SOURCE, 'ascii'),
  ]);
  return susp('ER', body);
}

// ---------------------------------------------------------------------------------------------------------------
// Volume descriptors and path tables (ECMA-119 8.4, 8.5, 9.4)

interface DescriptorSpec {
  type: 1 | 2;
  totalSectors: number;
  root: number;
  rootSize: number;
  pathTable: number;
  label: string;
  volumeDate: Buffer;
  rootDate: Buffer;
}

function volumeDescriptor(d: DescriptorSpec): Buffer {
  const b = Buffer.alloc(SECTOR);
  const joliet = d.type === 2;
  // Joliet text fields are UCS-2 big-endian, padded with UCS-2 spaces.
  const text = (offset: number, length: number, value: string) => {
    if (joliet) {
      for (let i = 0; i < length; i += 2) b.writeUInt16BE(0x20, offset + i);
      ucs2(value.slice(0, length / 2)).copy(b, offset);
    } else {
      b.fill(0x20, offset, offset + length);
      b.write(value.slice(0, length), offset, 'ascii');
    }
  };
  b[0] = d.type;
  b.write('CD001', 1, 'ascii');
  b[6] = 1;
  text(8, 32, ''); // system identifier
  text(40, 32, d.label);
  both32(b, 80, d.totalSectors);
  if (joliet) b.write('%/E', 88, 'ascii'); // UCS-2 level 3
  both16(b, 120, 1); // volume set size
  both16(b, 124, 1); // volume sequence number
  both16(b, 128, SECTOR);
  both32(b, 132, 10); // path table size: the root's entry only
  b.writeUInt32LE(d.pathTable, 140);
  b.writeUInt32BE(d.pathTable + 1, 148);
  directoryRecord({ extent: d.root, size: d.rootSize, directory: true, id: DOT, date: d.rootDate }).copy(b, 156);
  text(190, 128, ''); // volume set
  text(318, 128, ''); // publisher
  text(446, 128, 'VMSNAP'); // data preparer
  text(574, 128, 'VMSNAP CLOUD-INIT SEED'); // application
  text(702, 37, '');
  text(739, 37, '');
  text(776, 37, '');
  d.volumeDate.copy(b, 813); // creation
  d.volumeDate.copy(b, 830); // modification
  unsetDateField().copy(b, 847); // expiration
  unsetDateField().copy(b, 864); // effective
  b[881] = 1; // file structure version
  return b;
}

function terminator(): Buffer {
  const b = Buffer.alloc(SECTOR);
  b[0] = 255;
  b.write('CD001', 1, 'ascii');
  b[6] = 1;
  return b;
}

function pathTable(root: number, order: 'L' | 'M'): Buffer {
  const b = Buffer.alloc(SECTOR);
  b[0] = 1; // identifier length
  if (order === 'L') {
    b.writeUInt32LE(root, 2);
    b.writeUInt16LE(1, 6);
  } else {
    b.writeUInt32BE(root, 2);
    b.writeUInt16BE(1, 6);
  }
  return b; // identifier byte 0 (root) and its pad byte are already zero
}

// ---------------------------------------------------------------------------------------------------------------
// Numbers and dates

function both16(b: Buffer, offset: number, v: number): void {
  b.writeUInt16LE(v, offset);
  b.writeUInt16BE(v, offset + 2);
}

function both32(b: Buffer, offset: number, v: number): void {
  b.writeUInt32LE(v, offset);
  b.writeUInt32BE(v, offset + 4);
}

/** Seven-byte date of directory records, in UTC (offset 0). */
function dirDate(d: Date): Buffer {
  const year = Math.min(Math.max(d.getUTCFullYear(), 1900), 2155);
  return Buffer.from([year - 1900, d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), 0]);
}

/** Seventeen-byte date of volume descriptors: "YYYYMMDDHHMMSScc" and a zero UTC offset. */
function volumeDateField(d: Date): Buffer {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const year = Math.min(Math.max(d.getUTCFullYear(), 1), 9999);
  const digits =
    p(year, 4) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) + p(d.getUTCHours()) + p(d.getUTCMinutes()) + p(d.getUTCSeconds()) +
    p(Math.floor(d.getUTCMilliseconds() / 10));
  return Buffer.concat([Buffer.from(digits, 'ascii'), Buffer.from([0])]);
}

function unsetDateField(): Buffer {
  return Buffer.concat([Buffer.from('0'.repeat(16), 'ascii'), Buffer.from([0])]);
}
