import { ImageError } from './errors';

export const QCOW2_MAGIC = 0x514649fb;
export const MAX_BACKING_NAME = 1023;
/** QEMU's own limits, which also bound the memory a hostile image can make us allocate. */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
export const MAX_REFCOUNT_TABLE_BYTES = 8 * 1024 * 1024;

/** Incompatible feature bits. */
export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
/** The incompatible bits this library implements (data files are recognised only to refuse them by name). */
const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;

/** Header extension types. */
export const EXT_END = 0;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_NAMES = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_ENCRYPTION = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

export interface HeaderExtension {
  type: number;
  data: Buffer;
}

export interface FeatureName {
  type: 'incompatible' | 'compatible' | 'autoclear';
  bit: number;
  name: string;
}

/** The parsed header of a qcow2 image (cluster 0). */
export interface Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  /** Header bytes past the fields above (up to headerLength), kept as they are. */
  extraHeader: Buffer;
  /** Extensions other than backing format and feature names, kept as they are. */
  otherExtensions: HeaderExtension[];
  backingFile: string | null;
  backingFormat: string | null;
  featureNames: FeatureName[];
}

export function clusterSizeOf(h: Header): number {
  return 2 ** h.clusterBits;
}

function u64(buf: Buffer, at: number, what: string, path: string): number {
  const v = buf.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ImageError('INVALID_IMAGE', `${path}: the header's ${what} (${v}) is out of range.`, path);
  }
  return Number(v);
}

function featureLabel(bit: number, names: FeatureName[]): string {
  const named = names.find((f) => f.type === 'incompatible' && f.bit === bit);
  return named ? `"${named.name}" (bit ${bit})` : `bit ${bit}`;
}

/**
 * Parses and validates the header of an image from its first cluster (or its first bytes, if the file is
 * shorter). `fileSize` bounds every offset. Throws an ImageError naming the first problem found. `forCheck`: a
 * snapshot table that runs past the end of the file does not stop the parse: qemu-img check reports the entries
 * it cannot read as corruptions (exit status 2) instead of refusing the image.
 */
export function parseHeader(buf: Buffer, fileSize: number, path: string, forCheck = false): Header {
  const bad = (msg: string): never => {
    throw new ImageError('INVALID_IMAGE', `${path}: ${msg}`, path);
  };
  if (buf.length < 72) {
    if (buf.length >= 4 && buf.readUInt32BE(0) !== QCOW2_MAGIC) {
      throw new ImageError('BAD_MAGIC', `${path} is not a qcow2 image (wrong magic number).`, path);
    }
    bad('the file is too short to hold a qcow2 header.');
  }
  if (buf.readUInt32BE(0) !== QCOW2_MAGIC) {
    throw new ImageError('BAD_MAGIC', `${path} is not a qcow2 image (wrong magic number).`, path);
  }
  const version = buf.readUInt32BE(4);
  if (version !== 2 && version !== 3) {
    throw new ImageError('UNSUPPORTED_VERSION', `${path} is qcow2 version ${version}; only versions 2 and 3 are supported.`, path);
  }
  const clusterBits = buf.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21) bad(`cluster_bits ${clusterBits} is outside 9..21.`);
  const clusterSize = 2 ** clusterBits;

  const h: Header = {
    version,
    backingFileOffset: u64(buf, 8, 'backing_file_offset', path),
    backingFileSize: buf.readUInt32BE(16),
    clusterBits,
    size: u64(buf, 24, 'size', path),
    cryptMethod: buf.readUInt32BE(32),
    l1Size: buf.readUInt32BE(36),
    l1TableOffset: u64(buf, 40, 'l1_table_offset', path),
    refcountTableOffset: u64(buf, 48, 'refcount_table_offset', path),
    refcountTableClusters: buf.readUInt32BE(56),
    nbSnapshots: buf.readUInt32BE(60),
    snapshotsOffset: u64(buf, 64, 'snapshots_offset', path),
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: 4,
    headerLength: 72,
    compressionType: 0,
    extraHeader: Buffer.alloc(0),
    otherExtensions: [],
    backingFile: null,
    backingFormat: null,
    featureNames: [],
  };

  if (version === 3) {
    if (buf.length < 104) bad('the file is too short to hold a version 3 header.');
    h.incompatibleFeatures = buf.readBigUInt64BE(72);
    h.compatibleFeatures = buf.readBigUInt64BE(80);
    h.autoclearFeatures = buf.readBigUInt64BE(88);
    h.refcountOrder = buf.readUInt32BE(96);
    h.headerLength = buf.readUInt32BE(100);
    if (h.headerLength < 104 || h.headerLength % 8 !== 0 || h.headerLength > Math.min(clusterSize, buf.length)) {
      bad(`header_length ${h.headerLength} is invalid.`);
    }
    if (h.headerLength > 104) h.compressionType = buf.readUInt8(104);
    const known = 105;
    h.extraHeader = Buffer.from(buf.subarray(Math.min(known, h.headerLength), h.headerLength));
  }

  // Header extensions: read them before judging feature bits, so unknown bits can be named.
  parseExtensions(buf, h, clusterSize, path);

  if (h.cryptMethod !== 0) {
    throw new ImageError('ENCRYPTED', `${path} is encrypted (${h.cryptMethod === 1 ? 'AES' : 'LUKS'}); encrypted images are not supported.`, path);
  }
  if (h.incompatibleFeatures & INCOMPAT_DATA_FILE) {
    throw new ImageError('EXTERNAL_DATA_FILE', `${path} keeps its data in an external data file, which is not supported.`, path);
  }
  // Autoclear bit 1 (raw external data) means nothing without a data file: QEMU refuses the image.
  if (h.autoclearFeatures & (1n << 1n)) bad('the raw external data bit is set but the image has no external data file.');
  const unknown = h.incompatibleFeatures & ~INCOMPAT_KNOWN;
  if (unknown !== 0n) {
    const bits: string[] = [];
    for (let b = 0; b < 64; b++) if (unknown & (1n << BigInt(b))) bits.push(featureLabel(b, h.featureNames));
    throw new ImageError('UNSUPPORTED_FEATURE', `${path} uses incompatible feature ${bits.join(', ')}, which this version cannot read safely.`, path);
  }
  if (h.incompatibleFeatures & INCOMPAT_CORRUPT) {
    throw new ImageError('MARKED_CORRUPT', `${path} is marked corrupt; it needs a repair before it can be used.`, path, 'marked-corrupt');
  }
  if (h.incompatibleFeatures & INCOMPAT_COMPRESSION) {
    if (h.headerLength <= 104) bad('the compression type bit is set but the header has no compression type field.');
    if (h.compressionType === 1) {
      throw new ImageError('UNSUPPORTED_COMPRESSION', `${path} uses zstd compression, which is not supported; convert it with "qemu-img convert -O qcow2" first.`, path);
    }
    if (h.compressionType !== 0) bad(`unknown compression type ${h.compressionType}.`);
    // As QEMU: zlib is the default, and the bit must not claim otherwise.
    bad('the compression type bit is set for zlib compression.');
  } else if (h.compressionType !== 0) {
    bad('a compression type is set without the compression type feature bit.');
  }
  if (h.refcountOrder > 6) bad(`refcount_order ${h.refcountOrder} is above 6.`);
  if (version === 2 && h.refcountOrder !== 4) bad('version 2 images must use 16-bit refcounts.');

  // Tables must be cluster aligned, inside the file and must not overlap the header cluster.
  const table = (what: string, offset: number, bytes: number): void => {
    if (offset % clusterSize !== 0) bad(`the ${what} at offset ${offset} is not cluster aligned.`);
    if (bytes > 0 && offset < clusterSize) bad(`the ${what} overlaps the header.`);
    if (offset + bytes > fileSize) bad(`the ${what} (offset ${offset}, ${bytes} bytes) lies past the end of the file (${fileSize} bytes).`);
  };
  const l2Entries = clusterSize / (h.incompatibleFeatures & INCOMPAT_EXTL2 ? 16 : 8);
  const neededL1 = Math.ceil(h.size / clusterSize / l2Entries);
  if (h.l1Size < neededL1) bad(`the L1 table has ${h.l1Size} entries but the disk size needs ${neededL1}.`);
  if (h.l1Size > MAX_L1_BYTES / 8) bad(`l1_size ${h.l1Size} is too large.`);
  table('L1 table', h.l1TableOffset, h.l1Size * 8);
  if (h.refcountTableClusters === 0) bad('the refcount table is empty.');
  if (h.refcountTableClusters * clusterSize > MAX_REFCOUNT_TABLE_BYTES) bad(`refcount_table_clusters ${h.refcountTableClusters} is too large.`);
  table('refcount table', h.refcountTableOffset, h.refcountTableClusters * clusterSize);
  if (h.nbSnapshots > 65536) bad(`nb_snapshots ${h.nbSnapshots} is too large.`);
  if (h.nbSnapshots > 0) table('snapshot table', h.snapshotsOffset, forCheck ? Math.min(h.nbSnapshots * 40, Math.max(0, fileSize - h.snapshotsOffset)) : h.nbSnapshots * 40);
  // QEMU checks the alignment even when there are no snapshots.
  if (h.snapshotsOffset % clusterSize !== 0) bad(`the snapshot table at offset ${h.snapshotsOffset} is not cluster aligned.`);

  if (h.backingFileOffset !== 0) {
    if (h.backingFileSize === 0 || h.backingFileSize > MAX_BACKING_NAME) bad(`backing_file_size ${h.backingFileSize} is invalid.`);
    if (h.backingFileOffset + h.backingFileSize > Math.min(clusterSize, buf.length)) bad('the backing file name lies outside the header cluster.');
    h.backingFile = buf.toString('utf8', h.backingFileOffset, h.backingFileOffset + h.backingFileSize);
    if (h.backingFile.includes('\0')) bad('the backing file name contains a NUL byte.');
  }
  return h;
}

function parseExtensions(buf: Buffer, h: Header, clusterSize: number, path: string): void {
  const end = Math.min(clusterSize, buf.length);
  let at = h.headerLength;
  for (let count = 0; ; count++) {
    if (at + 8 > end || count > 1024) {
      throw new ImageError('INVALID_IMAGE', `${path}: the header extensions run past the header cluster.`, path);
    }
    const type = buf.readUInt32BE(at);
    const length = buf.readUInt32BE(at + 4);
    const dataAt = at + 8;
    // The length is checked before the type, as QEMU does, so even an end marker cannot claim too much.
    if (dataAt + length > end) {
      throw new ImageError('INVALID_IMAGE', `${path}: header extension 0x${type.toString(16)} runs past the header cluster.`, path);
    }
    if (type === EXT_END) return;
    const data = Buffer.from(buf.subarray(dataAt, dataAt + length));
    if (type === EXT_BACKING_FORMAT) {
      h.backingFormat = data.toString('utf8');
    } else if (type === EXT_FEATURE_NAMES) {
      for (let i = 0; i + 48 <= length; i += 48) {
        const t = data.readUInt8(i);
        const raw = data.subarray(i + 2, i + 48);
        const nul = raw.indexOf(0);
        h.featureNames.push({
          type: t === 0 ? 'incompatible' : t === 1 ? 'compatible' : 'autoclear',
          bit: data.readUInt8(i + 1),
          name: raw.toString('utf8', 0, nul < 0 ? raw.length : nul),
        });
      }
    } else {
      h.otherExtensions.push({ type, data });
    }
    at = dataAt + Math.ceil(length / 8) * 8;
  }
}

/** The feature-name table QEMU writes, so other tools can name our bits too. */
const FEATURE_NAMES: FeatureName[] = [
  { type: 'incompatible', bit: 0, name: 'dirty bit' },
  { type: 'incompatible', bit: 1, name: 'corrupt bit' },
  { type: 'incompatible', bit: 2, name: 'external data file' },
  { type: 'incompatible', bit: 3, name: 'compression type' },
  { type: 'incompatible', bit: 4, name: 'extended L2 entries' },
  { type: 'compatible', bit: 0, name: 'lazy refcounts' },
  { type: 'autoclear', bit: 0, name: 'bitmaps' },
  { type: 'autoclear', bit: 1, name: 'raw external data' },
];

/**
 * Serialises a header with its extensions into the bytes of cluster 0 (without padding). Throws if it does not
 * fit in one cluster. Sets backingFileOffset/backingFileSize to where the name is placed.
 */
export function serializeHeader(h: Header): Buffer {
  // Small clusters cannot hold the feature-name table; it is optional, so leave it out then (as QEMU does).
  let out = serializeWith(h, true);
  if (out.length > clusterSizeOf(h)) out = serializeWith(h, false);
  if (out.length > clusterSizeOf(h)) {
    throw new ImageError('INVALID_ARGUMENT', `The header${h.backingFile !== null ? ' with its backing file name' : ''} does not fit in one ${clusterSizeOf(h)}-byte cluster; use a shorter backing path or larger clusters.`);
  }
  return out;
}

function serializeWith(h: Header, withFeatureNames: boolean): Buffer {
  const parts: Buffer[] = [];
  const fixedLength = h.version === 3 ? h.headerLength : 72;
  const fixed = Buffer.alloc(fixedLength);
  fixed.writeUInt32BE(QCOW2_MAGIC, 0);
  fixed.writeUInt32BE(h.version, 4);
  fixed.writeUInt32BE(h.clusterBits, 20);
  fixed.writeBigUInt64BE(BigInt(h.size), 24);
  fixed.writeUInt32BE(h.cryptMethod, 32);
  fixed.writeUInt32BE(h.l1Size, 36);
  fixed.writeBigUInt64BE(BigInt(h.l1TableOffset), 40);
  fixed.writeBigUInt64BE(BigInt(h.refcountTableOffset), 48);
  fixed.writeUInt32BE(h.refcountTableClusters, 56);
  fixed.writeUInt32BE(h.nbSnapshots, 60);
  fixed.writeBigUInt64BE(BigInt(h.snapshotsOffset), 64);
  if (h.version === 3) {
    fixed.writeBigUInt64BE(h.incompatibleFeatures, 72);
    fixed.writeBigUInt64BE(h.compatibleFeatures, 80);
    fixed.writeBigUInt64BE(h.autoclearFeatures, 88);
    fixed.writeUInt32BE(h.refcountOrder, 96);
    fixed.writeUInt32BE(h.headerLength, 100);
    if (h.headerLength > 104) {
      fixed.writeUInt8(h.compressionType, 104);
      h.extraHeader.copy(fixed, 105, 0, Math.min(h.extraHeader.length, h.headerLength - 105));
    }
  }
  parts.push(fixed);

  const ext = (type: number, data: Buffer): void => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(type, 0);
    head.writeUInt32BE(data.length, 4);
    parts.push(head, data, Buffer.alloc((8 - (data.length % 8)) % 8));
  };
  if (h.backingFile !== null && h.backingFormat) ext(EXT_BACKING_FORMAT, Buffer.from(h.backingFormat, 'utf8'));
  for (const e of h.otherExtensions) ext(e.type, e.data);
  if (h.version === 3 && withFeatureNames) {
    const names = Buffer.alloc(48 * FEATURE_NAMES.length);
    FEATURE_NAMES.forEach((f, i) => {
      names.writeUInt8(f.type === 'incompatible' ? 0 : f.type === 'compatible' ? 1 : 2, i * 48);
      names.writeUInt8(f.bit, i * 48 + 1);
      names.write(f.name, i * 48 + 2, 46, 'utf8');
    });
    ext(EXT_FEATURE_NAMES, names);
  }
  parts.push(Buffer.alloc(8)); // end of extensions
  const head = Buffer.concat(parts);
  if (h.backingFile !== null) {
    const name = Buffer.from(h.backingFile, 'utf8');
    if (name.length === 0 || name.length > MAX_BACKING_NAME) {
      throw new ImageError('INVALID_ARGUMENT', `The backing file name must be 1 to ${MAX_BACKING_NAME} bytes long.`);
    }
    h.backingFileOffset = head.length;
    h.backingFileSize = name.length;
    head.writeBigUInt64BE(BigInt(h.backingFileOffset), 8);
    head.writeUInt32BE(h.backingFileSize, 16);
    return Buffer.concat([head, name]);
  }
  h.backingFileOffset = 0;
  h.backingFileSize = 0;
  return head;
}
