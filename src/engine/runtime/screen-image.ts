// Screen images in pure Node: reading what QEMU's screendump writes (binary PPM, or PNG), scaling a screen down
// to a thumbnail with a box filter, and writing PNG. No image library: PNG is zlib streams with CRC32 chunks.
import { deflateSync, inflateSync } from 'node:zlib';

/** 8-bit RGB pixels, row by row, 3 bytes each. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** The largest screen read: 8K (7680×4320) fits; a guest asking for a larger mode gets no thumbnail. */
export const MAX_SCREEN_PIXELS = 40 * 1024 * 1024;

/** The largest screendump file read (a PPM of the largest screen, with its header). */
export const MAX_SCREEN_FILE_BYTES = MAX_SCREEN_PIXELS * 3 + 64;

export class ScreenImageError extends Error {
  override name = 'ScreenImageError';
}

function checkSize(width: number, height: number, what: string): void {
  if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || width < 1 || height < 1 || width * height > MAX_SCREEN_PIXELS) {
    throw new ScreenImageError(`${what}: a screen of ${width}×${height} pixels is empty or larger than this reads.`);
  }
}

/** A binary PPM (P6, maxval 255), as QEMU's screendump writes by default. */
export function decodePpm(buf: Uint8Array): RgbImage {
  // Header: P6, width, height, maxval, separated by whitespace (comments allowed), then one whitespace byte.
  let at = 0;
  const token = (): string => {
    for (;;) {
      while (at < buf.length && /\s/.test(String.fromCharCode(buf[at]!))) at++;
      if (buf[at] !== 0x23) break; // '#': a comment to the end of the line
      while (at < buf.length && buf[at] !== 0x0a) at++;
    }
    const start = at;
    while (at < buf.length && at - start < 16 && !/\s/.test(String.fromCharCode(buf[at]!))) at++;
    return Buffer.from(buf.subarray(start, at)).toString('latin1');
  };
  if (token() !== 'P6') throw new ScreenImageError('Not a binary PPM image (P6).');
  const width = Number(token());
  const height = Number(token());
  const maxval = Number(token());
  checkSize(width, height, 'PPM');
  if (maxval !== 255) throw new ScreenImageError(`PPM with maxval ${maxval}: only 8-bit images are read.`);
  at++; // the single whitespace byte before the pixels
  const size = width * height * 3;
  if (buf.length - at < size) throw new ScreenImageError(`PPM cut short: ${buf.length - at} of ${size} pixel bytes.`);
  return { width, height, data: buf.subarray(at, at + size) };
}

/** Scales down to `width` pixels wide (aspect kept) by averaging each output pixel's area; never scales up. */
export function scaleToWidth(img: RgbImage, width: number): RgbImage {
  if (width >= img.width) return img;
  const w = Math.max(1, Math.round(width));
  const h = Math.max(1, Math.round((img.height * w) / img.width));
  const out = new Uint8Array(w * h * 3);
  const xs = Array.from({ length: w + 1 }, (_, i) => Math.floor((i * img.width) / w));
  for (let y = 0; y < h; y++) {
    const y0 = Math.floor((y * img.height) / h);
    const y1 = Math.max(y0 + 1, Math.floor(((y + 1) * img.height) / h));
    for (let x = 0; x < w; x++) {
      const x0 = xs[x]!;
      const x1 = Math.max(x0 + 1, xs[x + 1]!);
      let r = 0;
      let g = 0;
      let b = 0;
      for (let sy = y0; sy < y1; sy++) {
        let p = (sy * img.width + x0) * 3;
        for (let sx = x0; sx < x1; sx++, p += 3) {
          r += img.data[p]!;
          g += img.data[p + 1]!;
          b += img.data[p + 2]!;
        }
      }
      const n = (y1 - y0) * (x1 - x0);
      const o = (y * w + x) * 3;
      out[o] = Math.round(r / n);
      out[o + 1] = Math.round(g / n);
      out[o + 2] = Math.round(b / n);
    }
  }
  return { width: w, height: h, data: out };
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO 3309), as PNG chunks carry it. */
export function crc32(...parts: Uint8Array[]): number {
  let c = 0xffffffff;
  for (const part of parts) for (const byte of part) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, body: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(head.subarray(4), body), 0);
  return Buffer.concat([head, body, crc]);
}

/** A truecolour 8-bit PNG; each row with the Sub filter (screens are flat runs of colour). */
export function encodePng(img: RgbImage): Buffer {
  checkSize(img.width, img.height, 'PNG');
  const stride = img.width * 3;
  const raw = Buffer.alloc((stride + 1) * img.height);
  for (let y = 0; y < img.height; y++) {
    const o = y * (stride + 1);
    raw[o] = 1;
    const row = y * stride;
    for (let i = 0; i < stride; i++) raw[o + 1 + i] = (img.data[row + i]! - (i >= 3 ? img.data[row + i - 3]! : 0)) & 0xff;
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(img.width, 0);
  ihdr.writeUInt32BE(img.height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit, truecolour, deflate, adaptive filters, no interlace
  return Buffer.concat([PNG_SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 6 })), chunk('IEND', new Uint8Array(0))]);
}

/**
 * Reads an 8-bit truecolour PNG (RGB or RGBA, alpha dropped), not interlaced: what QEMU's screendump and
 * encodePng write. Chunk CRCs are checked.
 */
export function decodePng(buf: Uint8Array): RgbImage {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 8 || !b.subarray(0, 8).equals(PNG_SIGNATURE)) throw new ScreenImageError('Not a PNG image.');
  let at = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  let ended = false;
  while (at + 12 <= b.length) {
    const len = b.readUInt32BE(at);
    const type = b.toString('latin1', at + 4, at + 8);
    if (at + 12 + len > b.length) throw new ScreenImageError(`PNG chunk ${type} cut short.`);
    const body = b.subarray(at + 8, at + 8 + len);
    if (crc32(b.subarray(at + 4, at + 8), body) !== b.readUInt32BE(at + 8 + len)) throw new ScreenImageError(`PNG chunk ${type} has a bad CRC.`);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      const [depth, colour, , , interlace] = [body[8], body[9], body[10], body[11], body[12]];
      if (depth !== 8 || (colour !== 2 && colour !== 6) || interlace !== 0) {
        throw new ScreenImageError(`PNG of bit depth ${depth}, colour type ${colour}, interlace ${interlace}: only 8-bit RGB/RGBA, not interlaced, is read.`);
      }
      channels = colour === 2 ? 3 : 4;
    } else if (type === 'IDAT') {
      idat.push(body);
    } else if (type === 'IEND') {
      ended = true;
      break;
    }
    at += 12 + len;
  }
  if (channels === 0 || !ended) throw new ScreenImageError('PNG without a header or an end.');
  checkSize(width, height, 'PNG');
  const stride = width * channels;
  const raw = inflateSync(Buffer.concat(idat), { maxOutputLength: (stride + 1) * height });
  if (raw.length !== (stride + 1) * height) throw new ScreenImageError('PNG pixel data has the wrong length.');
  const out = new Uint8Array(width * height * 3);
  let prev = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const cur = new Uint8Array(stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? cur[i - channels]! : 0;
      const up = prev[i]!;
      const c = i >= channels ? prev[i - channels]! : 0;
      let v: number;
      switch (filter) {
        case 0: v = 0; break;
        case 1: v = a; break;
        case 2: v = up; break;
        case 3: v = (a + up) >> 1; break;
        case 4: {
          const p = a + up - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - up);
          const pc = Math.abs(p - c);
          v = pa <= pb && pa <= pc ? a : pb <= pc ? up : c;
          break;
        }
        default:
          throw new ScreenImageError(`PNG row ${y} has the unknown filter ${filter}.`);
      }
      cur[i] = (line[i]! + v) & 0xff;
    }
    for (let x = 0; x < width; x++) out.set(cur.subarray(x * channels, x * channels + 3), (y * width + x) * 3);
    prev = cur;
  }
  return { width, height, data: out };
}

/** Reads either format QEMU's screendump writes. */
export function decodeScreen(buf: Uint8Array): RgbImage {
  return buf[0] === 0x89 ? decodePng(buf) : decodePpm(buf);
}

/** How many different colours an image has (up to `limit`): 1 is a blank screen. */
export function countColours(img: RgbImage, limit = 1 << 24): number {
  const seen = new Set<number>();
  for (let p = 0; p < img.data.length && seen.size < limit; p += 3) seen.add((img.data[p]! << 16) | (img.data[p + 1]! << 8) | img.data[p + 2]!);
  return seen.size;
}

/** The width thumbnails are scaled to. */
export const THUMBNAIL_WIDTH = 240;

/** A screendump (PPM or PNG bytes) as a thumbnail PNG. */
export function thumbnailPng(screen: Uint8Array, width = THUMBNAIL_WIDTH): Buffer {
  return encodePng(scaleToWidth(decodeScreen(screen), width));
}
