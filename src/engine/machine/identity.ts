import { randomBytes, randomUUID } from 'node:crypto';

export function newId(): string {
  return randomUUID();
}

/** The first 8 hex digits of an id: enough to tell machines apart in folder names and listings. */
export function shortId(id: string): string {
  return id.replace(/-/g, '').slice(0, 8);
}

/** QEMU's locally administered prefix 52:54:00 plus 24 random bits, not in `taken` (compared case-insensitively). */
export function newMacAddress(taken: ReadonlySet<string>): string {
  for (;;) {
    const b = randomBytes(3);
    const mac = `52:54:00:${[...b].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
    if (!taken.has(mac)) return mac;
  }
}

export const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
