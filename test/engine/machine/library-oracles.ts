// Oracles for the machine tests: contents are written and read by qemu-io, images checked by qemu-img check.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { isMachineError, type Library, type MachineDetails, type MachineErrorCode } from '../../../src/engine/machine';
import { qemuCheck, qemuIo, run } from '../../support/qemu';

export const MiB = 1024 * 1024;
/** The test disks are split in 1 MiB regions; a state is described by the pattern byte of each region (0 = never written). */
export const REGIONS = 8;
export const DISK_SIZE = REGIONS * MiB;

export type Regions = number[];

export function blank(): Regions {
  return new Array<number>(REGIONS).fill(0);
}

/** Writes `pattern` into regions [from, to) of the machine's current state through its `diskPath`, as any tool would. */
export async function writeRegions(lib: Library, machine: string, from: number, to: number, pattern: number, model?: Regions): Promise<void> {
  const path = await lib.diskPath(machine);
  qemuIo(path, [`write -P ${pattern} ${from * MiB} ${(to - from) * MiB}`]);
  if (model) for (let i = from; i < to; i++) model[i] = pattern;
}

/** Reads every region of the image (a top layer or a snapshot's layer, through its chain) with read -P. */
export function expectRegions(path: string, expected: Regions, what = path): void {
  const args = ['-r', '-U', '-f', 'qcow2'];
  expected.forEach((p, i) => args.push('-c', `read -P ${p} ${i * MiB} ${MiB}`));
  args.push(path);
  const r = spawnSync('qemu-io', args, { encoding: 'utf8' });
  if (r.status !== 0 || /Pattern verification failed|error|failed/i.test(r.stdout + r.stderr)) {
    throw new Error(`${what} does not read as expected [${expected.join(',')}]: ${r.stdout}${r.stderr}`);
  }
}

/** Every layer file of every machine passes qemu-img check with no corruption, leak or error. */
export function checkAllImages(dirs: string[]): number {
  let checked = 0;
  for (const dir of dirs) {
    for (const f of readdirSync(dir)) {
      if (!f.endsWith('.qcow2')) continue;
      const c = qemuCheck(join(dir, f));
      if (c.corruptions !== 0 || c.leaks !== 0 || c.checkErrors !== 0 || c.status !== 0) {
        throw new Error(`qemu-img check ${join(dir, f)} is not clean: ${c.raw}`);
      }
      checked++;
    }
  }
  return checked;
}

export async function checkLibrary(lib: Library): Promise<void> {
  const machines = await lib.list();
  checkAllImages(machines.map((m) => m.folder));
}

export function snapshotLayer(m: MachineDetails, name: string): string {
  const s = m.snapshots.filter((x) => x.name === name);
  if (s.length !== 1) throw new Error(`expected one snapshot named ${name}, found ${s.length}`);
  return s[0]!.layers[0]!;
}

export function backingOf(path: string): string | undefined {
  const info = JSON.parse(run('qemu-img', ['info', '-U', '--output=json', path])) as { 'backing-filename'?: string };
  return info['backing-filename'];
}

/** Awaits `p` and returns the MachineError it must reject with (`code`, and `message` when given). */
export async function rejects(p: Promise<unknown>, code: MachineErrorCode, message?: RegExp): Promise<Error & { candidates?: readonly string[] }> {
  try {
    await p;
  } catch (e) {
    assert.ok(isMachineError(e), `expected a MachineError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected ${code}`);
}
