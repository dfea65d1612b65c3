import { MachineError } from './errors';

export const MAX_NAME_LENGTH = 128;
export const MAX_DESCRIPTION_LENGTH = 16 * 1024;

// C0, DEL, C1, and the line/paragraph separators: they break listings and terminals.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/u;
// Bidirectional overrides and isolates (text shown in another order than it is stored) and invisible characters
// (zero-width space/joiners, word joiner, BOM): two names that look alike must not be different names.
const DECEPTIVE = /[\u202a-\u202e\u2066-\u2069\u200b-\u200d\u2060\ufeff]/u;

/**
 * Any Unicode text a user types is a valid display name: trimmed, 1..128 characters (code points), no control
 * characters. Slashes, dots and reserved device names are fine here: folder names are derived separately.
 */
export function validateName(raw: string, what = 'name'): string {
  const name = raw.normalize('NFC').trim();
  if (name.length === 0) throw new MachineError('INVALID_NAME', `The ${what} is empty: give it a name.`);
  if ([...name].length > MAX_NAME_LENGTH) {
    throw new MachineError('INVALID_NAME', `The ${what} is longer than ${MAX_NAME_LENGTH} characters: shorten it.`);
  }
  if (CONTROL.test(name)) {
    throw new MachineError('INVALID_NAME', `The ${what} contains a control character (such as a newline or tab): remove it.`);
  }
  if (DECEPTIVE.test(raw)) {
    throw new MachineError('INVALID_NAME', `The ${what} contains an invisible or text-direction character (such as a zero-width space or a right-to-left override): remove it.`);
  }
  return name;
}

/** Descriptions may span lines (newline and tab allowed), other control characters not. */
export function validateDescription(raw: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000b-\u001f\u007f]/u.test(raw)) {
    throw new MachineError('INVALID_NAME', 'The description contains a control character: remove it.');
  }
  if (raw.length > MAX_DESCRIPTION_LENGTH) {
    throw new MachineError('INVALID_NAME', `The description is longer than ${MAX_DESCRIPTION_LENGTH} characters: shorten it.`);
  }
  return raw;
}

const WINDOWS_RESERVED = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])$/i;

/**
 * A folder-name part derived from a display name: ASCII letters, digits, '-' and '_' only, at most 40 characters,
 * never empty, never a reserved device name. The caller appends a short id, so collisions do not matter and
 * `../x`, `a/b`, `CON` or '' can never escape or break the library.
 */
export function folderSlug(name: string): string {
  const ascii = name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '') // accents off: "Café" -> "Cafe"
    .replace(/[^A-Za-z0-9_-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^[-_]+|[-_]+$/g, '')
    .slice(0, 40)
    .replace(/[-_]+$/g, '')
    .toLowerCase();
  if (ascii.length === 0) return 'machine';
  return WINDOWS_RESERVED.test(ascii) ? `${ascii}-vm` : ascii;
}
