// Recognising what a fetched file is: a qcow2 or raw disk image we take as a machine's base layer, or something
// we refuse with a sentence that says what it is and what to do instead (decompress it, convert it, --iso…).
// The verdict comes from magic numbers only, so it is cheap and also works on the first bytes of a download.
import { open, stat } from 'node:fs/promises';
import { check, isImageError, Qcow2Image, type ImageError } from '../qcow2';
import { ImageFetchError } from './errors';

/** Enough of the start of a file for every signature below (ISO 9660's is at 32769). */
export const HEAD_BYTES = 64 * 1024;
const SECTOR = 512;

export type ImageFormat = 'qcow2' | 'raw';

/** What the bytes say: a format we take, a refusal, or (from a head alone) nothing certain yet. */
export type Verdict =
  | { kind: 'image'; format: ImageFormat }
  | { kind: 'refused'; code: 'NOT_AN_IMAGE' | 'UNSUPPORTED_FORMAT'; reason: string };

export interface SniffInput {
  /** The file's first bytes (HEAD_BYTES, or all of it when shorter). */
  head: Buffer;
  /** The last 512 bytes (a VHD's footer), or null when not known yet. */
  tail: Buffer | null;
  /** The whole size, or null when not known yet (the head of a download). */
  size: number | null;
  /** The file came from a URL: a text answer is then a web page the server returned. */
  fromUrl: boolean;
}

const CONVERT = 'convert it with "qemu-img convert -O qcow2 FILE image.qcow2" and use the result';

function at(buf: Buffer | null, offset: number, magic: string | number[]): boolean {
  if (buf === null) return false;
  const bytes = typeof magic === 'string' ? Buffer.from(magic, 'latin1') : Buffer.from(magic);
  return buf.length >= offset + bytes.length && buf.subarray(offset, offset + bytes.length).equals(bytes);
}

/** Archives and compressed files: the image is inside. */
const PACKED: { magic: number[]; what: string; wayOut: string }[] = [
  { magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], what: 'xz-compressed', wayOut: 'decompress it first ("xz -dk FILE")' },
  { magic: [0x1f, 0x8b], what: 'gzip-compressed', wayOut: 'decompress it first ("gzip -dk FILE"; a .tar.gz also needs "tar -xf")' },
  { magic: [0x28, 0xb5, 0x2f, 0xfd], what: 'zstd-compressed', wayOut: 'decompress it first ("zstd -d FILE")' },
  { magic: [0x50, 0x4b, 0x03, 0x04], what: 'a zip archive', wayOut: 'extract the disk image from it first ("unzip FILE")' },
  { magic: [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c], what: 'a 7-Zip archive', wayOut: 'extract the disk image from it first ("7z x FILE")' },
];

function refuse(code: 'NOT_AN_IMAGE' | 'UNSUPPORTED_FORMAT', reason: string): Verdict {
  return { kind: 'refused', code, reason };
}

/** Whether the bytes read as text (no NULs, nearly all printable): a web page, an error message, a checksum list. */
function looksLikeText(head: Buffer): boolean {
  const sample = head.subarray(0, 1024);
  if (sample.length === 0 || sample.includes(0)) return false;
  let printable = 0;
  for (const b of sample) if (b >= 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) printable++;
  return printable >= sample.length * 0.95;
}

function looksLikeHtml(head: Buffer): boolean {
  const start = head.subarray(0, 1024).toString('utf8').replace(/^\uFEFF/, '').trimStart().toLowerCase();
  return /^<(!doctype html|html|head|body|meta|script|title|!--|\?xml)/.test(start) || start.includes('<html');
}

/**
 * The verdict on a file from its magic numbers. With only a head (tail and size null) a refusal is final, but an
 * acceptance is not: a VHD's footer and the size's alignment are checked once the whole file is there.
 */
export function sniff({ head, tail, size, fromUrl }: SniffInput): Verdict {
  if (size === 0 || head.length === 0) return refuse('NOT_AN_IMAGE', 'is empty');
  if (at(head, 0, 'QFI\xfb')) return { kind: 'image', format: 'qcow2' };
  for (const p of PACKED) if (at(head, 0, p.magic)) return refuse('UNSUPPORTED_FORMAT', `is ${p.what}: ${p.wayOut} and use the disk image inside`);
  if (at(head, 0, 'BZh') && head.length > 3 && head[3]! >= 0x31 && head[3]! <= 0x39) {
    return refuse('UNSUPPORTED_FORMAT', 'is bzip2-compressed: decompress it first ("bzip2 -dk FILE") and use the disk image inside');
  }
  if (at(head, 0, 'KDMV') || at(head, 0, '# Disk DescriptorFile') || at(head, 0, 'COWD')) {
    return refuse('UNSUPPORTED_FORMAT', `is a VMware disk (VMDK): ${CONVERT}`);
  }
  if (at(head, 64, [0x7f, 0x10, 0xda, 0xbe]) || at(head, 0, '<<< ')) return refuse('UNSUPPORTED_FORMAT', `is a VirtualBox disk (VDI): ${CONVERT}`);
  if (at(head, 0, 'vhdxfile')) return refuse('UNSUPPORTED_FORMAT', `is a Hyper-V disk (VHDX): ${CONVERT}`);
  if (at(head, 0, 'conectix') || at(tail, tail === null ? 0 : tail.length - SECTOR, 'conectix')) {
    return refuse('UNSUPPORTED_FORMAT', `is a Virtual PC / Hyper-V disk (VHD): ${CONVERT}`);
  }
  // Before the MBR check: hybrid installer ISOs carry a boot sector too.
  if (at(head, 32769, 'CD001')) return refuse('UNSUPPORTED_FORMAT', 'is an ISO 9660 CD/DVD image, not a disk image: use --iso to install from it');
  if (looksLikeText(head)) {
    if (fromUrl) return refuse('NOT_AN_IMAGE', `returned ${looksLikeHtml(head) ? 'a web page' : 'text'}, not a disk image: check the URL (it may need a login, or lead to a download page rather than the file)`);
    return refuse('NOT_AN_IMAGE', `is ${looksLikeHtml(head) ? 'a web page (HTML)' : 'a text file'}, not a disk image`);
  }
  if (at(head, 257, 'ustar')) return refuse('UNSUPPORTED_FORMAT', 'is a tar archive: extract the disk image from it first ("tar -xf FILE")');
  const partitioned = at(head, 510, [0x55, 0xaa]) || at(head, SECTOR, 'EFI PART');
  if (!partitioned) {
    return refuse('NOT_AN_IMAGE', 'is not a disk image: it has no qcow2 header and no MBR or GPT partition table (a raw image must start with one)');
  }
  if (size !== null && size % SECTOR !== 0) {
    return refuse('NOT_AN_IMAGE', `is not a whole raw disk image: its size (${size} bytes) is not a multiple of 512 (was it cut short?)`);
  }
  return { kind: 'image', format: 'raw' };
}

export interface ImageFacts {
  format: ImageFormat;
  /** The size of the disk the guest sees, in bytes. */
  virtualSize: number;
}

/**
 * Checks that the file at `path` is a disk image usable as a standalone base layer and says its format and
 * virtual size; otherwise throws an ImageFetchError whose message starts with `label` (the source, not `path`,
 * which may be a temporary name).
 */
export async function inspectImage(path: string, label: string, fromUrl: boolean): Promise<ImageFacts> {
  const { head, tail, size } = await readEnds(path);
  const verdict = sniff({ head, tail, size, fromUrl });
  if (verdict.kind === 'refused') throw new ImageFetchError(verdict.code, `${label} ${withFileName(verdict.reason, label, fromUrl)}.`, { source: label });
  if (verdict.format === 'raw') return { format: 'raw', virtualSize: size };
  return { format: 'qcow2', virtualSize: await inspectQcow2(path, label, fromUrl) };
}

/** Puts the file's name into the commands a refusal suggests (for a URL, the name it is saved under). */
export function withFileName(reason: string, label: string, fromUrl: boolean): string {
  let name = label;
  if (fromUrl) {
    try {
      name = decodeURIComponent(new URL(label).pathname.split('/').pop() ?? '');
    } catch {
      name = '';
    }
  }
  if (name === '') return reason;
  return reason.split('FILE').join(/[\s"'$`\\]/.test(name) ? `'${name.replace(/'/g, `'\\''`)}'` : name);
}

async function readEnds(path: string): Promise<{ head: Buffer; tail: Buffer; size: number }> {
  const size = (await stat(path)).size;
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(Math.min(HEAD_BYTES, size));
    await fh.read(head, 0, head.length, 0);
    const tail = Buffer.alloc(Math.min(SECTOR, size));
    await fh.read(tail, 0, tail.length, size - tail.length);
    return { head, tail, size };
  } finally {
    await fh.close();
  }
}

/** Opens the qcow2 with the engine's reader, refuses an overlay or a damaged image, and returns its virtual size. */
async function inspectQcow2(path: string, label: string, fromUrl: boolean): Promise<number> {
  let virtualSize: number;
  try {
    const image = await Qcow2Image.open(path, { backing: false });
    try {
      if (image.backingFile !== null) {
        throw new ImageFetchError(
          'UNSUPPORTED_FORMAT',
          `${label} is a qcow2 overlay on the backing file "${image.backingFile}", but a cloud image must stand alone: ${withFileName('flatten it with "qemu-img convert -O qcow2 FILE image.qcow2" and use the result', label, fromUrl)}.`,
          { source: label },
        );
      }
      virtualSize = image.size;
    } finally {
      await image.close();
    }
    const result = await check(path);
    if (result.corruptions > 0 || result.markedCorrupt) {
      throw new ImageFetchError('NOT_AN_IMAGE', `${label} is a damaged qcow2 image (${result.corruptions} corruptions, "qemu-img check" lists them): fetch or copy it again.`, { source: label });
    }
  } catch (e) {
    if (!isImageError(e)) throw e;
    throw qcow2Refusal(e, path, label, fromUrl);
  }
  return virtualSize;
}

function qcow2Refusal(e: ImageError, path: string, label: string, fromUrl: boolean): ImageFetchError {
  const detail = e.message.split(path).join(label).replace(/\.$/, '');
  switch (e.code) {
    case 'UNSUPPORTED_VERSION':
    case 'UNSUPPORTED_FEATURE':
    case 'UNSUPPORTED_COMPRESSION':
    case 'ENCRYPTED':
    case 'EXTERNAL_DATA_FILE':
      return new ImageFetchError('UNSUPPORTED_FORMAT', `${label} is a qcow2 image this engine cannot use as a base (${detail}): ${withFileName('convert it with "qemu-img convert -O qcow2 FILE image.qcow2" and use the result', label, fromUrl)}.`, { source: label, cause: e });
    case 'NO_SPACE':
    case 'IO_ERROR':
    case 'NOT_FOUND':
      return new ImageFetchError('IO_ERROR', `${label} could not be read back from the image cache: ${detail}.`, { source: label, cause: e });
    default:
      return new ImageFetchError('NOT_AN_IMAGE', `${label} is a damaged qcow2 image (${detail}): fetch or copy it again.`, { source: label, cause: e });
  }
}
