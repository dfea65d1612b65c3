// Differential test: one seeded random sequence of writes and zero writes, applied by the library to image A
// and by qemu-io to its twin B (same creation parameters, the same backing file); then A and B must read the
// same (qemu-img compare) and A must check clean. Set VMSNAP_DIFF_SEED to replay a run; on a failure the
// shortest failing prefix is found and written next to the report.
import { strict as assert } from 'node:assert';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chainMap } from '../../../src/engine/qcow2/chain';
import { Qcow2Image } from '../../../src/engine/qcow2/image';
import {
  convertToRaw,
  createQcow2,
  describeMap,
  firstDifference,
  type GuestOp,
  KiB,
  libraryMap,
  MiB,
  opBytes,
  qemuApply,
  qemuIoCommand,
  qemuMap,
  readFileAt,
  XorShift,
} from '../../support/fixtures';
import { qemuCheck, qemuImg, qemuSame, requireTool, scratchDir, sha256File } from '../../support/qemu';

interface Config {
  name: string;
  size: number;
  clusterSize: number;
  version: 2 | 3;
  extendedL2?: boolean;
  /** Both twins are overlays of one shared backing file. */
  withBacking?: boolean;
  /** Both twins start as copies of one qemu-made image with an internal snapshot (copy-on-write everywhere). */
  withSnapshot?: boolean;
  /** Both twins start as copies of one image qemu-img convert -c compressed (copy-on-write out of compressed clusters). */
  compressed?: boolean;
  /** A is made by the library's create (else by qemu-img, like B). */
  createdByLibrary: boolean;
  ops: number;
  /** The library's flush policy while writing A ('crash-safe' is the default; 'on-flush' only saves time here). */
  ordering: 'crash-safe' | 'on-flush';
}

const CONFIGS: Config[] = [
  { name: '64 KiB clusters, v3, over a backing file', size: 24 * MiB + 512, clusterSize: 64 * KiB, version: 3, withBacking: true, createdByLibrary: true, ops: 600, ordering: 'crash-safe' },
  { name: '4 KiB clusters, v2', size: 6 * MiB + 1536, clusterSize: 4 * KiB, version: 2, createdByLibrary: false, ops: 800, ordering: 'on-flush' },
  { name: '512-byte clusters, v3', size: 3 * MiB, clusterSize: 512, version: 3, createdByLibrary: true, ops: 800, ordering: 'on-flush' },
  { name: 'extended L2, 64 KiB clusters, over a backing file', size: 16 * MiB, clusterSize: 64 * KiB, version: 3, extendedL2: true, withBacking: true, createdByLibrary: false, ops: 800, ordering: 'on-flush' },
  { name: '64 KiB clusters, v3, compressed by qemu-img convert -c', size: 8 * MiB, clusterSize: 64 * KiB, version: 3, compressed: true, createdByLibrary: false, ops: 500, ordering: 'on-flush' },
  { name: '2 MiB clusters, v3, over a backing file', size: 20 * MiB, clusterSize: 2 * MiB, version: 3, withBacking: true, createdByLibrary: true, ops: 250, ordering: 'on-flush' },
  { name: '64 KiB clusters, v3, with an internal snapshot', size: 12 * MiB, clusterSize: 64 * KiB, version: 3, withSnapshot: true, createdByLibrary: false, ops: 700, ordering: 'crash-safe' },
];

const ROUNDS = 3;

function baseSeed(): number {
  const env = process.env['VMSNAP_DIFF_SEED'];
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n)) throw new Error(`VMSNAP_DIFF_SEED must be an integer, not ${env}`);
    return n >>> 0;
  }
  return (Date.now() ^ (process.pid << 16)) >>> 0;
}

/** Random guest operations: sub-cluster, cross-cluster and multi-cluster writes and zero writes, many overlapping. */
function generateOps(rng: XorShift, c: Config, patternFiles: readonly string[]): GuestOp[] {
  const cl = c.clusterSize;
  const ops: GuestOp[] = [];
  // A hot region gets most operations so writes land on clusters written (and zeroed) before.
  const hot = Math.min(c.size, cl * 64);
  const hotStart = rng.below(Math.max(1, c.size - hot));
  while (ops.length < c.ops) {
    let offset: number;
    const where = rng.below(10);
    if (where < 4) offset = hotStart + rng.below(hot);
    else if (where < 7) offset = Math.max(0, Math.min(c.size - 1, rng.below(Math.ceil(c.size / cl)) * cl + rng.between(-16, 16)));
    else offset = rng.below(c.size);
    let length: number;
    const shape = rng.below(10);
    if (shape < 3) length = rng.between(1, 512); // tiny
    else if (shape < 6) length = rng.between(1, cl); // inside or across one boundary
    else if (shape < 9) length = rng.between(cl, cl * 4); // across clusters
    else length = rng.between(cl * 4, cl * 40); // many clusters, maybe across L2 tables
    length = Math.min(length, c.size - offset);
    if (length <= 0) continue;
    const kind = rng.below(10);
    if (kind < 3) ops.push({ kind: 'zero', offset, length });
    else if (kind < 5) ops.push({ kind: 'writeFile', offset, length, source: rng.pick(patternFiles) });
    else ops.push({ kind: 'write', offset, length, pattern: rng.between(0, 255) });
  }
  return ops;
}

describe('qcow2 differential: the library and qemu-io apply the same random writes', function () {
  this.timeout(120_000);
  const seed = baseSeed();
  let s: ReturnType<typeof scratchDir>;
  const sources = new Map<string, Buffer>();
  const patternFiles: string[] = [];

  before(() => {
    requireTool('qemu-img');
    requireTool('qemu-io');
    s = scratchDir('vmsnap-diff-');
    console.log(`      differential seed ${seed} (replay with VMSNAP_DIFF_SEED=${seed})`);
    const rng = new XorShift(seed ^ 0x5eed);
    for (const len of [1, 7, 512, 4093]) {
      const file = s.path(`pattern-${len}.bin`);
      const bytes = rng.bytes(len);
      writeFileSync(file, bytes);
      sources.set(file, bytes);
      patternFiles.push(file);
    }
  });
  after(() => s.cleanup());

  /** Makes the twins A (library) and B (qemu-io) as the configuration says. */
  async function makeTwins(c: Config, dir: string): Promise<{ a: string; b: string; backing?: string }> {
    const a = join(dir, 'a.qcow2');
    const b = join(dir, 'b.qcow2');
    let backing: string | undefined;
    if (c.withBacking) {
      backing = join(dir, 'backing.qcow2');
      createQcow2(backing, { size: c.size - (c.size % 65536) - 65536 * 3, clusterSize: 64 * KiB }); // shorter than the twins
      qemuApply(backing, [
        { kind: 'writeFile', offset: 0, length: Math.floor(c.size / 2), source: patternFiles[3]! },
        { kind: 'zero', offset: c.clusterSize * 3, length: c.clusterSize * 5 },
      ]);
    }
    if (c.compressed) {
      const plain = join(dir, 'plain.qcow2');
      createQcow2(plain, { size: c.size, clusterSize: c.clusterSize });
      qemuApply(plain, [
        { kind: 'writeFile', offset: 0, length: Math.floor(c.size * 0.75), source: patternFiles[3]! },
        { kind: 'write', offset: MiB, length: MiB, pattern: 0x3c },
      ]);
      qemuImg('convert', '-c', '-f', 'qcow2', '-O', 'qcow2', '-o', `cluster_size=${c.clusterSize}`, plain, b);
      copyFileSync(b, a);
      return { a, b };
    }
    if (c.withSnapshot) {
      createQcow2(b, { size: c.size, clusterSize: c.clusterSize, compat: '1.1' });
      qemuApply(b, [
        { kind: 'writeFile', offset: 0, length: Math.floor(c.size / 2), source: patternFiles[2]! },
        { kind: 'zero', offset: MiB, length: MiB },
      ]);
      qemuImg('snapshot', '-c', 'before', b);
      copyFileSync(b, a);
      return { a, b };
    }
    const spec = {
      size: c.size,
      clusterSize: c.clusterSize,
      compat: c.version === 3 ? ('1.1' as const) : ('0.10' as const),
      ...(c.extendedL2 ? { extendedL2: true } : {}),
      ...(backing ? { backing, backingFormat: 'qcow2' as const } : {}),
    };
    createQcow2(b, spec);
    if (c.createdByLibrary) {
      await Qcow2Image.create(a, {
        size: c.size,
        clusterSize: c.clusterSize,
        version: c.version,
        ...(c.extendedL2 ? { extendedL2: true } : {}),
        ...(backing ? { backingFile: backing, backingFormat: 'qcow2' as const } : {}),
      });
    } else {
      createQcow2(a, spec);
    }
    return backing ? { a, b, backing } : { a, b };
  }

  async function libraryApply(path: string, ops: readonly GuestOp[], ordering: Config['ordering']): Promise<void> {
    const img = await Qcow2Image.open(path, { writable: true, writeOrdering: ordering });
    try {
      for (const op of ops) {
        if (op.kind === 'zero') await img.writeZeroes(op.offset, op.length);
        else await img.write(opBytes(op, sources), op.offset);
      }
    } finally {
      await img.close();
    }
  }

  /** null when A reads like B and checks clean, else what is wrong. */
  async function judge(a: string, b: string, dir: string): Promise<string | null> {
    const check = qemuCheck(a);
    if (check.status !== 0 || check.corruptions || check.leaks || check.checkErrors) {
      return `qemu-img check A: ${check.corruptions} corruptions, ${check.leaks} leaks, ${check.checkErrors} errors (${check.raw.trim()})`;
    }
    if (!qemuSame(a, b)) {
      const ra = join(dir, 'a.raw');
      const rb = join(dir, 'b.raw');
      convertToRaw(a, ra);
      convertToRaw(b, rb);
      const ba = readFileSync(ra);
      const bb = readFileSync(rb);
      const at = firstDifference(ba, bb);
      return `A and B differ first at guest offset ${at}: A reads 0x${ba[at]?.toString(16)}, B (qemu-io) reads 0x${bb[at]?.toString(16)}`;
    }
    return null;
  }

  /** Runs ops[0, n) on fresh twins; returns the problem, or null. */
  async function trial(c: Config, ops: readonly GuestOp[], label: string): Promise<string | null> {
    const dir = mkdtempSync(join(s.dir, `${label}-`));
    const { a, b } = await makeTwins(c, dir);
    try {
      await libraryApply(a, ops, c.ordering);
    } catch (e) {
      return `the library threw: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
    }
    qemuApply(b, ops);
    return judge(a, b, dir);
  }

  /** The shortest prefix of ops that still fails (bisection), written to a folder that outlives the suite. */
  async function minimise(c: Config, ops: readonly GuestOp[], failingLength: number): Promise<string> {
    let good = 0;
    let bad = failingLength;
    while (bad - good > 1) {
      const mid = Math.floor((good + bad) / 2);
      if ((await trial(c, ops.slice(0, mid), 'bisect')) === null) good = mid;
      else bad = mid;
    }
    const prefix = ops.slice(0, bad);
    const problem = (await trial(c, prefix, 'minimal')) ?? 'not reproducible in isolation';
    const keep = mkdtempSync(join(tmpdir(), 'vmsnap-diff-failure-'));
    writeFileSync(join(keep, 'ops.json'), JSON.stringify({ config: c, seed, ops: prefix }, null, 1));
    writeFileSync(join(keep, 'qemu-io-commands.txt'), prefix.map(qemuIoCommand).join('\n') + '\n');
    for (const [file, bytes] of sources) writeFileSync(join(keep, file.split('/').pop()!), bytes);
    return (
      `shortest failing prefix: ${bad} operations (${problem}); the last one is ${qemuIoCommand(prefix[bad - 1]!)}; ` +
      `previous: ${prefix.slice(Math.max(0, bad - 4), bad - 1).map(qemuIoCommand).join(' | ')}; all saved in ${keep}`
    );
  }

  CONFIGS.forEach((c, index) => {
    it(`${c.name}: ${c.ops} random operations read the same as qemu-io's and check clean`, async () => {
      const rng = new XorShift(seed + index * 0x9e3779b1);
      const ops = generateOps(rng, c, patternFiles);
      const dir = mkdtempSync(join(s.dir, `config${index}-`));
      const { a, b, backing } = await makeTwins(c, dir);
      const backingSha = backing ? sha256File(backing) : null;
      const roundSize = Math.ceil(ops.length / ROUNDS);
      for (let r = 0; r < ROUNDS; r++) {
        const round = ops.slice(r * roundSize, (r + 1) * roundSize);
        let problem: string | null;
        try {
          await libraryApply(a, round, c.ordering); // closed and reopened between rounds
          qemuApply(b, round);
          problem = await judge(a, b, dir);
        } catch (e) {
          problem = `the library threw: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`;
        }
        if (problem !== null) {
          const done = Math.min(ops.length, (r + 1) * roundSize);
          const detail = await minimise(c, ops, done);
          assert.fail(`[seed ${seed}, config "${c.name}"] after ${done} operations: ${problem}\n  ${detail}`);
        }
      }
      // The library reads back its own image as QEMU reads the twin.
      const rb = join(dir, 'b-final.raw');
      convertToRaw(b, rb);
      const expected = await readFileAt(rb, 0, c.size);
      const img = await Qcow2Image.open(a);
      try {
        const got = Buffer.alloc(c.size);
        await img.read(got, 0);
        const at = firstDifference(got, expected);
        assert.equal(at, c.size, `[seed ${seed}] the library reads its own image differently from QEMU at guest offset ${at}`);
        // And maps it as qemu-img map does.
        const ours = libraryMap(await chainMap(img, 0, c.size));
        const theirs = qemuMap(a);
        assert.deepEqual(ours, theirs, `[seed ${seed}] chainMap of A\n  library: ${describeMap(ours)}\n  qemu:    ${describeMap(theirs)}`);
      } finally {
        await img.close();
      }
      if (backing) assert.equal(sha256File(backing), backingSha, `[seed ${seed}] the shared backing file changed`);
    });
  });
});
