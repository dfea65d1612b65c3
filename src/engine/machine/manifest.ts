import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { isMachineError, MachineError } from './errors';
import { atomicWriteJson } from '../os';
import { isDisplayDevice, type DisplayDevice } from '../runtime';
import { MAC_PATTERN } from './identity';
import { validateName } from './names';
import { autoPolicyProblem } from './settings';
import type { CloneKind, PowerState } from './types';
import { followTops } from './top-links';
import { libvirtExportRecords, type LibvirtExportRecord } from './libvirt-exports';

export const MANIFEST_FILE = 'machine.json';
export const MANIFEST_FORMAT = 'vmsnap-machine';
export const MANIFEST_VERSION = 1;

export interface DiskRecord {
  virtualSize: number;
  /** File name (in the machine folder) of the current top layer. */
  top: string;
}

export interface SnapshotRecord {
  id: string;
  name: string;
  description: string;
  parentId: string | null;
  createdAt: string;
  takenWhileRunning: boolean;
  /** File names (in the machine folder) of the frozen layers, one per disk. */
  layers: string[];
  /** File name (in the machine folder) of the memory and device state, or null (disk-only / powered off). */
  stateFile: string | null;
  /** The device configuration the state was saved with (a revert loads it with exactly these), or null. */
  vm: SnapshotVmRecord | null;
  /** Taken by the automatic checkpoint schedule (absent: the user's own); pruning deletes only these. */
  auto?: true;
  /** File name (in the machine folder) of a small PNG of the screen at the snapshot; absent: none. */
  thumbnail?: string;
  /**
   * A snapshot of a running machine's disks taken with the guest's file systems frozen by its agent (consistent
   * like a clean shutdown). Absent: not quiesced, or taken before snapshots recorded it.
   */
  quiesced?: boolean;
}

/** A machine's automatic checkpoint policy (see auto-policy.ts for what each number keeps). */
export interface AutoCheckpointRecord {
  everySeconds: number;
  keep: number;
  daily: number;
  weekly: number;
}

export interface SnapshotVmRecord {
  cpus: number;
  memoryMiB: number;
  macAddress: string;
  /** Resolved QEMU machine type, e.g. pc-q35-7.2. */
  machineType: string;
  accel: 'kvm' | 'tcg';
  qemuVersion: string;
  /** The ISO that was in the CD-ROM drive (absolute path): the state loads only with it. Absent: no CD drive. */
  cdrom?: string;
  /** The display device the state was saved with; absent: saved before machines had displays, so none. */
  display?: DisplayDevice;
  /** The machine had the guest agent's virtio-serial channel: the state loads only with it. Absent: saved before machines had it. */
  guestAgent?: boolean;
}

export interface ClonedFromRecord {
  machineId: string;
  snapshotId: string | null;
  kind: CloneKind;
  /**
   * Linked clones: per disk, the source layer this machine's lowest layers are backed by, as a path relative to
   * this machine's folder (exactly what the qcow2 files store). Null for full clones and after promotion.
   */
  baseLayers: string[] | null;
}

/** A machine launched from a cloud image: who the guest lets in, and the host key it was given (cloud-init). */
export interface GuestRecord {
  /** The guest user cloud-init creates, with passwordless sudo. */
  user: string;
  /** authorized_keys lines given to that user. */
  authorizedKeys: string[];
  /** The private key `vm ssh` uses (absolute path: the user's own key or the library's). */
  identityFile: string;
  /** The guest's SSH host key (public line), generated here and handed to cloud-init: known before first contact. */
  hostKey: string;
  /** The user's own user-data, kept in the machine folder (a clone's seed is written from it too), or null. */
  userDataFile: string | null;
}

/** The cloud image a machine's lowest layers are backed by: a read-only file in the library's image cache. */
export interface BaseImageRecord {
  sha256: string;
  format: 'qcow2' | 'raw';
  /** The image as seen from the machine folder (what the qcow2 layers store), e.g. ../.images/<sha256>.qcow2. */
  layer: string;
  /** Where it came from (a URL or a path), for people. */
  source: string;
}

export interface ForwardRecord {
  guestPort: number;
  /** The host port wanted (a free one is chosen when it is taken); absent: any free port. */
  hostPort?: number;
}

/** machine.json, version 1. `revision` grows by one with every write, so the journal can tell if a write happened. */
export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: typeof MANIFEST_VERSION;
  revision: number;
  id: string;
  name: string;
  macAddress: string;
  cpus: number;
  memoryMiB: number;
  powerState: PowerState;
  createdAt: string;
  note: string;
  disks: DiskRecord[];
  snapshots: SnapshotRecord[];
  current: string | null;
  clonedFrom: ClonedFromRecord | null;
  /** Absent in machines not launched from a cloud image (and in manifests written before these existed). */
  guest?: GuestRecord;
  baseImage?: BaseImageRecord;
  /** Ports forwarded into the guest besides SSH (which every machine gets); one per guest port. */
  forwards?: ForwardRecord[];
  /** The ISO in the CD-ROM drive (absolute path, never copied or written), e.g. an installer; absent: none. */
  cdrom?: string;
  /** When KVM could not run this guest under the auto accelerator (ISO 8601): it starts with TCG since. */
  kvmFailedAt?: string;
  /** Automatic checkpoints; absent: off (the default). */
  autoCheckpoints?: AutoCheckpointRecord;
  /** The display device at the next start (std, virtio or none); absent: std. */
  display?: DisplayDevice;
  /** libvirt domains `vm export` defined from this machine, one per connection; absent: none recorded. */
  libvirtExports?: LibvirtExportRecord[];
}

export class Checker {
  constructor(private readonly file: string) {}

  fail(field: string, problem: string): never {
    throw new MachineError(
      'INVALID_MANIFEST',
      `${this.file}: field "${field}" ${problem}; restore the file from a backup or fix that field.`,
    );
  }

  object(v: unknown, field: string): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(field, 'must be an object');
    return v as Record<string, unknown>;
  }

  string(o: Record<string, unknown>, key: string, prefix: string, max = 64 * 1024): string {
    const v = o[key];
    if (typeof v !== 'string') this.fail(prefix + key, 'must be a string');
    if (v.length > max) this.fail(prefix + key, `is longer than ${max} characters`);
    return v;
  }

  nullableString(o: Record<string, unknown>, key: string, prefix: string): string | null {
    return o[key] === null ? null : this.string(o, key, prefix);
  }

  int(o: Record<string, unknown>, key: string, prefix: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = o[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      this.fail(prefix + key, `must be a whole number from ${min} to ${max}`);
    }
    return v;
  }

  bool(o: Record<string, unknown>, key: string, prefix: string): boolean {
    const v = o[key];
    if (typeof v !== 'boolean') this.fail(prefix + key, 'must be true or false');
    return v;
  }

  array(o: Record<string, unknown>, key: string, prefix: string): unknown[] {
    const v = o[key];
    if (!Array.isArray(v)) this.fail(prefix + key, 'must be a list');
    return v;
  }

  /** A display name, held to what validateName accepts on create (a hand-edited one could inject terminal codes). */
  name(o: Record<string, unknown>, key: string, prefix: string): string {
    const v = this.string(o, key, prefix, 1024);
    try {
      if (validateName(v) !== v) this.fail(prefix + key, 'has spaces around it or is not in Unicode normal form NFC');
    } catch (e) {
      if (!isMachineError(e) || e.code !== 'INVALID_NAME') throw e;
      this.fail(prefix + key, `is not a valid name (${e.message.replace(/^The name /, '').replace(/\.$/, '')})`);
    }
    return v;
  }

  /** A plain file name in the machine folder: no separators, no `..`, nothing that could point elsewhere. */
  layerName(v: unknown, field: string): string {
    if (typeof v !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/.test(v) || v.includes('..')) {
      this.fail(field, 'must be a plain file name in the machine folder');
    }
    return v;
  }

  date(o: Record<string, unknown>, key: string, prefix: string): string {
    const v = this.string(o, key, prefix, 64);
    if (Number.isNaN(Date.parse(v))) this.fail(prefix + key, 'must be an ISO 8601 date');
    return v;
  }
}

/** Checks a parsed machine.json field by field; the error names the file and the first wrong field. */
export function validateManifest(value: unknown, file: string): Manifest {
  const c: Checker = new Checker(file);
  const o = c.object(value, '(top level)');
  if (o['format'] !== MANIFEST_FORMAT) c.fail('format', `must be "${MANIFEST_FORMAT}"`);
  if (o['version'] !== MANIFEST_VERSION) {
    c.fail('version', `is ${JSON.stringify(o['version'])}, but this vmsnap reads version ${MANIFEST_VERSION} (a newer vmsnap may have written it)`);
  }
  const revision = c.int(o, 'revision', '', 0);
  const id = c.string(o, 'id', '', 64);
  if (!/^[0-9a-f-]{8,64}$/.test(id)) c.fail('id', 'must be a UUID');
  const name = c.name(o, 'name', '');
  const macAddress = c.string(o, 'macAddress', '', 17);
  if (!MAC_PATTERN.test(macAddress)) c.fail('macAddress', 'must look like 52:54:00:12:34:56 (lower case)');
  const cpus = c.int(o, 'cpus', '', 1, 1024);
  const memoryMiB = c.int(o, 'memoryMiB', '', 1, 16 * 1024 * 1024);
  const powerState = o['powerState'];
  if (powerState !== 'off' && powerState !== 'running' && powerState !== 'paused') c.fail('powerState', 'must be "off", "running" or "paused"');
  const createdAt = c.date(o, 'createdAt', '');
  const note = c.string(o, 'note', '');

  const disksRaw = c.array(o, 'disks', '');
  if (disksRaw.length === 0) c.fail('disks', 'must list at least one disk');
  const files = new Set<string>();
  const useFile = (f: string, field: string): void => {
    if (files.has(f)) c.fail(field, `names the layer "${f}" a second time`);
    files.add(f);
  };
  const disks: DiskRecord[] = disksRaw.map((d, i) => {
    const p = `disks[${i}].`;
    const dObj = c.object(d, `disks[${i}]`);
    const top = c.layerName(dObj['top'], p + 'top');
    useFile(top, p + 'top');
    return { virtualSize: c.int(dObj, 'virtualSize', p, 512), top };
  });

  const snapsRaw = c.array(o, 'snapshots', '');
  const ids = new Set<string>();
  const snapshots: SnapshotRecord[] = snapsRaw.map((s, i) => {
    const p = `snapshots[${i}].`;
    const sObj = c.object(s, `snapshots[${i}]`);
    const sid = c.string(sObj, 'id', p, 64);
    if (ids.has(sid)) c.fail(p + 'id', `repeats the id ${sid}`);
    ids.add(sid);
    const layersRaw = c.array(sObj, 'layers', p);
    if (layersRaw.length !== disks.length) c.fail(p + 'layers', `must list one layer per disk (${disks.length})`);
    const layers = layersRaw.map((l, j) => {
      const f = c.layerName(l, `${p}layers[${j}]`);
      useFile(f, `${p}layers[${j}]`);
      return f;
    });
    const record: SnapshotRecord = {
      id: sid,
      name: c.name(sObj, 'name', p),
      description: c.string(sObj, 'description', p),
      parentId: c.nullableString(sObj, 'parentId', p),
      createdAt: c.date(sObj, 'createdAt', p),
      takenWhileRunning: c.bool(sObj, 'takenWhileRunning', p),
      layers,
      // Both are absent from manifests written before machines could run: treated as null.
      stateFile: sObj['stateFile'] === undefined || sObj['stateFile'] === null ? null : stateName(c, sObj['stateFile'], p + 'stateFile', useFile),
      vm: sObj['vm'] === undefined || sObj['vm'] === null ? null : vmRecord(c, sObj['vm'], p + 'vm'),
      ...(sObj['auto'] === undefined || sObj['auto'] === false ? {} : { auto: autoFlag(c, sObj, p) }),
      // Absent from snapshots taken before quiescing existed.
      ...(sObj['quiesced'] === undefined ? {} : { quiesced: c.bool(sObj, 'quiesced', p) }),
    };
    if (sObj['thumbnail'] !== undefined) record.thumbnail = stateName(c, sObj['thumbnail'], p + 'thumbnail', useFile);
    return record;
  });
  snapshots.forEach((s, i) => {
    if (s.parentId !== null && !ids.has(s.parentId)) c.fail(`snapshots[${i}].parentId`, `names no snapshot of this machine (${s.parentId})`);
  });
  // Parents must form a tree: walking up from any snapshot ends at a root.
  const parentOf = new Map(snapshots.map((s) => [s.id, s.parentId]));
  snapshots.forEach((s, i) => {
    let at: string | null = s.parentId;
    for (let hops = 0; at !== null; hops++) {
      if (at === s.id || hops > snapshots.length) c.fail(`snapshots[${i}].parentId`, 'makes the snapshot its own ancestor');
      at = parentOf.get(at) ?? null;
    }
  });
  const current = o['current'] === null ? null : c.string(o, 'current', '', 64);
  if (current !== null && !ids.has(current)) c.fail('current', `names no snapshot of this machine (${current})`);

  let clonedFrom: ClonedFromRecord | null = null;
  if (o['clonedFrom'] !== null) {
    const cf = c.object(o['clonedFrom'], 'clonedFrom');
    const kind = cf['kind'];
    if (kind !== 'linked' && kind !== 'full') c.fail('clonedFrom.kind', 'must be "linked" or "full"');
    let baseLayers: string[] | null = null;
    if (cf['baseLayers'] !== null) {
      baseLayers = c.array(cf, 'baseLayers', 'clonedFrom.').map((b, j) => {
        if (typeof b !== 'string' || b.length === 0 || b.length > 4096) c.fail(`clonedFrom.baseLayers[${j}]`, 'must be a path');
        return b;
      });
      if (baseLayers.length !== disks.length) c.fail('clonedFrom.baseLayers', `must list one layer per disk (${disks.length})`);
    }
    if (kind === 'linked' && baseLayers === null) c.fail('clonedFrom.baseLayers', 'must be set for a linked clone');
    clonedFrom = {
      machineId: c.string(cf, 'machineId', 'clonedFrom.', 64),
      snapshotId: c.nullableString(cf, 'snapshotId', 'clonedFrom.'),
      kind,
      baseLayers,
    };
  }
  const m: Manifest = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    revision,
    id,
    name,
    macAddress,
    cpus,
    memoryMiB,
    powerState,
    createdAt,
    note,
    disks,
    snapshots,
    current,
    clonedFrom,
  };
  if (o['guest'] !== undefined) m.guest = guestRecord(c, o['guest'], useFile);
  if (o['baseImage'] !== undefined) m.baseImage = baseImageRecord(c, o['baseImage']);
  if (o['forwards'] !== undefined) m.forwards = c.array(o, 'forwards', '').map((f, i) => forwardRecord(c, f, `forwards[${i}]`));
  if (o['cdrom'] !== undefined) m.cdrom = isoPath(c, o, 'cdrom', '');
  if (o['kvmFailedAt'] !== undefined) m.kvmFailedAt = c.date(o, 'kvmFailedAt', '');
  if (o['autoCheckpoints'] !== undefined) m.autoCheckpoints = autoCheckpointRecord(c, o['autoCheckpoints']);
  if (o['display'] !== undefined) m.display = displayDevice(c, o['display'], 'display');
  if (o['libvirtExports'] !== undefined) m.libvirtExports = libvirtExportRecords(c, c.array(o, 'libvirtExports', ''));
  return m;
}

function autoFlag(c: Checker, o: Record<string, unknown>, prefix: string): true {
  if (o['auto'] !== true) c.fail(prefix + 'auto', 'must be true when present');
  return true;
}

/** The policy, held to the same bounds `vm edit` accepts (validateAutoPolicy). */
function autoCheckpointRecord(c: Checker, v: unknown): AutoCheckpointRecord {
  const o = c.object(v, 'autoCheckpoints');
  const p = 'autoCheckpoints.';
  const policy = {
    everySeconds: c.int(o, 'everySeconds', p, 1),
    keep: c.int(o, 'keep', p, 1),
    daily: c.int(o, 'daily', p, 0),
    weekly: c.int(o, 'weekly', p, 0),
  };
  const problem = autoPolicyProblem(policy);
  if (problem !== null) c.fail(p + problem.field, problem.message);
  return policy;
}

function guestRecord(c: Checker, v: unknown, useFile: (f: string, field: string) => void): GuestRecord {
  const o = c.object(v, 'guest');
  const user = c.string(o, 'user', 'guest.', 32);
  if (!/^[a-z_][a-z0-9_-]*$/.test(user)) c.fail('guest.user', 'must be a user name such as dev');
  const authorizedKeys = c.array(o, 'authorizedKeys', 'guest.').map((k, i) => {
    if (typeof k !== 'string' || k.includes('\n') || k.length > 16 * 1024) c.fail(`guest.authorizedKeys[${i}]`, 'must be one public key line');
    return k;
  });
  const userDataFile = o['userDataFile'] === null ? null : c.layerName(o['userDataFile'], 'guest.userDataFile');
  if (userDataFile !== null) useFile(userDataFile, 'guest.userDataFile');
  return {
    user,
    authorizedKeys,
    identityFile: c.string(o, 'identityFile', 'guest.', 4096),
    hostKey: c.string(o, 'hostKey', 'guest.', 4096),
    userDataFile,
  };
}

function baseImageRecord(c: Checker, v: unknown): BaseImageRecord {
  const o = c.object(v, 'baseImage');
  const sha256 = c.string(o, 'sha256', 'baseImage.', 64);
  if (!/^[0-9a-f]{64}$/.test(sha256)) c.fail('baseImage.sha256', 'must be 64 hex digits');
  const format = o['format'];
  if (format !== 'qcow2' && format !== 'raw') c.fail('baseImage.format', 'must be "qcow2" or "raw"');
  const layer = c.string(o, 'layer', 'baseImage.', 4096);
  if (layer !== `../.images/${sha256}.${format}`) c.fail('baseImage.layer', `must be ../.images/${sha256}.${format}`);
  return { sha256, format, layer, source: c.string(o, 'source', 'baseImage.', 8192) };
}

/** An ISO image's absolute path on this computer (one line: QEMU gets it on its command line). */
function isoPath(c: Checker, o: Record<string, unknown>, key: string, prefix: string): string {
  const v = c.string(o, key, prefix, 4096);
  // eslint-disable-next-line no-control-regex
  if (!isAbsolute(v) || /[\u0000-\u001f]/.test(v)) c.fail(prefix + key, 'must be an absolute path');
  return v;
}

function forwardRecord(c: Checker, v: unknown, field: string): ForwardRecord {
  const o = c.object(v, field);
  const guestPort = c.int(o, 'guestPort', `${field}.`, 1, 65535);
  return o['hostPort'] === undefined ? { guestPort } : { guestPort, hostPort: c.int(o, 'hostPort', `${field}.`, 1, 65535) };
}

/** The files a snapshot owns besides its layers: its memory state and its thumbnail. */
export function snapshotOwnFiles(s: SnapshotRecord): string[] {
  return [...(s.stateFile === null ? [] : [s.stateFile]), ...(s.thumbnail === undefined ? [] : [s.thumbnail])];
}

/** The layer below each disk's lowest own layer: a linked clone's source layers, or the cloud image; else null. */
export function baseLayerOf(m: Manifest, disk: number): string | null {
  if (m.clonedFrom?.kind === 'linked' && m.clonedFrom.baseLayers) return m.clonedFrom.baseLayers[disk]!;
  return disk === 0 && m.baseImage !== undefined ? m.baseImage.layer : null;
}

function stateName(c: Checker, v: unknown, field: string, useFile: (f: string, field: string) => void): string {
  const f = c.layerName(v, field);
  useFile(f, field);
  return f;
}

function vmRecord(c: Checker, v: unknown, field: string): SnapshotVmRecord {
  const o = c.object(v, field);
  const p = field + '.';
  const macAddress = c.string(o, 'macAddress', p, 17);
  if (!MAC_PATTERN.test(macAddress)) c.fail(p + 'macAddress', 'must look like 52:54:00:12:34:56 (lower case)');
  const accel = o['accel'];
  if (accel !== 'kvm' && accel !== 'tcg') c.fail(p + 'accel', 'must be "kvm" or "tcg"');
  const machineType = c.string(o, 'machineType', p, 128);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(machineType)) c.fail(p + 'machineType', 'must be a QEMU machine type such as pc-q35-7.2');
  const vm: SnapshotVmRecord = {
    cpus: c.int(o, 'cpus', p, 1, 1024),
    memoryMiB: c.int(o, 'memoryMiB', p, 1, 16 * 1024 * 1024),
    macAddress,
    machineType,
    accel,
    qemuVersion: c.string(o, 'qemuVersion', p, 128),
  };
  if (o['cdrom'] !== undefined) vm.cdrom = isoPath(c, o, 'cdrom', p);
  if (o['display'] !== undefined) vm.display = displayDevice(c, o['display'], p + 'display');
  if (o['guestAgent'] !== undefined) vm.guestAgent = c.bool(o, 'guestAgent', p);
  return vm;
}

function displayDevice(c: Checker, v: unknown, field: string): DisplayDevice {
  if (!isDisplayDevice(v)) c.fail(field, 'must be "std", "virtio" or "none"');
  return v;
}

/**
 * Manifests validated before, by file, with the text they came from: listing a big library again parses only the
 * manifests that changed. They are frozen: every change is made to a cloneManifest() copy, never to one of these.
 */
const validated = new Map<string, { text: string; manifest: Manifest }>();

export async function readManifest(folder: string): Promise<Manifest> {
  const file = join(folder, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    validated.delete(file);
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new MachineError('NOT_FOUND', `${file} does not exist: the folder is not a vmsnap machine.`);
    }
    throw new MachineError('IO_ERROR', `${file} cannot be read: ${(e as Error).message}`, [], { cause: e });
  }
  const known = validated.get(file);
  if (known?.text === text) return known.manifest;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new MachineError('INVALID_MANIFEST', `${file} is not valid JSON (${(e as Error).message}); restore it from a backup.`);
  }
  const manifest = deepFreeze(validateManifest(parsed, file));
  validated.set(file, { text, manifest });
  return manifest;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** Writes the manifest atomically with the next revision number and returns what was written. */
export async function writeManifest(folder: string, manifest: Manifest): Promise<Manifest> {
  await atomicWriteJson(join(folder, MANIFEST_FILE), manifest);
  await followTops(folder, manifest);
  return manifest;
}

export function cloneManifest(m: Manifest): Manifest {
  return structuredClone(m);
}
