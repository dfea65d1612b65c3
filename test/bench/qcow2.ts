// The qcow2 chain operations against qemu-img on the same files, page cache warm for both.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Qcow2Image } from '../../src/engine/qcow2/image';
import { commit, compare, flatten, rebase } from '../../src/engine/qcow2/ops';
import { median, type BenchRow } from './report';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** Median of 5 by default; BENCH_RUNS=7 steadies the figures on a busy machine. */
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS) || 5);
/** The CLI as a user starts it: a whole process, Node's start-up included. */
const VMSNAP = resolve('bin/vmsnap');

function vmsnap(...args: string[]): void {
  tool(process.execPath, VMSNAP, ...args);
}

function tool(cmd: string, ...args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** qemu-io writes of a pattern, in 64 MiB commands. */
function fill(image: string, pattern: number, offset: number, length: number): void {
  const args = ['-f', 'qcow2'];
  for (let at = offset; at < offset + length; at += 64 * MiB) args.push('-c', `write -q -P ${pattern} ${at} ${Math.min(64 * MiB, offset + length - at)}`);
  tool('qemu-io', ...args, image);
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function time(fn: () => Promise<unknown> | void): Promise<number> {
  gc();
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** Median of RUNS timings of ours and of qemu's, alternating, each after an untimed `prepare`. */
async function sideBySide(
  prepare: () => void,
  ours: () => Promise<unknown>,
  theirs: () => void,
): Promise<{ oursMs: number; qemuMs: number }> {
  const o: number[] = [];
  const q: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    prepare();
    o.push(await time(ours));
    prepare();
    q.push(await time(theirs));
  }
  return { oursMs: median(o), qemuMs: median(q) };
}

function ratioRow(operation: string, r: { oursMs: number; qemuMs: number }, limit: number | null): BenchRow {
  const row: BenchRow = { operation, oursMs: r.oursMs, qemuMs: r.qemuMs };
  if (limit !== null) {
    row.target = `<= ${limit}x`;
    row.met = r.oursMs <= limit * r.qemuMs;
  }
  console.log(`  ${operation}: ours ${r.oursMs.toFixed(1)} ms, qemu-img ${r.qemuMs.toFixed(1)} ms`);
  return row;
}

/**
 * On tmpfs where there is one (flushes cost nothing there, so both sides are measured on their own work), as
 * the targets are set; elsewhere in `workDir`.
 */
export async function qcow2Section(workDir: string): Promise<BenchRow[]> {
  const dir = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/vmsnap-bench-') : workDir;
  console.log(`  (files in ${dir}, ${RUNS} runs each, load average ${loadAverage()})`);
  try {
    return await chainOperations(dir);
  } finally {
    if (dir !== workDir) rmSync(dir, { recursive: true, force: true });
  }
}

function loadAverage(): string {
  try {
    return execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).split(' ').slice(0, 3).join(' ');
  } catch {
    return 'unknown';
  }
}

async function chainOperations(dir: string): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const p = (name: string): string => join(dir, name);

  // Flatten: a 1 GiB disk with 256 MiB of data over three layers, some of it in scattered 64 KiB clusters.
  tool('qemu-img', 'create', '-q', '-f', 'qcow2', p('base.qcow2'), String(GiB));
  fill(p('base.qcow2'), 0x11, 0, 128 * MiB);
  tool('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', p('mid.qcow2'));
  fill(p('mid.qcow2'), 0x22, 256 * MiB, 64 * MiB);
  tool('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', p('top.qcow2'));
  fill(p('top.qcow2'), 0x33, 512 * MiB, 48 * MiB);
  const scattered = ['-f', 'qcow2'];
  for (let i = 0; i < 256; i++) scattered.push('-c', `write -q -P ${(i % 250) + 1} ${600 * MiB + i * 1.5 * MiB} ${64 * 1024}`);
  tool('qemu-io', ...scattered, p('top.qcow2'));
  const out = p('flat.qcow2');
  rows.push(
    ratioRow(
      'flatten 1 GiB, 3 layers, 256 MiB data (vs convert, no flush)',
      await sideBySide(
        () => rmSync(out, { force: true }),
        () => flatten(p('top.qcow2'), out),
        () => tool('qemu-img', 'convert', '-O', 'qcow2', p('top.qcow2'), out),
      ),
      1.25,
    ),
  );
  // qemu-img convert's default cache mode (unsafe) never flushes; ours fsyncs before the rename. With
  // -t writeback qemu-img flushes at the end too: the like-for-like figure.
  rows.push(
    ratioRow(
      'flatten, vs qemu-img convert -t writeback (flushes)',
      await sideBySide(
        () => rmSync(out, { force: true }),
        () => flatten(p('top.qcow2'), out),
        () => tool('qemu-img', 'convert', '-t', 'writeback', '-O', 'qcow2', p('top.qcow2'), out),
      ),
      1.25,
    ),
  );
  // The measure: `vmsnap image convert` as a whole process against `qemu-img convert`.
  rows.push(
    ratioRow(
      'flatten, whole process: vmsnap image convert vs qemu-img convert',
      await sideBySide(
        () => rmSync(out, { force: true }),
        async () => vmsnap('image', 'convert', p('top.qcow2'), out),
        () => tool('qemu-img', 'convert', '-O', 'qcow2', p('top.qcow2'), out),
      ),
      1.25,
    ),
  );
  rmSync(out, { force: true });

  // Commit: a 256 MiB layer into a 1 GiB base, half over clusters the base has, half into new ones.
  tool('qemu-img', 'create', '-q', '-f', 'qcow2', p('cbase.qcow2'), String(GiB));
  fill(p('cbase.qcow2'), 0x44, 0, 256 * MiB);
  tool('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'cbase.qcow2', '-F', 'qcow2', p('ctop.qcow2'));
  fill(p('ctop.qcow2'), 0x55, 128 * MiB, 256 * MiB);
  const fresh = (): void => {
    copyFileSync(p('cbase.qcow2'), p('wbase.qcow2'));
    copyFileSync(p('ctop.qcow2'), p('wtop.qcow2'));
    tool('qemu-img', 'rebase', '-q', '-u', '-b', 'wbase.qcow2', '-F', 'qcow2', p('wtop.qcow2'));
  };
  rows.push(
    ratioRow(
      'commit a 256 MiB layer',
      await sideBySide(
        fresh,
        () => commit(p('wtop.qcow2')),
        () => tool('qemu-img', 'commit', '-q', p('wtop.qcow2')),
      ),
      1.25,
    ),
  );
  rows.push(
    ratioRow(
      'commit, whole process: vmsnap image commit vs qemu-img commit',
      await sideBySide(
        fresh,
        async () => vmsnap('image', 'commit', p('wtop.qcow2')),
        () => tool('qemu-img', 'commit', '-q', p('wtop.qcow2')),
      ),
      1.25,
    ),
  );
  for (const f of ['cbase.qcow2', 'ctop.qcow2', 'wbase.qcow2', 'wtop.qcow2']) rmSync(p(f), { force: true });

  // Rebase (deleting a snapshot whose child stays): the 1 GiB chain of the flatten above, `top` rebased from `mid`
  // onto `base`, so mid's 64 MiB move into it. qemu-img compares the two chains over the whole disk.
  const rfresh = (): void => {
    copyFileSync(p('top.qcow2'), p('rtop.qcow2'));
    tool('qemu-img', 'rebase', '-q', '-u', '-b', 'mid.qcow2', '-F', 'qcow2', p('rtop.qcow2'));
  };
  rows.push(
    ratioRow(
      'rebase a layer off a 64 MiB snapshot layer',
      await sideBySide(
        rfresh,
        () => rebase(p('rtop.qcow2'), p('base.qcow2')),
        () => tool('qemu-img', 'rebase', '-q', '-b', 'base.qcow2', '-F', 'qcow2', p('rtop.qcow2')),
      ),
      1.25,
    ),
  );
  rows.push(
    ratioRow(
      'rebase, whole process: vmsnap image rebase vs qemu-img rebase',
      await sideBySide(
        rfresh,
        async () => vmsnap('image', 'rebase', p('rtop.qcow2'), '--backing', p('base.qcow2')),
        () => tool('qemu-img', 'rebase', '-q', '-b', 'base.qcow2', '-F', 'qcow2', p('rtop.qcow2')),
      ),
      1.25,
    ),
  );
  rmSync(p('rtop.qcow2'), { force: true });

  // Compare: two identical, fully written 1 GiB images.
  tool('qemu-img', 'create', '-q', '-f', 'qcow2', p('a.qcow2'), String(GiB));
  fill(p('a.qcow2'), 0x5a, 0, GiB);
  copyFileSync(p('a.qcow2'), p('b.qcow2'));
  rows.push(
    ratioRow(
      'compare two identical 1 GiB images',
      await sideBySide(
        () => {},
        async () => {
          const r = await compare(p('a.qcow2'), p('b.qcow2'));
          if (!r.identical) throw new Error('the benchmark images differ');
        },
        () => tool('qemu-img', 'compare', '-q', p('a.qcow2'), p('b.qcow2')),
      ),
      1.25,
    ),
  );

  // Creating an overlay in-process. Taking a snapshot knows the size and format (the machine's manifest), as
  // `qemu-img create -b … -F qcow2 FILE SIZE` does; without them, both read them from the backing file. Neither
  // side flushes the new file. The gigabytes written above are flushed first (untimed).
  tool('sync');
  const overlayRow = async (operation: string, sizeKnown: boolean): Promise<BenchRow> => {
    const ours: number[] = [];
    const theirs: number[] = [];
    const size = sizeKnown ? [String(GiB)] : [];
    for (let i = 0; i < 15; i++) {
      const known = sizeKnown ? { size: GiB, backingFormat: 'qcow2' as const } : {};
      ours.push(await time(() => Qcow2Image.create(p(`ov-${i}.qcow2`), { backingFile: p('a.qcow2'), ...known })));
      theirs.push(await time(() => tool('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', p(`qov-${i}.qcow2`), ...size)));
    }
    for (let i = 0; i < 15; i++) for (const f of [`ov-${i}.qcow2`, `qov-${i}.qcow2`]) rmSync(p(f), { force: true });
    const row: BenchRow = { operation, oursMs: median(ours), qemuMs: median(theirs), target: '< 5 ms' };
    row.met = row.oursMs < 5;
    console.log(`  ${operation}: ours ${row.oursMs.toFixed(2)} ms, qemu-img ${row.qemuMs!.toFixed(2)} ms`);
    return row;
  };
  rows.push(await overlayRow('create an overlay, as a snapshot does (in-process)', true));
  rows.push(await overlayRow('create an overlay, size read from the backing (in-process)', false));
  return rows;
}
