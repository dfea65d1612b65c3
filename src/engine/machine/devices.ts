// A machine's removable and network settings: the ISO in its CD-ROM drive and the ports forwarded into it,
// checked and applied to a manifest in one place (create and edit alike); QEMU sees them at the next start.
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { MachineError } from './errors';
import { SSH_GUEST_PORT } from './guest-access';
import type { ForwardRecord, Manifest } from './manifest';

/**
 * The ISO's absolute path once it is known to be a readable file. It is referenced where it is (never copied);
 * QEMU opens it read-only.
 */
export async function checkIso(path: string): Promise<string> {
  const abs = resolve(path);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f]/.test(abs)) throw new MachineError('INVALID_ARGUMENT', `The ISO image path ${JSON.stringify(abs)} contains control characters.`);
  const st = await stat(abs).catch(() => null);
  if (st === null) throw new MachineError('INVALID_ARGUMENT', `The ISO image ${abs} does not exist.`);
  if (!st.isFile()) throw new MachineError('INVALID_ARGUMENT', `The ISO image ${abs} is not a file.`);
  await access(abs, constants.R_OK).catch(() => {
    throw new MachineError('INVALID_ARGUMENT', `The ISO image ${abs} cannot be read (permissions).`);
  });
  return abs;
}

/** Changes to a machine's forwards: guest ports to stop forwarding (or all), then forwards to add or replace. */
export interface ForwardChanges {
  remove?: number[] | 'all';
  add?: ForwardRecord[];
}

function validPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** Refuses ports outside 1..65535 before anything is written. */
export function checkForwardChanges(changes: ForwardChanges): void {
  for (const f of changes.add ?? []) {
    if (!validPort(f.guestPort) || (f.hostPort !== undefined && !validPort(f.hostPort))) {
      throw new MachineError('INVALID_ARGUMENT', `${f.hostPort ?? ''}:${f.guestPort} is not a port forward with ports from 1 to 65535.`);
    }
  }
  if (Array.isArray(changes.remove)) {
    for (const p of changes.remove) if (!validPort(p)) throw new MachineError('INVALID_ARGUMENT', `${p} is not a guest port from 1 to 65535.`);
  }
}

/**
 * The manifest's forwards after the changes: one forward per guest port (a new one for a guest port replaces the
 * old). A forward to guest port 22 sets the SSH forward's host port; removing it returns SSH to a free port.
 */
export function applyForwardChanges(m: Manifest, changes: ForwardChanges): void {
  let list = [...(m.forwards ?? [])];
  const remove = changes.remove;
  if (remove === 'all') list = [];
  else if (remove !== undefined) {
    const unknown = remove.filter((p) => !list.some((f) => f.guestPort === p));
    if (unknown.length > 0) {
      throw new MachineError('INVALID_ARGUMENT', `Machine "${m.name}" forwards no host port to guest port ${unknown.join(', ')}.`);
    }
    list = list.filter((f) => !remove.includes(f.guestPort));
  }
  for (const f of changes.add ?? []) {
    list = list.filter((x) => x.guestPort !== f.guestPort);
    list.push(f.hostPort === undefined ? { guestPort: f.guestPort } : { guestPort: f.guestPort, hostPort: f.hostPort });
  }
  if (list.length > 0) m.forwards = list;
  else delete m.forwards;
}

/** What QEMU forwards: SSH first (from a free port unless the user chose one), then the user's own forwards. */
export function forwardsOf(m: Manifest): ForwardRecord[] {
  const own = m.forwards ?? [];
  const ssh = own.find((f) => f.guestPort === SSH_GUEST_PORT) ?? { guestPort: SSH_GUEST_PORT };
  return [ssh, ...own.filter((f) => f.guestPort !== SSH_GUEST_PORT)];
}
