// Mutation fuzzing of the reader against QEMU: qemu-made images (v2/v3, cluster sizes, compressed, extended L2,
// internal snapshots, zero clusters, refcount width 1, a backing chain) get a few random edits to their metadata,
// then are opened, read whole, checked, and (where we accept them) compared with `qemu-img convert -O raw`.
// A failure is: bytes that differ from QEMU's where both read the image, an error that is not an ImageError, a
// hang, or a write to the input. Seeded and bounded in time; VMSNAP_FUZZ_SEED replays a run, VMSNAP_FUZZ_CASES
// and VMSNAP_FUZZ_SECONDS run it longer by hand; VMSNAP_FUZZ_REFUSED=1 also asks qemu-img about every image we
// refuse and counts those it reads (we may be stricter than QEMU, never laxer).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { check } from '../../../src/engine/qcow2/check';
import { isImageError } from '../../../src/engine/qcow2/errors';
import { Qcow2Image } from '../../../src/engine/qcow2/image';
import { createQcow2, KiB, MiB, qemuApply, withTimeout, XorShift } from '../../support/fixtures';
import { qemuImg, qemuIo, requireTool, scratchDir } from '../../support/qemu';
import { compressibleBytes } from './damaged-fixtures';

const SECONDS = Number(process.env.VMSNAP_FUZZ_SECONDS ?? 75);
const CASES = Number(process.env.VMSNAP_FUZZ_CASES ?? 3000);
const SEED = process.env.VMSNAP_FUZZ_SEED !== undefined ? Number(process.env.VMSNAP_FUZZ_SEED) : (Date.now() % 0x7fffffff) >>> 0;
/** Virtual disks larger than this (a mutated size field) are only read in part and not compared. */
const MAX_READ = 64 * MiB;
const CASE_MS = 10_000;
const ASK_QEMU_ABOUT_REFUSED = process.env.VMSNAP_FUZZ_REFUSED === '1';

interface Seed {
  name: string;
  file: string;
  bytes: Buffer;
  /** [start, end) byte ranges of the file that hold metadata: where the edits go. */
  regions: Array<[number, number]>;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;

/** Where the metadata of an image lies, parsed here independently of the library. */
function metadataRegions(b: Buffer): Array<[number, number]> {
  const clusterSize = 2 ** b.readUInt32BE(20);
  const version = b.readUInt32BE(4);
  const headerEnd = version === 3 ? Math.min(clusterSize, 4096) : Math.min(clusterSize, 1024);
  const regions: Array<[number, number]> = [[0, 112], [0, headerEnd]];
  const clamp = (s: number, e: number): void => {
    if (s < b.length && e > s) regions.push([s, Math.min(e, b.length)]);
  };
  const l1Size = b.readUInt32BE(36);
  const l1 = Number(b.readBigUInt64BE(40));
  clamp(l1, l1 + l1Size * 8);
  for (let i = 0; i < l1Size && l1 + i * 8 + 8 <= b.length; i++) {
    const l2 = Number(b.readBigUInt64BE(l1 + i * 8) & OFFSET_MASK);
    if (l2 !== 0) clamp(l2, l2 + clusterSize);
  }
  const rt = Number(b.readBigUInt64BE(48));
  clamp(rt, rt + Math.min(clusterSize, 4096));
  for (let i = 0; i < 4 && rt + i * 8 + 8 <= b.length; i++) {
    const block = Number(b.readBigUInt64BE(rt + i * 8) & ~0x1ffn);
    if (block !== 0) clamp(block, block + Math.min(clusterSize, 4096));
  }
  const nbSnapshots = b.readUInt32BE(60);
  const snapshots = Number(b.readBigUInt64BE(64));
  if (nbSnapshots > 0) clamp(snapshots, snapshots + nbSnapshots * 128);
  return regions;
}

/** One to three edits: bit flips, random bytes, table entries replaced by interesting values, a truncation. */
function mutate(seed: Seed, rng: XorShift): { bytes: Buffer; edits: string[] } {
  let bytes = Buffer.from(seed.bytes);
  const edits: string[] = [];
  const n = rng.between(1, 3);
  for (let k = 0; k < n; k++) {
    const [start, end] = rng.pick(seed.regions);
    const at = rng.between(start, end - 1);
    const op = rng.below(100);
    if (op < 35) {
      const bit = rng.below(8);
      bytes[at] = bytes[at]! ^ (1 << bit);
      edits.push(`flip bit ${bit} of byte ${at}`);
    } else if (op < 50) {
      const v = rng.below(256);
      bytes[at] = v;
      edits.push(`byte ${at} = ${v}`);
    } else if (op < 92) {
      const aligned = Math.min(at - (at % 8), bytes.length - 8);
      if (aligned < 0) continue;
      const old = bytes.readBigUInt64BE(aligned);
      const choices = [
        0n,
        0xffff_ffff_ffff_ffffn,
        old ^ (1n << BigInt(rng.below(64))),
        old + BigInt(2 ** seed.bytes.readUInt32BE(20)),
        old - 512n,
        BigInt(bytes.length),
        old | 1n,
        old | (1n << 62n),
        BigInt(rng.next()) * 0x1_0000_0000n + BigInt(rng.next()),
        bytes.readBigUInt64BE(Math.min(rng.between(start, end - 1) & ~7, bytes.length - 8)),
      ];
      const v = BigInt.asUintN(64, rng.pick(choices));
      bytes.writeBigUInt64BE(v, aligned);
      edits.push(`u64 at ${aligned} = 0x${v.toString(16)}`);
    } else {
      const length = rng.between(0, bytes.length - 1);
      bytes = bytes.subarray(0, length);
      edits.push(`truncate to ${length}`);
    }
  }
  return { bytes, edits };
}

type Outcome =
  | { kind: 'read'; data: Buffer }
  | { kind: 'partial' } // opened and read in part: too large a disk to compare
  | { kind: 'refused'; code: string; message: string }
  | { kind: 'untyped'; error: unknown };

/** Opens the image, reads the whole disk (and each internal snapshot), and checks it; all in this process. */
async function readAll(path: string): Promise<Outcome> {
  let image: Qcow2Image | null = null;
  try {
    image = await Qcow2Image.open(path);
    const size = image.size;
    const data = Buffer.alloc(Math.min(size, MAX_READ));
    await image.read(data, 0);
    if (size > MAX_READ) await image.read(Buffer.alloc(4096), size - Math.min(size, 4096));
    for (const s of image.snapshots) {
      const view = await image.openSnapshot(s.id);
      await view.read(Buffer.alloc(Math.min(view.size, 4 * MiB)), 0);
    }
    return size > MAX_READ ? { kind: 'partial' } : { kind: 'read', data };
  } catch (e) {
    return isImageError(e) ? { kind: 'refused', code: e.code, message: e.message } : { kind: 'untyped', error: e };
  } finally {
    await image?.close().catch(() => {});
  }
}

describe('qcow2 fuzz: mutated qemu-made images against qemu-img', function () {
  this.timeout(SECONDS * 1000 + 180_000);
  const scratch = scratchDir('vmsnap-fuzz-');
  const p = scratch.path;
  const seeds: Seed[] = [];

  before(function () {
    requireTool('qemu-img');
    requireTool('qemu-io');
    const make = (name: string, build: (file: string) => void): void => {
      const file = p(`${name}.qcow2`);
      build(file);
      const bytes = readFileSync(file);
      seeds.push({ name, file, bytes, regions: metadataRegions(bytes) });
    };
    const data = (file: string, extra: string[] = []): void =>
      void qemuIo(file, ['write -P 0x11 0 256k', 'write -P 0x22 1M 64k', 'write -z 1088k 64k', 'write -P 0x33 1555k 5k', ...extra]);
    make('v3-64k', (f) => {
      createQcow2(f, { size: 2 * MiB });
      data(f);
    });
    make('v2-4k', (f) => {
      createQcow2(f, { size: 2 * MiB, compat: '0.10', clusterSize: 4 * KiB });
      data(f);
    });
    make('v3-512', (f) => {
      createQcow2(f, { size: 1 * MiB, clusterSize: 512 });
      qemuIo(f, ['write -P 0x11 0 64k', 'write -z 100k 8k', 'write -P 0x44 700k 3k']);
    });
    make('v3-2m', (f) => {
      createQcow2(f, { size: 6 * MiB, clusterSize: 2 * MiB });
      qemuIo(f, ['write -P 0x11 0 64k', 'write -P 0x22 5M 4k', 'write -z 2M 2M']);
    });
    make('compressed', (f) => {
      const raw = p('compressible.raw');
      writeFileSync(raw, compressibleBytes());
      qemuImg('convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', raw, f);
    });
    make('compressed-v2-4k', (f) => {
      createQcow2(f, { size: 4 * MiB, compat: '0.10', clusterSize: 4 * KiB });
      qemuApply(f, [
        { kind: 'compressed', offset: 0, length: 64 * KiB, pattern: 0x55 },
        { kind: 'write', offset: 64 * KiB, length: 8 * KiB, pattern: 0x56 },
      ]);
    });
    make('extended-l2', (f) => {
      createQcow2(f, { size: 4 * MiB, extendedL2: true });
      qemuIo(f, ['write -P 0x11 0 4k', 'write -P 0x22 70k 2k', 'write -z 8k 4k', 'write -P 0x33 1M 64k', 'write -z 1M 8k']);
    });
    make('snapshots', (f) => {
      createQcow2(f, { size: 2 * MiB });
      data(f);
      qemuImg('snapshot', '-c', 'first', f);
      qemuIo(f, ['write -P 0x66 0 64k', 'write -z 1M 64k']);
      qemuImg('snapshot', '-c', 'second', f);
      qemuIo(f, ['write -P 0x77 1536k 128k']);
    });
    make('zero-v3-refcount1', (f) => {
      qemuImg('create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=1', f, String(2 * MiB));
      data(f, ['write -z 0 128k']);
    });
    make('overlay', (f) => {
      const base = p('base.qcow2');
      createQcow2(base, { size: 2 * MiB });
      data(base);
      createQcow2(f, { backing: 'base.qcow2' });
      qemuIo(f, ['write -P 0x99 64k 64k', 'write -z 1M 32k', 'write -P 0xaa 1800k 1k']);
    });
  });
  after(() => scratch.cleanup());

  it(`reads what qemu-img reads, or refuses with an ImageError; never a silent difference, an untyped error, a hang or a write`, async () => {
    console.log(`      fuzz seed ${SEED} (VMSNAP_FUZZ_SEED=${SEED} replays), up to ${CASES} cases or ${SECONDS} s`);
    const baseHash = sha(readFileSync(p('base.qcow2')));
    const rng = new XorShift(SEED);
    const failures: string[] = [];
    const counts = { cases: 0, refused: 0, identical: 0, qemuRefused: 0, partial: 0, checked: 0, refusedQemuReads: 0 };
    const qemuOnlyRefused: string[] = [];
    const oursOnlyRefused: string[] = [];
    const qemuReads = (): { ok: boolean; error: string } => {
      rmSync(rawPath, { force: true });
      const q = spawnSync('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', mutantPath, rawPath], { timeout: 20_000, encoding: 'utf8' });
      return { ok: q.status === 0, error: (q.stderr ?? '').trim().split('\n')[0] ?? '' };
    };
    const deadline = Date.now() + SECONDS * 1000;
    const mutantPath = p('mutant.qcow2');
    const rawPath = p('mutant.raw');
    while (counts.cases < CASES && Date.now() < deadline && failures.length < 10) {
      const index = counts.cases++;
      const seed = rng.pick(seeds);
      const { bytes, edits } = mutate(seed, rng);
      const what = `case ${index} (${seed.name}: ${edits.join(', ')})`;
      writeFileSync(mutantPath, bytes);
      let ours: Outcome;
      try {
        ours = await withTimeout(readAll(mutantPath), CASE_MS, what);
        const checked = await withTimeout(check(mutantPath).then(() => null, (e: unknown) => e), CASE_MS, `check of ${what}`);
        if (checked !== null && !isImageError(checked)) failures.push(`${what}: check threw an untyped error: ${String(checked)}`);
        counts.checked++;
      } catch (e) {
        failures.push(`${what}: ${String(e)}`);
        continue;
      }
      if (!readFileSync(mutantPath).equals(bytes)) failures.push(`${what}: the input file was written to`);
      if (ours.kind === 'untyped') {
        failures.push(`${what}: an untyped error: ${ours.error instanceof Error ? (ours.error.stack ?? ours.error.message) : String(ours.error)}`);
        continue;
      }
      if (ours.kind === 'refused') {
        counts.refused++;
        if (ASK_QEMU_ABOUT_REFUSED && qemuReads().ok) {
          counts.refusedQemuReads++;
          if (oursOnlyRefused.length < 10) oursOnlyRefused.push(`${what}: ${ours.code}`);
          if (process.env.VMSNAP_FUZZ_DEBUG) console.log(`REFUSED ${ours.message}`);
        }
        continue;
      }
      if (ours.kind === 'partial') {
        counts.partial++;
        continue;
      }
      const q = qemuReads();
      if (!q.ok) {
        counts.qemuRefused++;
        if (qemuOnlyRefused.length < 5) qemuOnlyRefused.push(`${what}: ${q.error}`);
        continue;
      }
      const theirs = readFileSync(rawPath);
      if (!theirs.equals(ours.data)) {
        let i = 0;
        while (i < theirs.length && theirs[i] === ours.data[i]) i++;
        failures.push(`${what}: we read ${ours.data.length} bytes that differ from qemu-img's ${theirs.length} at byte ${i}`);
      } else {
        counts.identical++;
      }
    }
    assert.equal(sha(readFileSync(p('base.qcow2'))), baseHash, 'the backing file of the overlay seed was written to');
    console.log(
      `      ${counts.cases} cases: ${counts.refused} refused with an ImageError, ${counts.identical} read identical to qemu-img, ` +
        `${counts.qemuRefused} read by us but refused by qemu-img, ${counts.partial} too large to compare; ${counts.checked} checked`,
    );
    if (ASK_QEMU_ABOUT_REFUSED) console.log(`      of the ${counts.refused} we refused, qemu-img read ${counts.refusedQemuReads}`);
    for (const line of qemuOnlyRefused) console.log(`      accepted by us, refused by qemu-img: ${line}`);
    for (const line of oursOnlyRefused) console.log(`      refused by us, read by qemu-img: ${line}`);
    assert.deepEqual(failures, [], `seed ${SEED}:\n${failures.join('\n')}`);
  });
});
