// Every image the library creates or writes must pass `qemu-img check` with no errors and no leaks, have the
// dirty bit clear, and read back in QEMU exactly as written. Backing files are never touched.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chainMap } from '../../../src/engine/qcow2/chain';
import type { Disk } from '../../../src/engine/qcow2/disk';
import { isImageError } from '../../../src/engine/qcow2/errors';
import { Qcow2Image } from '../../../src/engine/qcow2/image';
import {
  compareWithRaw,
  convertToRaw,
  createQcow2,
  describeError,
  DiskModel,
  expectImageError,
  type GuestOp,
  KiB,
  libraryMap,
  MiB,
  opBytes,
  outcome,
  qemuApply,
  qemuImgIn,
  qemuMap,
  readFileAt,
  killIsolated,
  readRawHeader,
  runIsolated,
  XorShift,
} from '../../support/fixtures';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, qemuSame, requireTool, scratchDir, sha256File } from '../../support/qemu';

type Scratch = ReturnType<typeof scratchDir>;

/** qemu-img check finds nothing (no corruption, no leak, no check error) and the dirty bit is clear. */
function expectClean(path: string): void {
  const c = qemuCheck(path);
  assert.ok(
    c.status === 0 && c.corruptions === 0 && c.leaks === 0 && c.checkErrors === 0,
    `qemu-img check ${path}: status ${c.status}, ${c.corruptions} corruptions, ${c.leaks} leaks, ${c.checkErrors} check errors\n` +
      `${c.raw}\n${spawnSync('qemu-img', ['check', path], { encoding: 'utf8' }).stdout}`,
  );
  assert.equal(qemuInfo(path)['dirty-flag'], false, `${path}: the dirty bit is still set after close`);
}

/** QEMU reads the image exactly as the model says. */
function expectContent(path: string, model: DiskModel, scratch: Scratch, what = ''): void {
  const raw = scratch.path(`expected-${Math.random().toString(36).slice(2)}.raw`);
  model.save(raw);
  const diff = compareWithRaw(path, raw);
  assert.equal(diff, null, `${path}${what ? ` (${what})` : ''}: qemu-img compare with the expected content: ${diff}`);
}

/** Applies operations through the library (writes and zero writes; discards become zero writes). */
async function libraryApply(img: Qcow2Image, ops: readonly GuestOp[], model?: DiskModel, sources?: ReadonlyMap<string, Buffer>): Promise<void> {
  for (const op of ops) {
    if (op.kind === 'zero' || op.kind === 'discard') await img.writeZeroes(op.offset, op.length);
    else await img.write(opBytes(op, sources), op.offset);
    model?.apply(op, sources);
  }
}

async function readAll(disk: Disk): Promise<Buffer> {
  const buf = Buffer.alloc(disk.size);
  for (let at = 0; at < disk.size; at += 4 * MiB) {
    const part = buf.subarray(at, Math.min(disk.size, at + 4 * MiB));
    await disk.read(part, at);
  }
  return buf;
}

/** A set of writes that exercises a cluster size: full clusters, partial clusters, across clusters, the last byte. */
function writesFor(size: number, cluster: number): GuestOp[] {
  const ops: GuestOp[] = [
    { kind: 'write', offset: 0, length: cluster, pattern: 0x11 },
    { kind: 'write', offset: cluster * 2 + 7, length: 100, pattern: 0x22 },
    { kind: 'write', offset: cluster * 4 - 3, length: cluster + 6, pattern: 0x33 },
    { kind: 'write', offset: size - 1, length: 1, pattern: 0x44 },
    { kind: 'zero', offset: cluster * 4, length: cluster },
    { kind: 'zero', offset: 5, length: 10 },
  ];
  return ops.filter((op) => op.offset + op.length <= size);
}

describe('qcow2 write interop: what the library writes, qemu-img checks clean and reads back', function () {
  this.timeout(60_000);
  let s: Scratch;

  before(() => {
    requireTool('qemu-img');
    requireTool('qemu-io');
    s = scratchDir('vmsnap-write-');
  });
  after(() => s.cleanup());

  describe('create', () => {
    const cases: { cluster: number; version: 2 | 3 }[] = [];
    for (let bits = 9; bits <= 21; bits++) cases.push({ cluster: 2 ** bits, version: 3 });
    for (const cluster of [512, 4 * KiB, 64 * KiB, 2 * MiB]) cases.push({ cluster, version: 2 });
    for (const { cluster, version } of cases) {
      it(`creates a ${cluster}-byte-cluster version ${version} image that qemu-img checks clean and reads as written`, async () => {
        const size = Math.max(4 * MiB, cluster * 6) + 1536;
        const path = s.path(`new-${cluster}-v${version}.qcow2`);
        await Qcow2Image.create(path, { size, clusterSize: cluster, version });
        expectClean(path);
        const info = qemuInfo(path);
        assert.equal(info['virtual-size'], size);
        assert.equal(info['cluster-size'], cluster);
        assert.equal(info['format-specific']?.data?.compat, version === 3 ? '1.1' : '0.10');
        assert.equal(info['backing-filename'], undefined);

        const model = new DiskModel(size);
        const img = await Qcow2Image.open(path, { writable: true });
        try {
          assert.equal(img.readOnly, false);
          await libraryApply(img, writesFor(size, cluster), model);
        } finally {
          await img.close();
        }
        expectClean(path);
        expectContent(path, model, s);
        qemuIo(path, [`read -P 0x11 16 ${cluster - 16}`, `read -P 0x22 ${cluster * 2 + 7} 100`, `read -P 0 ${cluster * 4} ${cluster}`]);
      });
    }

    for (const cluster of [16 * KiB, 64 * KiB, 2 * MiB]) {
      it(`creates an extended-L2 image with ${cluster}-byte clusters and writes subclusters`, async () => {
        const size = cluster * 8;
        const sub = cluster / 32;
        const path = s.path(`new-xl2-${cluster}.qcow2`);
        await Qcow2Image.create(path, { size, clusterSize: cluster, extendedL2: true });
        const model = new DiskModel(size);
        const img = await Qcow2Image.open(path, { writable: true });
        try {
          await libraryApply(img, [
            { kind: 'write', offset: sub, length: sub, pattern: 0x51 },
            { kind: 'write', offset: cluster + 100, length: sub * 3, pattern: 0x52 },
            { kind: 'zero', offset: cluster + sub, length: sub },
            { kind: 'write', offset: cluster * 3 - sub, length: sub * 2, pattern: 0x53 },
            { kind: 'zero', offset: cluster * 5, length: cluster },
          ], model);
        } finally {
          await img.close();
        }
        expectClean(path);
        assert.equal(qemuInfo(path)['format-specific']?.data?.['extended-l2'], true);
        expectContent(path, model, s);
      });
    }

    it('refuses cluster sizes QEMU does not allow and extended L2 on version 2 with INVALID_ARGUMENT', async () => {
      await expectImageError(() => Qcow2Image.create(s.path('bad1.qcow2'), { size: MiB, clusterSize: 256 }), 'INVALID_ARGUMENT', 'cluster size 256');
      await expectImageError(() => Qcow2Image.create(s.path('bad2.qcow2'), { size: MiB, clusterSize: 4 * MiB }), 'INVALID_ARGUMENT', 'cluster size 4 MiB');
      await expectImageError(() => Qcow2Image.create(s.path('bad3.qcow2'), { size: MiB, clusterSize: 3000 }), 'INVALID_ARGUMENT', 'cluster size 3000');
      await expectImageError(() => Qcow2Image.create(s.path('bad4.qcow2'), { size: MiB, version: 2, extendedL2: true }), 'INVALID_ARGUMENT', 'extended L2 on v2');
    });
  });

  describe('backing files', () => {
    let base: string;
    let baseRaw: string;
    let baseBytes: Buffer;
    let baseSha: string;
    let baseRawSha: string;
    let pattern: Buffer;
    const sources = new Map<string, Buffer>();

    before(() => {
      mkdirSync(s.path('base'));
      mkdirSync(s.path('vm'));
      mkdirSync(s.path('other'));
      pattern = new XorShift(11).bytes(4093);
      const patternFile = s.path('pattern.bin');
      writeFileSync(patternFile, pattern);
      sources.set(patternFile, pattern);
      base = s.path('base/base.qcow2');
      createQcow2(base, { size: 8 * MiB });
      qemuApply(base, [
        { kind: 'writeFile', offset: 0, length: 6 * MiB, source: patternFile },
        { kind: 'zero', offset: 2 * MiB, length: 128 * KiB },
      ]);
      baseRaw = s.path('base/base.raw');
      convertToRaw(base, baseRaw);
      baseBytes = readFileSync(baseRaw);
      baseSha = sha256File(base);
      baseRawSha = sha256File(baseRaw);
    });

    afterEach(() => {
      assert.equal(sha256File(base), baseSha, 'the qcow2 backing file must be byte-for-byte unchanged');
      assert.equal(sha256File(baseRaw), baseRawSha, 'the raw backing file must be byte-for-byte unchanged');
    });

    it('stores the backing file relative to the overlay, with its format, and QEMU opens it from any folder', async () => {
      const overlay = s.path('vm/disk.qcow2');
      await Qcow2Image.create(overlay, { backingFile: base });
      const info = qemuInfo(overlay);
      assert.equal(info['backing-filename'], '../base/base.qcow2', 'the stored backing path is relative to the overlay');
      assert.equal(info['backing-filename-format'], 'qcow2');
      assert.equal(info['virtual-size'], 8 * MiB, 'the size defaults to the backing file size');
      expectClean(overlay);
      const fromRoot = qemuImgIn('/', 'info', '-U', '--output=json', overlay);
      assert.equal(fromRoot.status, 0, fromRoot.stderr);
      assert.equal(resolve((JSON.parse(fromRoot.stdout) as { 'full-backing-filename': string })['full-backing-filename']), base);
      const cmp = qemuImgIn(s.path('other'), 'compare', '-U', overlay, base);
      assert.equal(cmp.status, 0, `qemu-img compare from another folder: ${cmp.stdout}${cmp.stderr}`);

      const rawOverlay = s.path('vm/over-raw.qcow2');
      await Qcow2Image.create(rawOverlay, { backingFile: baseRaw, size: 10 * MiB });
      const rawInfo = qemuInfo(rawOverlay);
      assert.equal(rawInfo['backing-filename'], '../base/base.raw');
      assert.equal(rawInfo['backing-filename-format'], 'raw', 'the backing format is detected as raw');
      expectClean(rawOverlay);
      const model = new DiskModel(10 * MiB, baseBytes);
      expectContent(rawOverlay, model, s, 'larger than its raw backing file');
    });

    for (const [cluster, version, backingIsRaw] of [[64 * KiB, 3, false], [4 * KiB, 2, false], [2 * MiB, 3, true], [512, 3, false]] as const) {
      it(`writes partial clusters over a backing file (${cluster}-byte clusters, v${version}${backingIsRaw ? ', raw backing' : ''}): the rest comes from the backing file`, async () => {
        const overlay = s.path(`vm/partial-${cluster}-${version}.qcow2`);
        await Qcow2Image.create(overlay, { backingFile: backingIsRaw ? baseRaw : base, clusterSize: cluster, version });
        const model = new DiskModel(8 * MiB, baseBytes);
        const ops: GuestOp[] = [
          { kind: 'write', offset: 64 * KiB + 4 * KiB, length: 4 * KiB, pattern: 0x61 },
          { kind: 'write', offset: 3 * MiB + 1, length: 1, pattern: 0x62 },
          { kind: 'write', offset: 4 * MiB - 1000, length: 3000, pattern: 0x63 },
          { kind: 'write', offset: 2 * MiB + 100, length: 200, pattern: 0x64 }, // over the backing's zero clusters
          { kind: 'write', offset: 7 * MiB + 12345, length: 70_000, pattern: 0x65 }, // past the backing's data
          { kind: 'write', offset: 64 * KiB + 6 * KiB, length: 100, pattern: 0x66 }, // again into an allocated cluster
        ];
        const img = await Qcow2Image.open(overlay, { writable: true });
        try {
          await libraryApply(img, ops, model);
          // The library reads its own writes back through the chain.
          assert.ok((await readAll(img)).equals(model.bytes), 'the library reads back what it wrote');
        } finally {
          await img.close();
        }
        expectClean(overlay);
        expectContent(overlay, model, s);
      });
    }

    it('a writable open without its backing chain (backing: false) refuses to write or still copies on write from the backing file', async () => {
      const overlay = s.path('vm/nobacking.qcow2');
      await Qcow2Image.create(overlay, { backingFile: base });
      const sha = sha256File(overlay);
      const model = new DiskModel(8 * MiB, baseBytes);
      const opened = await outcome(() => Qcow2Image.open(overlay, { writable: true, backing: false }));
      if (!opened.ok) {
        assert.ok(isImageError(opened.error), `refusal must be an ImageError: ${describeError(opened.error)}`);
        assert.equal(sha256File(overlay), sha);
        return;
      }
      const img = opened.value;
      try {
        const w = await outcome(() => libraryApply(img, [{ kind: 'write', offset: 1000, length: 100, pattern: 0x6a }], model));
        if (!w.ok) assert.ok(isImageError(w.error), `refusal must be an ImageError: ${describeError(w.error)}`);
      } finally {
        await img.close();
      }
      expectClean(overlay);
      // A partial-cluster write must not replace the rest of the cluster's backing data with zeros.
      expectContent(overlay, model, s, 'the chain after a partial write made without the backing chain open');
    });

    it('reads and writes an overlay smaller than its backing file', async () => {
      const overlay = s.path('vm/smaller.qcow2');
      const size = MiB - 1536;
      await Qcow2Image.create(overlay, { backingFile: base, size });
      const model = new DiskModel(size, baseBytes);
      const img = await Qcow2Image.open(overlay, { writable: true });
      try {
        assert.equal(img.size, size);
        assert.ok((await readAll(img)).equals(model.bytes), 'reads the backing file up to the overlay size');
        await libraryApply(img, [{ kind: 'write', offset: size - 100, length: 100, pattern: 0x6b }], model);
      } finally {
        await img.close();
      }
      expectClean(overlay);
      expectContent(overlay, model, s);
    });

    it('writes from and reads into Buffers that are views into larger buffers', async () => {
      const path = s.path('vm/views.qcow2');
      await Qcow2Image.create(path, { size: 4 * MiB });
      const big = new XorShift(5).bytes(10_000);
      const model = new DiskModel(4 * MiB);
      model.set(70_000, big.subarray(1000, 5000));
      const img = await Qcow2Image.open(path, { writable: true });
      try {
        await img.write(big.subarray(1000, 5000), 70_000);
        const into = Buffer.alloc(10_000, 0xee);
        await img.read(into.subarray(2000, 6000), 70_000);
        assert.ok(into.subarray(2000, 6000).equals(big.subarray(1000, 5000)), 'read into a view');
        assert.equal(into[1999], 0xee, 'nothing written before the view');
        assert.equal(into[6000], 0xee, 'nothing written after the view');
      } finally {
        await img.close();
      }
      expectClean(path);
      expectContent(path, model, s);
    });

    it('makes zero writes hide the backing file: zero clusters in v3, real zeros in v2', async () => {
      for (const version of [3, 2] as const) {
        const overlay = s.path(`vm/zero-v${version}.qcow2`);
        await Qcow2Image.create(overlay, { backingFile: base, version });
        const model = new DiskModel(8 * MiB, baseBytes);
        const img = await Qcow2Image.open(overlay, { writable: true });
        try {
          await libraryApply(img, [
            { kind: 'zero', offset: MiB, length: MiB }, // whole clusters
            { kind: 'zero', offset: 3 * MiB + 100, length: 1000 }, // inside one cluster
            { kind: 'write', offset: 4 * MiB, length: 128 * KiB, pattern: 0x71 },
            { kind: 'zero', offset: 4 * MiB + 64 * KiB, length: 64 * KiB }, // over our own data
          ], model);
        } finally {
          await img.close();
        }
        expectClean(overlay);
        expectContent(overlay, model, s, `v${version}`);
        if (version === 3) {
          const zeroAtTop = qemuMap(overlay).filter((r) => r.kind === 'zero' && r.depth === 0);
          assert.ok(
            zeroAtTop.some((r) => r.offset <= MiB && r.offset + r.length >= 2 * MiB),
            `a whole-cluster zero write on v3 must make zero clusters in the overlay, map: ${JSON.stringify(qemuMap(overlay))}`,
          );
        }
      }
    });

    it('writes zeros without a backing file without allocating data clusters (v3)', async () => {
      const path = s.path('vm/zero-nobacking.qcow2');
      await Qcow2Image.create(path, { size: 64 * MiB });
      const before = statSync(path).size;
      const img = await Qcow2Image.open(path, { writable: true });
      try {
        await img.writeZeroes(0, 64 * MiB);
      } finally {
        await img.close();
      }
      expectClean(path);
      assert.ok(statSync(path).size - before <= 2 * MiB, `zeroing 64 MiB grew the file from ${before} to ${statSync(path).size} bytes`);
      expectContent(path, new DiskModel(64 * MiB), s);
    });

    it('setBacking points an overlay at another backing file (stored relative) or at none', async () => {
      const overlay = s.path('vm/rebase.qcow2');
      await Qcow2Image.create(overlay, { backingFile: base });
      const model = new DiskModel(8 * MiB, baseBytes);
      let img = await Qcow2Image.open(overlay, { writable: true });
      try {
        await libraryApply(img, [{ kind: 'write', offset: MiB + 5, length: 70_000, pattern: 0x81 }], model);
      } finally {
        await img.close();
      }
      // A copy of the backing file in another folder: the overlay reads the same over it.
      const copy = s.path('other/copy.qcow2');
      qemuImg('convert', '-f', 'qcow2', '-O', 'qcow2', base, copy);
      img = await Qcow2Image.open(overlay, { writable: true });
      try {
        await img.setBacking(copy, 'qcow2');
      } finally {
        await img.close();
      }
      let info = qemuInfo(overlay);
      assert.equal(info['backing-filename'], '../other/copy.qcow2');
      assert.equal(info['backing-filename-format'], 'qcow2');
      expectClean(overlay);
      expectContent(overlay, model, s, 'rebased onto the copy');

      // Onto the raw conversion, format given.
      img = await Qcow2Image.open(overlay, { writable: true });
      try {
        await img.setBacking(baseRaw, 'raw');
      } finally {
        await img.close();
      }
      info = qemuInfo(overlay);
      assert.equal(info['backing-filename'], '../base/base.raw');
      assert.equal(info['backing-filename-format'], 'raw');
      expectClean(overlay);
      expectContent(overlay, model, s, 'rebased onto the raw file');

      // No backing file: only the overlay's own clusters remain.
      img = await Qcow2Image.open(overlay, { writable: true });
      try {
        await img.setBacking(null);
      } finally {
        await img.close();
      }
      info = qemuInfo(overlay);
      assert.equal(info['backing-filename'], undefined);
      assert.equal(info['backing-filename-format'], undefined);
      expectClean(overlay);
      const alone = s.path('vm/rebase-alone.raw');
      qemuImg('convert', '-f', 'qcow2', '-O', 'raw', overlay, alone);
      const aloneBytes = await readFileAt(alone, 0, 8 * MiB);
      // The written clusters (64 KiB aligned, copied on write) hold the model's bytes; the rest reads zeros.
      assert.ok(aloneBytes.subarray(MiB, MiB + 128 * KiB).equals(model.bytes.subarray(MiB, MiB + 128 * KiB)));
      assert.ok(aloneBytes.subarray(0, MiB).equals(Buffer.alloc(MiB)));
      assert.ok(aloneBytes.subarray(2 * MiB).equals(Buffer.alloc(6 * MiB)));
    });

    it('makeEmpty frees every cluster of an overlay so it reads through to its backing file again', async () => {
      const overlay = s.path('vm/empty.qcow2');
      await Qcow2Image.create(overlay, { backingFile: base, clusterSize: 4 * KiB });
      const img = await Qcow2Image.open(overlay, { writable: true });
      try {
        const rng = new XorShift(3);
        for (let i = 0; i < 200; i++) {
          const offset = rng.below(8 * MiB - 70_000);
          if (i % 5 === 0) await img.writeZeroes(offset, rng.between(1, 70_000));
          else await img.write(Buffer.alloc(rng.between(1, 70_000), i), offset);
        }
        await img.makeEmpty();
        assert.ok((await readAll(img)).equals(baseBytes), 'after makeEmpty the library reads the backing file');
      } finally {
        await img.close();
      }
      expectClean(overlay);
      assert.ok(qemuSame(overlay, base), 'after makeEmpty QEMU reads the backing file through the overlay');
      const top = qemuMap(overlay).filter((r) => r.depth === 0);
      assert.deepEqual(top, [], 'no range is served by the emptied overlay itself');
      assert.equal(qemuInfo(overlay)['backing-filename'], '../base/base.qcow2', 'makeEmpty keeps the backing file');
    });
  });

  describe('layout', () => {
    it('writes spanning L2 tables (512-byte and 4 KiB clusters)', async () => {
      for (const cluster of [512, 4 * KiB]) {
        const l2Span = (cluster / 8) * cluster;
        const size = l2Span * 5;
        const path = s.path(`span-${cluster}.qcow2`);
        await Qcow2Image.create(path, { size, clusterSize: cluster });
        const model = new DiskModel(size);
        const img = await Qcow2Image.open(path, { writable: true });
        try {
          await libraryApply(img, [
            { kind: 'write', offset: l2Span - 100, length: 200, pattern: 0x91 },
            { kind: 'write', offset: l2Span * 2 - cluster * 3 - 1, length: l2Span * 2 + 1000, pattern: 0x92 },
            { kind: 'zero', offset: l2Span * 2 - 7, length: l2Span + 14 },
          ], model);
        } finally {
          await img.close();
        }
        expectClean(path);
        expectContent(path, model, s, `${cluster}-byte clusters`);
      }
    });

    it('grows the refcount table when the file outgrows it (512-byte clusters, 10 MiB of data)', async () => {
      const path = s.path('grow.qcow2');
      const size = 16 * MiB;
      await Qcow2Image.create(path, { size, clusterSize: 512 });
      const before = readRawHeader(path);
      const coverage = before.refcountTableClusters * (512 / 8) * ((512 * 8) / 16) * 512;
      const model = new DiskModel(size);
      const img = await Qcow2Image.open(path, { writable: true });
      try {
        const rng = new XorShift(21);
        for (let at = 0; at < 10 * MiB; at += 64 * KiB) {
          const chunk = rng.bytes(64);
          const data = Buffer.alloc(64 * KiB);
          for (let i = 0; i < data.length; i += 64) chunk.copy(data, i);
          await img.write(data, at + 3 * MiB);
          model.set(at + 3 * MiB, data);
        }
      } finally {
        await img.close();
      }
      const after = readRawHeader(path);
      assert.ok(statSync(path).size > coverage, `the test must outgrow the first refcount table (${coverage} bytes of host file)`);
      assert.ok(
        after.refcountTableClusters > before.refcountTableClusters,
        `refcount table: ${before.refcountTableClusters} clusters before, ${after.refcountTableClusters} after`,
      );
      expectClean(path);
      expectContent(path, model, s);
    });
  });

  describe('images made by qemu-img', () => {
    it('copies on write into an image with internal snapshots: the snapshots read as before and check clean', async () => {
      const path = s.path('snap.qcow2');
      createQcow2(path, { size: 8 * MiB, clusterSize: 64 * KiB });
      const ops: GuestOp[] = [
        { kind: 'write', offset: 0, length: 2 * MiB, pattern: 0xa1 },
        { kind: 'write', offset: 5 * MiB, length: 100 * KiB, pattern: 0xa2 },
      ];
      qemuApply(path, ops);
      const model = new DiskModel(8 * MiB);
      for (const op of ops) model.apply(op);
      qemuImg('snapshot', '-c', 'one', path);
      const one = s.path('snap-one.raw');
      convertToRaw(path, one, 'one');

      const img = await Qcow2Image.open(path, { writable: true });
      try {
        await libraryApply(img, [
          { kind: 'write', offset: 64 * KiB + 10, length: 100, pattern: 0xb1 }, // partial write into a shared cluster
          { kind: 'write', offset: MiB, length: 128 * KiB, pattern: 0xb2 }, // whole shared clusters
          { kind: 'zero', offset: 5 * MiB, length: 64 * KiB }, // zeroing a shared cluster
          { kind: 'write', offset: 7 * MiB, length: 4 * KiB, pattern: 0xb3 }, // a new cluster
          { kind: 'write', offset: 64 * KiB + 20, length: 100, pattern: 0xb4 }, // the now private copy again
        ], model);
      } finally {
        await img.close();
      }
      expectClean(path);
      expectContent(path, model, s, 'current state');
      const oneAfter = s.path('snap-one-after.raw');
      convertToRaw(path, oneAfter, 'one');
      assert.equal(sha256File(oneAfter), sha256File(one), 'the internal snapshot reads as it did before the writes');

      // QEMU can take and drop snapshots on top of our writes without finding refcount errors.
      qemuImg('snapshot', '-c', 'two', path);
      const img2 = await Qcow2Image.open(path, { writable: true });
      try {
        await libraryApply(img2, [{ kind: 'write', offset: MiB + 4 * KiB, length: 4 * KiB, pattern: 0xb5 }], model);
      } finally {
        await img2.close();
      }
      expectClean(path);
      qemuImg('snapshot', '-d', 'one', path);
      expectClean(path);
      qemuImg('snapshot', '-d', 'two', path);
      expectClean(path);
      expectContent(path, model, s, 'after deleting both snapshots');
    });

    it('writes into compressed clusters', async () => {
      const plain = s.path('to-compress.qcow2');
      createQcow2(plain, { size: 4 * MiB });
      const patternFile = s.path('pattern2.bin');
      writeFileSync(patternFile, new XorShift(12).bytes(1000));
      qemuApply(plain, [
        { kind: 'write', offset: 0, length: 2 * MiB, pattern: 0xc1 },
        { kind: 'writeFile', offset: 2 * MiB, length: MiB, source: patternFile },
      ]);
      const packed = s.path('compressed.qcow2');
      qemuImg('convert', '-c', '-f', 'qcow2', '-O', 'qcow2', plain, packed);
      const model = new DiskModel(4 * MiB, await readFileAt(convertedRaw(plain, s), 0, 4 * MiB));
      const img = await Qcow2Image.open(packed, { writable: true });
      try {
        await libraryApply(img, [
          { kind: 'write', offset: 100, length: 10, pattern: 0xd1 },
          { kind: 'write', offset: 2 * MiB + 60 * KiB, length: 10 * KiB, pattern: 0xd2 },
          { kind: 'zero', offset: 128 * KiB, length: 64 * KiB },
          { kind: 'write', offset: 256 * KiB, length: 64 * KiB, pattern: 0xd3 },
        ], model);
      } finally {
        await img.close();
      }
      expectClean(packed);
      expectContent(packed, model, s);
    });

    it('writes into a qemu-made extended-L2 overlay: subclusters it does not write still come from the backing file', async () => {
      const base = s.path('xl2-base.qcow2');
      createQcow2(base, { size: 4 * MiB });
      const patternFile = s.path('pattern3.bin');
      const pattern = new XorShift(13).bytes(777);
      writeFileSync(patternFile, pattern);
      qemuApply(base, [{ kind: 'writeFile', offset: 0, length: 4 * MiB, source: patternFile }]);
      const baseSha = sha256File(base);
      const overlay = s.path('xl2-over.qcow2');
      createQcow2(overlay, { clusterSize: 64 * KiB, extendedL2: true, backing: base, backingFormat: 'qcow2' });
      qemuApply(overlay, [
        { kind: 'write', offset: 8 * KiB, length: 2 * KiB, pattern: 0xe1 },
        { kind: 'zero', offset: 64 * KiB + 4 * KiB, length: 4 * KiB },
      ]);
      const model = new DiskModel(4 * MiB, await readFileAt(convertedRaw(overlay, s), 0, 4 * MiB));
      const img = await Qcow2Image.open(overlay, { writable: true });
      try {
        await libraryApply(img, [
          { kind: 'write', offset: 2 * KiB + 5, length: 100, pattern: 0xe2 }, // a new subcluster in an allocated cluster
          { kind: 'write', offset: 64 * KiB + 5 * KiB, length: 1, pattern: 0xe3 }, // inside a zero subcluster
          { kind: 'write', offset: 256 * KiB + 6 * KiB, length: 2 * KiB, pattern: 0xe4 }, // exactly one subcluster, new cluster
          { kind: 'zero', offset: 512 * KiB + 2 * KiB, length: 4 * KiB }, // zero subclusters over backing data
          { kind: 'write', offset: MiB - 3, length: 6, pattern: 0xe5 },
        ], model);
      } finally {
        await img.close();
      }
      expectClean(overlay);
      expectContent(overlay, model, s);
      assert.equal(sha256File(base), baseSha, 'the backing file is unchanged');
    });

    it('reads a dirty image (lazy refcounts, QEMU killed) correctly read-only and refuses to write to it', async () => {
      const path = s.path('dirty.qcow2');
      createQcow2(path, { size: 4 * MiB, lazyRefcounts: true });
      const r = spawnSync('qemu-io', ['-f', 'qcow2', '-c', 'write -q -P 0x5d 0 1M', '-c', 'abort', path], { cwd: s.dir });
      assert.notEqual(r.status, 0, 'qemu-io abort must kill qemu-io');
      assert.equal(qemuInfo(path)['dirty-flag'], true, 'the fixture is dirty');
      const model = new DiskModel(4 * MiB);
      model.set(0, Buffer.alloc(MiB, 0x5d));
      const sha = sha256File(path);

      const ro = await Qcow2Image.open(path);
      try {
        assert.equal(ro.wasDirty, true);
        assert.ok((await readAll(ro)).equals(model.bytes), 'a dirty image reads correctly read-only');
        await expectImageError(() => ro.write(Buffer.alloc(512), 0), 'READ_ONLY', 'write to an image opened read-only');
      } finally {
        await ro.close();
      }
      // Its refcounts are stale (qemu-img check finds clusters in use with refcount 0): allocating could overwrite data.
      await expectImageError(() => Qcow2Image.open(path, { writable: true }), 'READ_ONLY', 'writable open of a dirty image');
      // The error says what is wrong with the image; each front end says how to repair it.
      await assert.rejects(Qcow2Image.open(path, { writable: true }), (e: unknown) => isImageError(e) && e.condition === 'dirty' && !e.message.includes('vmsnap image'));
      assert.equal(sha256File(path), sha, 'the dirty image is left exactly as it was');
    });
  });

  describe('more layouts made by qemu-img', () => {
    // Every refcount width qcow2 allows; 4 KiB clusters so a few MiB need several refcount blocks. Run in a child
    // process with a time limit: a runaway allocation loop must fail this test, not hang the run.
    for (const [bits, cluster] of [[1, 4096], [2, 4096], [4, 4096], [8, 4096], [32, 4096], [64, 4096], [64, 512], [64, 65536]] as const) {
      it(`writes into an image with ${bits}-bit refcounts (${cluster}-byte clusters) that needs new refcount blocks`, () => {
        const path = s.path(`refcount-${bits}-${cluster}.qcow2`);
        qemuImg('create', '-q', '-f', 'qcow2', '-o', `refcount_bits=${bits},cluster_size=${cluster}`, path, '24M');
        const r = runIsolated(
          `const img = await Qcow2Image.open(${JSON.stringify(path)}, { writable: true });
           await img.write(Buffer.alloc(6000000, 0xa1), 0);
           await img.writeZeroes(65536, 131072);
           await img.write(Buffer.alloc(1000, 0xa2), 20000000);
           await img.close();`,
          10_000,
        );
        assert.ok(
          r.ok,
          r.timedOut
            ? `writing 6 MB did not finish within 10 s; the file had grown to ${statSync(path).size} bytes`
            : `the library failed: ${r.output}`,
        );
        expectClean(path);
        const model = new DiskModel(24 * MiB);
        model.set(0, Buffer.alloc(6_000_000, 0xa1));
        model.set(65536, Buffer.alloc(131072));
        model.set(20_000_000, Buffer.alloc(1000, 0xa2));
        expectContent(path, model, s);
      });
    }

    it('writes at guest offsets past 4 GiB and 1 TiB of a 3 TiB disk (64-bit arithmetic)', async () => {
      const path = s.path('huge.qcow2');
      const size = 3 * 2 ** 40;
      createQcow2(path, { size });
      qemuApply(path, [{ kind: 'write', offset: 2 ** 32 + 65536 * 3, length: 4096, pattern: 0x3c }]);
      const writes: GuestOp[] = [
        { kind: 'write', offset: 2 ** 32 - 1000, length: 2000, pattern: 0x31 }, // across the 4 GiB boundary
        { kind: 'write', offset: 2 ** 40 + 12345, length: 70_000, pattern: 0x32 },
        { kind: 'zero', offset: 2 ** 41, length: 65536 },
        { kind: 'write', offset: size - 4096, length: 4096, pattern: 0x33 },
        { kind: 'write', offset: 2 ** 32 + 65536 * 3 + 100, length: 10, pattern: 0x34 }, // into qemu's cluster
      ];
      const img = await Qcow2Image.open(path, { writable: true });
      try {
        await libraryApply(img, writes);
      } finally {
        await img.close();
      }
      expectClean(path);
      qemuIo(path, [
        `read -P 0 ${2 ** 32 - 1010} 10`,
        `read -P 0x31 ${2 ** 32 - 1000} 2000`,
        `read -P 0x32 ${2 ** 40 + 12345} 70000`,
        `read -P 0 ${2 ** 41} 65536`,
        `read -P 0x33 ${size - 4096} 4096`,
        `read -P 0x3c ${2 ** 32 + 65536 * 3} 100`,
        `read -P 0x34 ${2 ** 32 + 65536 * 3 + 100} 10`,
        `read -P 0x3c ${2 ** 32 + 65536 * 3 + 110} 3986`,
      ]);
      const ours = await Qcow2Image.open(path);
      try {
        const map = libraryMap(await chainMap(ours, 0, size));
        assert.deepEqual(map, qemuMap(path), 'the allocation map of a 3 TiB disk');
      } finally {
        await ours.close();
      }
    });

    for (const prealloc of ['metadata', 'falloc', 'full']) {
      it(`writes into an image made with preallocation=${prealloc}`, async () => {
        const path = s.path(`prealloc-${prealloc}.qcow2`);
        qemuImg('create', '-q', '-f', 'qcow2', '-o', `preallocation=${prealloc}`, path, '8M');
        const model = new DiskModel(8 * MiB);
        const img = await Qcow2Image.open(path, { writable: true });
        try {
          await libraryApply(img, [
            { kind: 'write', offset: 100, length: 1000, pattern: 0x71 },
            { kind: 'write', offset: MiB, length: MiB, pattern: 0x72 },
            { kind: 'zero', offset: 3 * MiB, length: 65536 },
            { kind: 'write', offset: 3 * MiB + 70_000, length: 100, pattern: 0x73 },
          ], model);
        } finally {
          await img.close();
        }
        expectClean(path);
        expectContent(path, model, s);
      });
    }

    it('writes into a clean image with lazy refcounts and leaves it clean', async () => {
      const path = s.path('lazy.qcow2');
      createQcow2(path, { size: 8 * MiB, lazyRefcounts: true });
      const model = new DiskModel(8 * MiB);
      const img = await Qcow2Image.open(path, { writable: true });
      try {
        await libraryApply(img, [{ kind: 'write', offset: 0, length: 2 * MiB, pattern: 0x75 }, { kind: 'write', offset: 5 * MiB + 3, length: 100, pattern: 0x76 }], model);
      } finally {
        await img.close();
      }
      expectClean(path);
      expectContent(path, model, s);
    });

    it('writes into a version 2 image with an internal snapshot (copy on write, no snapshot extra data)', async () => {
      const path = s.path('v2-snap.qcow2');
      createQcow2(path, { size: 8 * MiB, compat: '0.10' });
      qemuApply(path, [{ kind: 'write', offset: 0, length: MiB, pattern: 0x77 }]);
      qemuImg('snapshot', '-c', 's1', path);
      const before = s.path('v2-snap-s1.raw');
      convertToRaw(path, before, 's1');
      const model = new DiskModel(8 * MiB);
      model.set(0, Buffer.alloc(MiB, 0x77));
      const img = await Qcow2Image.open(path, { writable: true });
      try {
        await libraryApply(img, [{ kind: 'write', offset: 100, length: 1000, pattern: 0x78 }, { kind: 'zero', offset: 512 * KiB, length: 64 * KiB }], model);
      } finally {
        await img.close();
      }
      expectClean(path);
      expectContent(path, model, s);
      const after = s.path('v2-snap-s1-after.raw');
      convertToRaw(path, after, 's1');
      assert.equal(sha256File(after), sha256File(before), 'the snapshot reads as before');
    });

    it('copies on write from a raw backing file whose size is not a multiple of 512 (zeros past its end)', async () => {
      const base = s.path('odd.raw');
      writeFileSync(base, Buffer.alloc(1_000_001, 0x42));
      const baseSha = sha256File(base);
      const path = s.path('odd-overlay.qcow2');
      await Qcow2Image.create(path, { backingFile: base, size: 2 * MiB });
      const model = new DiskModel(2 * MiB, Buffer.alloc(1_000_001, 0x42));
      const img = await Qcow2Image.open(path, { writable: true });
      try {
        await libraryApply(img, [{ kind: 'write', offset: 999_990, length: 100, pattern: 0x43 }, { kind: 'write', offset: 1_000_100, length: 10, pattern: 0x44 }], model);
      } finally {
        await img.close();
      }
      expectClean(path);
      expectContent(path, model, s);
      assert.equal(sha256File(base), baseSha);
    });

    it('writes into an image with a persistent dirty bitmap without leaking clusters', async () => {
      const path = s.path('bitmap.qcow2');
      createQcow2(path, { size: 8 * MiB });
      qemuImg('bitmap', '--add', path, 'b0');
      qemuApply(path, [{ kind: 'write', offset: 0, length: 64 * KiB, pattern: 0x79 }]);
      expectClean(path);
      const model = new DiskModel(8 * MiB);
      model.set(0, Buffer.alloc(64 * KiB, 0x79));
      const img = await Qcow2Image.open(path, { writable: true });
      try {
        await libraryApply(img, [{ kind: 'write', offset: MiB, length: 4096, pattern: 0x7a }], model);
      } finally {
        await img.close();
      }
      // The library does not update bitmaps; it must leave them marked inconsistent or drop them, not leak them.
      expectClean(path);
      expectContent(path, model, s);
    });

    it('copies on write into an extended-L2 image with an internal snapshot', async () => {
      const path = s.path('xl2-snap.qcow2');
      createQcow2(path, { size: 4 * MiB, extendedL2: true });
      const ops: GuestOp[] = [
        { kind: 'write', offset: 0, length: MiB, pattern: 0x81 },
        { kind: 'zero', offset: 2 * MiB, length: 4 * KiB },
        { kind: 'write', offset: 2 * MiB + 8 * KiB, length: 2 * KiB, pattern: 0x82 },
      ];
      qemuApply(path, ops);
      const model = new DiskModel(4 * MiB);
      for (const op of ops) model.apply(op);
      qemuImg('snapshot', '-c', 's', path);
      const before = s.path('xl2-snap-s.raw');
      convertToRaw(path, before, 's');
      const img = await Qcow2Image.open(path, { writable: true });
      try {
        await libraryApply(img, [
          { kind: 'write', offset: 5000, length: 100, pattern: 0x83 },
          { kind: 'zero', offset: 64 * KiB + 2 * KiB, length: 2 * KiB },
          { kind: 'write', offset: 2 * MiB + 100, length: 10, pattern: 0x84 },
        ], model);
      } finally {
        await img.close();
      }
      expectClean(path);
      expectContent(path, model, s);
      const after = s.path('xl2-snap-s-after.raw');
      convertToRaw(path, after, 's');
      assert.equal(sha256File(after), sha256File(before), 'the snapshot reads as before');
    });

    it('makeEmpty refuses an image with internal snapshots (they would be lost) and leaves it as it was', async () => {
      const path = s.path('empty-snap.qcow2');
      createQcow2(path, { size: 4 * MiB });
      qemuApply(path, [{ kind: 'write', offset: 0, length: MiB, pattern: 0x85 }]);
      qemuImg('snapshot', '-c', 's', path);
      const sha = sha256File(path);
      const img = await Qcow2Image.open(path, { writable: true });
      try {
        await expectImageError(() => img.makeEmpty(), 'INVALID_ARGUMENT', 'makeEmpty with internal snapshots');
      } finally {
        await img.close();
      }
      assert.equal(sha256File(path), sha);
    });

    it('makeEmpty on version 2 and extended-L2 overlays', async () => {
      const base = s.path('empty-base.qcow2');
      createQcow2(base, { size: 4 * MiB });
      qemuApply(base, [{ kind: 'write', offset: 0, length: 4 * MiB, pattern: 0x86 }]);
      for (const spec of [{ compat: '0.10' as const }, { extendedL2: true }]) {
        const path = s.path(`empty-${spec.compat ?? 'xl2'}.qcow2`);
        createQcow2(path, { ...spec, backing: base, backingFormat: 'qcow2' });
        qemuApply(path, [{ kind: 'write', offset: 0, length: 5000, pattern: 0x87 }, { kind: 'zero', offset: MiB, length: 64 * KiB }]);
        const img = await Qcow2Image.open(path, { writable: true });
        try {
          await img.makeEmpty();
        } finally {
          await img.close();
        }
        expectClean(path);
        assert.ok(qemuSame(path, base), `${path} reads as its backing file after makeEmpty`);
      }
    });

    it('refuses a backing name that does not fit the header cluster with INVALID_ARGUMENT and changes nothing', async () => {
      const path = s.path('short-header.qcow2');
      createQcow2(path, { size: 4 * MiB, clusterSize: 512 });
      // A 400-byte relative name, in folders because one file name may not exceed 255 bytes.
      const folder = s.path(`${'d'.repeat(130)}/${'e'.repeat(130)}`);
      mkdirSync(folder, { recursive: true });
      const long = join(folder, `${'x'.repeat(130)}.qcow2`);
      createQcow2(long, { size: 4 * MiB });
      const sha = sha256File(path);
      const img = await Qcow2Image.open(path, { writable: true });
      try {
        await expectImageError(() => img.setBacking(long, 'qcow2'), 'INVALID_ARGUMENT', 'setBacking with a 400-byte name');
      } finally {
        await img.close();
      }
      assert.equal(sha256File(path), sha);
      expectClean(path);
    });

    it('serialises concurrent writes, zero writes and reads in call order', async () => {
      const path = s.path('concurrent.qcow2');
      await Qcow2Image.create(path, { size: 4 * MiB, clusterSize: 4 * KiB });
      const model = new DiskModel(4 * MiB);
      const rng = new XorShift(77);
      const img = await Qcow2Image.open(path, { writable: true });
      try {
        const pending: Promise<unknown>[] = [];
        for (let i = 0; i < 300; i++) {
          const offset = rng.below(4 * MiB - 20_000);
          const length = rng.between(1, 20_000);
          if (i % 4 === 0) {
            pending.push(img.writeZeroes(offset, length));
            model.set(offset, Buffer.alloc(length));
          } else {
            const data = Buffer.alloc(length, i & 0xff);
            pending.push(img.write(data, offset));
            model.set(offset, data);
          }
          if (i % 10 === 0) pending.push(img.read(Buffer.alloc(5000), rng.below(MiB)));
        }
        await Promise.all(pending);
        assert.ok((await readAll(img)).equals(model.bytes), 'the library reads the writes applied in call order');
      } finally {
        await img.close();
      }
      expectClean(path);
      expectContent(path, model, s);
    });
  });

  describe('crash safety', () => {
    it('a writer killed at any moment leaves at worst leaked clusters, and every completed write is there', async function () {
      this.timeout(60_000);
      // Random writes (new clusters, copy-on-write over a backing file and an internal snapshot, zero writes);
      // each one is logged after it completes. Killed at several moments, the image must check with no
      // corruption and hold every logged write.
      const base = s.path('crash-base.qcow2');
      createQcow2(base, { size: 8 * MiB, clusterSize: 4 * KiB });
      qemuApply(base, [{ kind: 'write', offset: 0, length: 8 * MiB, pattern: 0x5a }]);
      const rng = new XorShift(4242);
      for (let round = 0; round < 5; round++) {
        const path = s.path(`crash-${round}.qcow2`);
        createQcow2(path, { clusterSize: 4 * KiB, backing: base, backingFormat: 'qcow2' });
        qemuApply(path, [{ kind: 'write', offset: MiB, length: MiB, pattern: 0x5b }]);
        qemuImg('snapshot', '-c', 'before', path);
        const killAfter = rng.between(5, 400);
        const r = await killIsolated(
          `const img = await Qcow2Image.open(${JSON.stringify(path)}, { writable: true });
           let x = ${rng.between(1, 1e9)};
           const next = (n) => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x % n; };
           console.log('READY');
           for (let i = 0; i < 3000; i++) {
             const offset = next(8 * 1024 * 1024 - 70000), length = 1 + next(70000), pattern = i % 5 === 4 ? 0 : 1 + (i % 250);
             console.log('START ' + offset + ' ' + length + ' ' + pattern);
             if (pattern === 0) await img.writeZeroes(offset, length); else await img.write(Buffer.alloc(length, pattern), offset);
             console.log('DONE');
           }
           await img.close();`,
          killAfter,
        );
        const c = qemuCheck(path);
        assert.ok(
          c.corruptions === 0 && c.checkErrors === 0,
          `round ${round}, killed ${killAfter} ms after it started writing: qemu-img check found ${c.corruptions} corruptions, ${c.checkErrors} errors\n${c.raw}`,
        );
        // Every completed write reads back; the one in flight at the kill reads old or new, byte by byte.
        const model = new DiskModel(8 * MiB, Buffer.alloc(8 * MiB, 0x5a));
        model.set(MiB, Buffer.alloc(MiB, 0x5b));
        let inFlight: { offset: number; length: number; pattern: number } | null = null;
        for (const line of r.output.split('\n')) {
          const m = /^START (\d+) (\d+) (\d+)$/.exec(line.trim());
          if (m) inFlight = { offset: Number(m[1]), length: Number(m[2]), pattern: Number(m[3]) };
          else if (line.trim() === 'DONE' && inFlight) {
            model.set(inFlight.offset, Buffer.alloc(inFlight.length, inFlight.pattern));
            inFlight = null;
          }
        }
        const raw = s.path(`crash-${round}.raw`);
        convertToRaw(path, raw);
        const bytes = readFileSync(raw);
        for (let at = 0; at < bytes.length; at += 4096) {
          const end = Math.min(bytes.length, at + 4096);
          if (bytes.subarray(at, end).equals(model.bytes.subarray(at, end))) continue;
          for (let i = at; i < end; i++) {
            const ok = bytes[i] === model.bytes[i] || (inFlight !== null && i >= inFlight.offset && i < inFlight.offset + inFlight.length && bytes[i] === inFlight.pattern);
            assert.ok(ok, `round ${round}, killed ${killAfter} ms in: guest byte ${i} reads 0x${bytes[i]?.toString(16)}, expected 0x${model.bytes[i]?.toString(16)}${inFlight ? ` (write in flight: ${inFlight.offset}+${inFlight.length})` : ''}`);
          }
        }
        const snap = s.path(`crash-${round}-before.raw`);
        convertToRaw(path, snap, 'before');
        const snapBytes = readFileSync(snap);
        assert.ok(snapBytes.subarray(MiB, 2 * MiB).equals(Buffer.alloc(MiB, 0x5b)), `round ${round}: the internal snapshot changed`);
        assert.ok(snapBytes.subarray(0, MiB).equals(Buffer.alloc(MiB, 0x5a)), `round ${round}: the internal snapshot changed`);
      }
    });
  });

  describe('contract', () => {
    it('refuses writes outside the virtual disk with OUT_OF_RANGE and leaves the image clean', async () => {
      const path = s.path('range.qcow2');
      await Qcow2Image.create(path, { size: MiB });
      const img = await Qcow2Image.open(path, { writable: true });
      try {
        await expectImageError(() => img.write(Buffer.alloc(2), MiB - 1), 'OUT_OF_RANGE', 'write across the end');
        await expectImageError(() => img.write(Buffer.alloc(1), MiB), 'OUT_OF_RANGE', 'write at the end');
        await expectImageError(() => img.writeZeroes(MiB - 512, 1024), 'OUT_OF_RANGE', 'zero write across the end');
        await expectImageError(() => img.read(Buffer.alloc(2), MiB - 1), 'OUT_OF_RANGE', 'read across the end');
        await expectImageError(() => img.write(Buffer.alloc(1), -1), ['OUT_OF_RANGE', 'INVALID_ARGUMENT'], 'write at a negative offset');
      } finally {
        await img.close();
      }
      expectClean(path);
      expectContent(path, new DiskModel(MiB), s);
    });

    it('opens read-only by default and refuses every change with READ_ONLY, leaving the file as it was', async () => {
      const path = s.path('ro.qcow2');
      createQcow2(path, { size: MiB });
      const before = sha256File(path);
      const img = await Qcow2Image.open(path);
      try {
        assert.equal(img.readOnly, true);
        await expectImageError(() => img.write(Buffer.alloc(512, 1), 0), 'READ_ONLY', 'write');
        await expectImageError(() => img.writeZeroes(0, 512), 'READ_ONLY', 'writeZeroes');
        await expectImageError(() => img.makeEmpty(), 'READ_ONLY', 'makeEmpty');
        await expectImageError(() => img.setBacking(null), 'READ_ONLY', 'setBacking');
      } finally {
        await img.close();
      }
      assert.equal(sha256File(path), before);
    });
  });
});

function convertedRaw(image: string, s: Scratch): string {
  const raw = s.path(`converted-${Math.random().toString(36).slice(2)}.raw`);
  convertToRaw(image, raw);
  return raw;
}

