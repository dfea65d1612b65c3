// Sizes, offsets and byte patterns as people type them, and sizes as people read them.
import { UsageError } from './args';

const SHIFTS: Record<string, number> = { '': 0, b: 0, k: 10, m: 20, g: 30, t: 40 };

/**
 * A byte count: plain bytes ("4096", "0x1000") or a number with a binary suffix K, M, G, T in either case,
 * optionally followed by "iB" or "B" ("10G", "1.5GiB", "512kb"). `what` names the argument in the error.
 */
export function parseSize(text: string, what: string): number {
  const bad = (why: string): UsageError =>
    new UsageError(`${what} "${text}" ${why}: use bytes or a number with K, M, G or T (e.g. 4096, 64K, 10G).`);
  const s = text.trim();
  if (/^0x[0-9a-f]+$/i.test(s)) return checked(Number.parseInt(s.slice(2), 16), bad);
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(s);
  if (!m) return fail(bad('is not a size'));
  const [, digits, unit = '', suffix] = m;
  // "5iB" and "5ib" are not sizes; "5B" is.
  if (unit === '' && suffix !== undefined && suffix.toLowerCase() !== 'b') return fail(bad('is not a size'));
  const shift = SHIFTS[unit.toLowerCase()]!;
  const value = Number(digits) * 2 ** shift;
  if (!Number.isInteger(value)) return fail(bad('is not a whole number of bytes'));
  return checked(value, bad);
}

function checked(value: number, bad: (why: string) => UsageError): number {
  if (!Number.isSafeInteger(value)) throw bad('is too large');
  return value;
}

function fail(e: UsageError): never {
  throw e;
}

/** A byte value for a pattern: decimal 0..255 or hex 0x00..0xff. */
export function parseBytePattern(text: string, what = 'Pattern'): number {
  const s = text.trim();
  let value = Number.NaN;
  if (/^0x[0-9a-f]{1,2}$/i.test(s)) value = Number.parseInt(s.slice(2), 16);
  else if (/^\d{1,3}$/.test(s)) value = Number(s);
  if (!(value >= 0 && value <= 255)) {
    throw new UsageError(`${what} "${text}" is not a byte: use 0 to 255 or 0x00 to 0xff.`);
  }
  return value;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** "0 B", "512 B", "64 KiB", "1.5 GiB", "1.37 GiB": three significant digits at most, as qemu-img prints. */
export function formatSize(bytes: number): string {
  let unit = 0;
  let value = bytes;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${bytes} B`;
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${Number(value.toFixed(digits))} ${UNITS[unit]}`;
}

/** "1 GiB (1073741824 bytes)". */
export function formatSizeExact(bytes: number): string {
  return bytes < 1024 ? `${bytes} bytes` : `${formatSize(bytes)} (${bytes} bytes)`;
}

export function hexByte(value: number): string {
  return `0x${value.toString(16).padStart(2, '0')}`;
}
