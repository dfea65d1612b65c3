// The machine layer: snapshot and clone operations in-process on 1 GiB and 64 GiB disks (1 GiB written across
// 10 snapshots), a full clone next to `qemu-img convert` of the same chain, and listing 100 x 100 snapshots.
import { execFileSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Library } from '../../src/engine/machine';
import { median, type BenchRow } from './report';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const RUNS = 5;
const CONSTANT_TARGET_MS = 20;

function tool(cmd: string, ...args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  (globalThis as { gc?: () => void }).gc?.();
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function medianOf(fn: (i: number) => Promise<unknown>, before?: (i: number) => Promise<unknown>): Promise<number> {
  const t: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    await before?.(i);
    t.push(await time(() => fn(i)));
  }
  return median(t);
}

function targetRow(operation: string, oursMs: number, limitMs: number): BenchRow {
  console.log(`  ${operation}: ${oursMs.toFixed(2)} ms`);
  return { operation, oursMs, qemuMs: null, target: `< ${limitMs} ms`, met: oursMs < limitMs };
}

/** A machine with `size` virtual bytes and 1 GiB written by qemu-io across 10 snapshots, spread over the disk. */
async function machineWithHistory(lib: Library, name: string, size: number): Promise<string> {
  const m = await lib.createMachine(name, { diskSize: size });
  const chunk = Math.floor(GiB / 10 / MiB) * MiB; // 102 MiB x 10
  for (let i = 0; i < 10; i++) {
    const offset = Math.floor((i * size) / 10 / MiB) * MiB;
    const args = ['-f', 'qcow2'];
    for (let at = 0; at < chunk; at += 64 * MiB) args.push('-c', `write -q -P ${i + 1} ${offset + at} ${Math.min(64 * MiB, chunk - at)}`);
    tool('qemu-io', ...args, await lib.diskPath(m.id));
    await lib.takeSnapshot(m.id, `S${i + 1}`);
  }
  return m.id;
}

async function constantTimeRows(lib: Library, label: string, id: string): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  rows.push(targetRow(`machine ${label}: snapshot take`, await medianOf((i) => lib.takeSnapshot(id, `take ${i}`)), CONSTANT_TARGET_MS));
  rows.push(
    targetRow(`machine ${label}: snapshot revert`, await medianOf((i) => lib.revert(id, i % 2 ? 'S5' : 'S10', { discardCurrent: true })), CONSTANT_TARGET_MS),
  );
  rows.push(
    targetRow(`machine ${label}: linked clone of a snapshot`, await medianOf((i) => lib.clone(id, `${label} linked ${i}`, { kind: 'linked', from: 'S10' })), CONSTANT_TARGET_MS),
  );
  // The leaf: a snapshot the (empty) current state descends from; its one dependant is committed into it.
  let leaf = '';
  rows.push(
    targetRow(
      `machine ${label}: delete a leaf snapshot`,
      await medianOf(
        () => lib.deleteSnapshot(id, leaf),
        async (i) => {
          leaf = (await lib.takeSnapshot(id, `leaf ${i}`)).id;
        },
      ),
      CONSTANT_TARGET_MS,
    ),
  );
  return rows;
}

/** 100 machines x 100 snapshots: one made through the API, copied with new identities. */
async function bigLibrary(dir: string): Promise<Library> {
  const lib = await Library.open(dir);
  const m = await lib.createMachine('template', { diskSize: GiB });
  for (let i = 0; i < 100; i++) await lib.takeSnapshot(m.id, `snapshot ${i}`, { description: `number ${i}` });
  const manifest = JSON.parse(readFileSync(join(m.folder, 'machine.json'), 'utf8')) as { id: string; name: string; macAddress: string };
  for (let i = 1; i < 100; i++) {
    const hex = i.toString(16).padStart(2, '0');
    const folder = join(dir, `copy-${i}`);
    cpSync(m.folder, folder, { recursive: true });
    const copy = { ...manifest, id: `00000000-0000-4000-8000-0000000000${hex}`, name: `machine ${i}`, macAddress: `52:54:00:aa:00:${hex}` };
    writeFileSync(join(folder, 'machine.json'), JSON.stringify(copy, null, 2));
  }
  return lib;
}

export async function machineSection(dir: string): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const lib = await Library.open(join(dir, 'library'));
  const small = await machineWithHistory(lib, 'one-gib', GiB);
  const big = await machineWithHistory(lib, 'sixty-four-gib', 64 * GiB);
  rows.push(...(await constantTimeRows(lib, '1 GiB', small)));
  rows.push(...(await constantTimeRows(lib, '64 GiB', big)));

  // Full clone of the 1 GiB machine's current state (a chain of the 10 snapshot layers and more) against
  // qemu-img convert of the same chain into a standalone qcow2.
  const top = await lib.diskPath(small);
  const out = join(dir, 'convert.qcow2');
  const o: number[] = [];
  const q: number[] = [];
  for (let i = 0; i < 3; i++) {
    o.push(await time(() => lib.clone(small, `full ${i}`, { kind: 'full' })));
    q.push(await time(async () => tool('qemu-img', 'convert', '-O', 'qcow2', top, out)));
    execFileSync('rm', ['-f', out]);
  }
  const oursMs = median(o);
  const qemuMs = median(q);
  console.log(`  full clone: ours ${oursMs.toFixed(1)} ms, qemu-img convert ${qemuMs.toFixed(1)} ms`);
  rows.push({ operation: 'machine 1 GiB: full clone vs qemu-img convert', oursMs, qemuMs, target: '<= 1.25x', met: oursMs <= 1.25 * qemuMs });

  const listed = await bigLibrary(join(dir, 'big-library'));
  let count = 0;
  const listMs = await medianOf(async () => {
    count = (await listed.list()).length;
  });
  if (count !== 100) throw new Error(`the big library lists ${count} machines, not 100`);
  rows.push(targetRow('machine: list 100 machines x 100 snapshots', listMs, 200));
  const openListMs = await medianOf(async () => (await Library.open(join(dir, 'big-library'))).list());
  rows.push(targetRow('machine: open + list 100 x 100 (with recovery scan)', openListMs, 200));
  return rows;
}
