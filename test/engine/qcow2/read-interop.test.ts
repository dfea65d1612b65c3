// Images made and filled by qemu-img/qemu-io must read back through the library exactly as
// `qemu-img convert -O raw` reads them, and the chain map must agree with `qemu-img map`.
import { strict as assert } from 'node:assert';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chainMap, openDisk } from '../../../src/engine/qcow2/chain';
import type { Disk } from '../../../src/engine/qcow2/disk';
import { Qcow2Image } from '../../../src/engine/qcow2/image';
import {
  convertToRaw,
  createQcow2,
  createRaw,
  describeMap,
  diffDiskWithRaw,
  expectImageError,
  type GuestOp,
  HEADER_FIELD,
  headerExtensions,
  KiB,
  layerAlone,
  layerMapRanges,
  libraryMap,
  MiB,
  qemuApply,
  qemuMap,
  readBytes,
  readFileAt,
  readRawHeader,
  writeU32,
  writeU64,
  XorShift,
} from '../../support/fixtures';
import { qemuImg, qemuInfo, requireTool, scratchDir } from '../../support/qemu';

type Scratch = ReturnType<typeof scratchDir>;

/**
 * A fill that touches what readers get wrong: full clusters, writes across cluster and L2-table boundaries,
 * the last bytes of the disk, zero writes and discards (aligned and not), then random writes from a pattern file.
 */
function standardFill(size: number, cluster: number, seed: number, patternFile: string, limit = size): GuestOp[] {
  const rng = new XorShift(seed);
  const ops: GuestOp[] = [];
  const add = (op: GuestOp): void => {
    const end = Math.min(op.offset + op.length, limit);
    if (op.offset < size && end > op.offset) ops.push({ ...op, length: end - op.offset });
  };
  add({ kind: 'write', offset: 0, length: cluster, pattern: 0x11 });
  add({ kind: 'write', offset: cluster * 3 - 100, length: 300, pattern: 0x22 });
  add({ kind: 'write', offset: cluster * 5 + 512, length: cluster * 7 + 1000, pattern: 0x33 });
  add({ kind: 'zero', offset: cluster * 6, length: cluster * 2 });
  add({ kind: 'zero', offset: cluster * 9 + 100, length: 3000 });
  add({ kind: 'discard', offset: cluster * 10, length: cluster });
  add({ kind: 'write', offset: limit - 777, length: 777, pattern: 0x44 });
  const l2Span = (cluster / 8) * cluster;
  if (l2Span < size) add({ kind: 'writeFile', offset: l2Span - cluster / 2 - 3, length: cluster + 9, source: patternFile });
  for (let i = 0; i < 24; i++) {
    const offset = rng.below(limit);
    const length = rng.between(1, cluster * 3);
    if (i % 3 === 0) add({ kind: 'writeFile', offset, length, source: patternFile });
    else if (i % 7 === 0) add({ kind: 'zero', offset, length });
    else add({ kind: 'write', offset, length, pattern: rng.between(1, 255) });
  }
  return ops;
}

describe('qcow2 read interop: images made by qemu-img read back exactly as qemu reads them', function () {
  this.timeout(60_000);
  let s: Scratch;
  let patternFile: string;

  before(() => {
    requireTool('qemu-img');
    requireTool('qemu-io');
    s = scratchDir('vmsnap-read-');
    patternFile = s.path('pattern.bin');
    writeFileSync(patternFile, new XorShift(7).bytes(4093));
  });
  after(() => s.cleanup());

  /** Reads the whole disk in aligned and in odd-sized chunks and compares with qemu-img convert. */
  async function expectReadsLikeQemu(image: string, chunks: number[] = [MiB, 999_999]): Promise<void> {
    const raw = `${image}.raw`;
    convertToRaw(image, raw);
    const disk = await openDisk(image);
    try {
      for (const chunk of chunks) {
        const diff = await diffDiskWithRaw(disk, raw, chunk);
        assert.equal(diff, null, `${image} (chunks of ${chunk}): ${diff}`);
      }
    } finally {
      await disk.close();
    }
  }

  /** chainMap over the whole disk (and over an unaligned window) equals qemu-img map. */
  async function expectMapLikeQemu(image: string, rawDepths: ReadonlySet<number> = new Set()): Promise<void> {
    const disk = await openDisk(image);
    try {
      const ours = libraryMap(await chainMap(disk, 0, disk.size), rawDepths);
      const theirs = qemuMap(image, rawDepths);
      assert.deepEqual(ours, theirs, `${image}\n  library: ${describeMap(ours)}\n  qemu:    ${describeMap(theirs)}`);
      const start = Math.floor(disk.size / 3) + 12345;
      const length = Math.min(disk.size - start, Math.floor(disk.size / 3));
      const window = libraryMap(await chainMap(disk, start, length), rawDepths);
      const qemuWindow = clip(theirs, start, length);
      assert.deepEqual(window, qemuWindow, `${image} window ${start}+${length}\n  library: ${describeMap(window)}\n  qemu:    ${describeMap(qemuWindow)}`);
    } finally {
      await disk.close();
    }
  }

  describe('cluster sizes and versions', () => {
    for (const cluster of [512, 4 * KiB, 64 * KiB, 2 * MiB]) {
      for (const compat of ['0.10', '1.1'] as const) {
        // Sizes that are not a multiple of the cluster size (except at 512), several L2 tables at small sizes.
        const size = (cluster <= 4 * KiB ? 5 * MiB : cluster === 64 * KiB ? 24 * MiB : 26 * MiB) + 1536;
        it(`reads a ${cluster}-byte-cluster compat=${compat} image of ${size} bytes like qemu-img convert`, async () => {
          const image = s.path(`c${cluster}-${compat}.qcow2`);
          createQcow2(image, { size, clusterSize: cluster, compat });
          qemuApply(image, standardFill(size, cluster, cluster + (compat === '1.1' ? 1 : 0), patternFile));
          await expectReadsLikeQemu(image);
          await expectMapLikeQemu(image);
        });
      }
    }
  });

  it('reads zeros from unallocated clusters of an image without a backing file', async () => {
    const image = s.path('sparse.qcow2');
    createQcow2(image, { size: 16 * MiB });
    qemuApply(image, [{ kind: 'write', offset: 7 * MiB + 5, length: 10, pattern: 0x5a }]);
    await expectReadsLikeQemu(image, [4 * MiB]);
    await expectMapLikeQemu(image);
    const disk = await openDisk(image);
    try {
      const buf = Buffer.alloc(64 * KiB, 0xff);
      await disk.read(buf, 12 * MiB);
      assert.ok(buf.equals(Buffer.alloc(64 * KiB)), 'an unallocated cluster must read as zeros');
      const map = await chainMap(disk, 12 * MiB, 64 * KiB);
      assert.deepEqual(
        map.map((e) => [e.kind, e.path]),
        [['unallocated', null]],
        'unallocated clusters without a backing file map as unallocated with no serving layer',
      );
    } finally {
      await disk.close();
    }
  });

  describe('backing chains', () => {
    // base.raw <- mid.qcow2 (4K, v2, relative "../base/base.raw") <- top.qcow2 (64K, v3, absolute path to mid)
    // <- leaf.qcow2 (relative "../top/top.qcow2", 2M clusters): every overlay is larger than its backing file.
    let leaf: string;
    let top: string;
    let dirs: { base: string; mid: string; top: string; leaf: string };

    before(() => {
      dirs = { base: s.path('base'), mid: s.path('mid'), top: s.path('top'), leaf: s.path('leaf') };
      for (const d of Object.values(dirs)) mkdirSync(d);
      const base = join(dirs.base, 'base.raw');
      createRaw(base, 3 * MiB);
      qemuApply(base, [
        { kind: 'writeFile', offset: 0, length: 3 * MiB, source: patternFile },
        { kind: 'zero', offset: MiB, length: 256 * KiB },
      ], 'raw');
      const mid = join(dirs.mid, 'mid.qcow2');
      createQcow2(mid, { size: 5 * MiB, clusterSize: 4 * KiB, compat: '0.10', backing: '../base/base.raw', backingFormat: 'raw' });
      qemuApply(mid, [
        { kind: 'write', offset: 100, length: 5000, pattern: 0x21 }, // partial clusters: the rest comes from base
        { kind: 'write', offset: 2 * MiB + 4096, length: 2 * MiB, pattern: 0x22 }, // past the base's end
        { kind: 'zero', offset: 512 * KiB, length: 64 * KiB },
      ]);
      top = join(dirs.top, 'top.qcow2');
      createQcow2(top, { size: 9 * MiB, clusterSize: 64 * KiB, compat: '1.1', backing: mid, backingFormat: 'qcow2' });
      qemuApply(top, [
        { kind: 'write', offset: 60 * KiB, length: 8 * KiB, pattern: 0x31 },
        { kind: 'zero', offset: 2 * MiB, length: 128 * KiB }, // zero clusters hiding mid's data
        { kind: 'discard', offset: 3 * MiB, length: 64 * KiB },
        { kind: 'write', offset: 6 * MiB - 1, length: 2, pattern: 0x32 },
      ]);
      leaf = join(dirs.leaf, 'leaf.qcow2');
      createQcow2(leaf, { size: 12 * MiB, clusterSize: 2 * MiB, compat: '1.1', backing: '../top/top.qcow2', backingFormat: 'qcow2' });
      qemuApply(leaf, [
        { kind: 'write', offset: 3 * MiB + 17, length: 100, pattern: 0x41 },
        { kind: 'zero', offset: 8 * MiB, length: 2 * MiB },
      ]);
    });

    it('reads a four-layer chain across folders (relative and absolute backing paths) like qemu-img convert', async () => {
      await expectReadsLikeQemu(leaf, [MiB, 333_333]);
      await expectReadsLikeQemu(top, [MiB]);
    });

    it('reports the chain and its layers', async () => {
      const disk = await openDisk(leaf);
      try {
        const layers: Disk[] = [];
        for (let d: Disk | null = disk; d; d = d.backing) layers.push(d);
        assert.deepEqual(
          layers.map((d) => [d.path, d.format, d.size]),
          [
            [leaf, 'qcow2', 12 * MiB],
            [top, 'qcow2', 9 * MiB],
            [join(dirs.mid, 'mid.qcow2'), 'qcow2', 5 * MiB],
            [join(dirs.base, 'base.raw'), 'raw', 3 * MiB],
          ],
        );
      } finally {
        await disk.close();
      }
    });

    it('maps the chain like qemu-img map (data, zero and serving layer per range)', async () => {
      await expectMapLikeQemu(leaf, new Set([3]));
      await expectMapLikeQemu(top, new Set([2]));
      const disk = await openDisk(leaf);
      try {
        const unallocated = (await chainMap(disk, 0, disk.size)).filter((e) => e.kind === 'unallocated');
        assert.ok(unallocated.length > 0);
        for (const e of unallocated) {
          assert.equal(e.depth, 3, 'an unallocated range has the depth of the bottom layer (the ChainExtent contract)');
          assert.equal(e.path, null);
        }
      } finally {
        await disk.close();
      }
    });

    it('maps each qcow2 layer alone (layerMap) like qemu-img map of the layer with backing=null', async () => {
      const disk = await openDisk(leaf);
      try {
        for (let layer: Disk | null = disk; layer; layer = layer.backing) {
          if (layer.format !== 'qcow2') continue;
          const ours = layerMapRanges(await layer.layerMap(0, layer.size));
          const theirs = qemuMap(layerAlone(layer.path));
          assert.deepEqual(ours, theirs, `${layer.path}\n  library: ${describeMap(ours)}\n  qemu:    ${describeMap(theirs)}`);
          const start = 12_345;
          const window = layerMapRanges(await layer.layerMap(start, MiB));
          assert.deepEqual(window, clip(theirs, start, MiB), `${layer.path} window ${start}+${MiB}`);
        }
      } finally {
        await disk.close();
      }
    });

    it('reads zeros past the end of a shorter backing file', async () => {
      const disk = await openDisk(top);
      try {
        const buf = Buffer.alloc(MiB, 0xee);
        await disk.read(buf, 8 * MiB); // top is 9 MiB, mid only 5 MiB
        assert.ok(buf.equals(Buffer.alloc(MiB)));
      } finally {
        await disk.close();
      }
    });

    it('reads one layer alone with backing: false (unallocated reads zeros) like qemu with backing=null', async () => {
      const raw = `${top}.alone.raw`;
      qemuImg('convert', '-U', '-O', 'raw', `json:{"driver":"qcow2","backing":null,"file":{"driver":"file","filename":"${top}"}}`, raw);
      const disk = await Qcow2Image.open(top, { backing: false });
      try {
        assert.equal(disk.backing, null);
        assert.equal(await diffDiskWithRaw(disk, raw, MiB), null);
      } finally {
        await disk.close();
      }
    });

    it('reads a raw backing file whose size is not a multiple of 512 (zeros after its last byte)', async () => {
      const base = s.path('odd.raw');
      writeFileSync(base, new XorShift(99).bytes(1_000_001));
      const image = s.path('odd-overlay.qcow2');
      createQcow2(image, { size: 2 * MiB, backing: base, backingFormat: 'raw' });
      qemuApply(image, [{ kind: 'write', offset: 900_000, length: 4096, pattern: 0x61 }]);
      await expectReadsLikeQemu(image, [MiB, 65_537]);
    });
  });

  describe('compressed images (qemu-img convert -c)', () => {
    for (const [cluster, compat] of [[512, '1.1'], [4 * KiB, '1.1'], [64 * KiB, '1.1'], [64 * KiB, '0.10'], [2 * MiB, '1.1']] as const) {
      it(`reads a compressed ${cluster}-byte-cluster compat=${compat} image like qemu-img convert`, async () => {
        const size = (cluster === 512 ? 3 * MiB : 12 * MiB) + 1536;
        const plain = s.path(`plain-${cluster}-${compat}.qcow2`);
        createQcow2(plain, { size, clusterSize: cluster, compat });
        // The fill keeps to the first half: qemu writes compressed clusters only where nothing is allocated.
        const half = Math.floor(size / 2 / cluster) * cluster;
        qemuApply(plain, standardFill(size, cluster, 31, patternFile, half));
        const packed = s.path(`packed-${cluster}-${compat}.qcow2`);
        qemuImg('convert', '-c', '-f', 'qcow2', '-O', 'qcow2', '-o', `cluster_size=${cluster},compat=${compat}`, plain, packed);
        // Then overwrite parts of it uncompressed, and write more clusters compressed.
        qemuApply(packed, [
          { kind: 'write', offset: cluster + 7, length: 100, pattern: 0x71 }, // into a compressed cluster of the fill
          { kind: 'compressed', offset: half + cluster, length: cluster * 2, pattern: 0x72 },
          { kind: 'write', offset: half + cluster * 2 + 5, length: 10, pattern: 0x73 }, // into a compressed cluster
        ]);
        await expectReadsLikeQemu(packed, [MiB, 123_457]);
        await expectMapLikeQemu(packed);
      });
    }
  });

  describe('extended L2 entries (subclusters)', () => {
    for (const cluster of [64 * KiB, 2 * MiB]) {
      const sub = cluster / 32;
      const subOps = (size: number): GuestOp[] => [
        { kind: 'write', offset: 4 * KiB, length: 4 * KiB, pattern: 0x81 }, // inside one cluster
        { kind: 'write', offset: cluster + sub * 3, length: sub, pattern: 0x82 }, // exactly one subcluster
        { kind: 'write', offset: cluster * 2 + 100, length: sub * 2, pattern: 0x83 }, // unaligned across subclusters
        { kind: 'zero', offset: cluster + sub * 10, length: sub * 2 }, // subcluster zero bits
        { kind: 'zero', offset: cluster * 3, length: cluster }, // a whole zero cluster
        { kind: 'write', offset: cluster * 4 - sub, length: sub * 2, pattern: 0x84 }, // across clusters
        { kind: 'discard', offset: cluster * 2, length: sub },
        { kind: 'write', offset: size - sub - 3, length: sub + 3, pattern: 0x85 },
      ];
      it(`reads an extended-L2 image with ${cluster}-byte clusters and subcluster writes like qemu-img convert`, async () => {
        const size = cluster * 8 + 1536;
        const image = s.path(`xl2-${cluster}.qcow2`);
        createQcow2(image, { size, clusterSize: cluster, extendedL2: true });
        qemuApply(image, subOps(size));
        await expectReadsLikeQemu(image, [MiB, 7 * KiB + 3]);
        await expectMapLikeQemu(image);
      });
      it(`reads an extended-L2 overlay (${cluster}-byte clusters) whose unwritten subclusters come from its backing file`, async () => {
        const size = cluster * 8 + 1536;
        const base = s.path(`xl2-base-${cluster}.qcow2`);
        createQcow2(base, { size, clusterSize: 64 * KiB });
        qemuApply(base, [{ kind: 'writeFile', offset: 0, length: size, source: patternFile }]);
        const image = s.path(`xl2-over-${cluster}.qcow2`);
        createQcow2(image, { clusterSize: cluster, extendedL2: true, backing: base, backingFormat: 'qcow2' });
        qemuApply(image, subOps(size));
        await expectReadsLikeQemu(image, [MiB, 7 * KiB + 3]);
        await expectMapLikeQemu(image);
      });
    }
  });

  describe('internal snapshots', () => {
    let image: string;
    let info: ReturnType<typeof qemuInfo>;

    before(() => {
      // A qcow2 with a backing file and two internal snapshots, changed after each one.
      const base = s.path('snap-base.qcow2');
      createQcow2(base, { size: 6 * MiB, clusterSize: 4 * KiB });
      qemuApply(base, [{ kind: 'writeFile', offset: 0, length: 6 * MiB, source: patternFile }]);
      image = s.path('snap.qcow2');
      createQcow2(image, { size: 8 * MiB, backing: base, backingFormat: 'qcow2' });
      qemuApply(image, [
        { kind: 'write', offset: 0, length: 256 * KiB, pattern: 0x91 },
        { kind: 'write', offset: 3 * MiB + 10, length: 5000, pattern: 0x92 },
      ]);
      qemuImg('snapshot', '-c', 'first', image);
      qemuApply(image, [
        { kind: 'write', offset: 64 * KiB, length: 64 * KiB, pattern: 0x93 },
        { kind: 'zero', offset: 128 * KiB, length: 64 * KiB },
        { kind: 'discard', offset: 3 * MiB, length: 64 * KiB },
        { kind: 'write', offset: 7 * MiB, length: 4 * KiB, pattern: 0x94 },
      ]);
      qemuImg('snapshot', '-c', 'second snapshot', image);
      qemuApply(image, [
        { kind: 'write', offset: 0, length: 4 * KiB, pattern: 0x95 },
        { kind: 'zero', offset: 7 * MiB, length: 64 * KiB },
      ]);
      info = qemuInfo(image);
      assert.equal(info.snapshots?.length, 2);
    });

    it('lists internal snapshots as qemu-img info does (id, name, vm-state-size, date, vm clock)', async () => {
      const img = await Qcow2Image.open(image);
      try {
        expectSnapshotsLikeQemu(img, image);
      } finally {
        await img.close();
      }
    });

    it('reads every internal snapshot, by name and by id, like qemu-img convert -l snapshot.name=', async () => {
      const img = await Qcow2Image.open(image);
      try {
        for (const snap of info.snapshots ?? []) {
          const raw = s.path(`snap-${snap.id}.raw`);
          convertToRaw(image, raw, snap.name);
          for (const key of [snap.name, snap.id]) {
            const view = await img.openSnapshot(key);
            try {
              assert.equal(await diffDiskWithRaw(view, raw, MiB), null, `snapshot ${key}`);
            } finally {
              await view.close();
            }
          }
        }
        // The current state is untouched by reading snapshots.
        const current = s.path('snap-current.raw');
        convertToRaw(image, current);
        assert.equal(await diffDiskWithRaw(img, current, MiB), null, 'current state');
      } finally {
        await img.close();
      }
    });

    it('fails with SNAPSHOT_NOT_FOUND for an unknown snapshot', async () => {
      const img = await Qcow2Image.open(image);
      try {
        await expectImageError(() => img.openSnapshot('no such snapshot'), 'SNAPSHOT_NOT_FOUND', 'openSnapshot of an unknown name');
        await expectImageError(() => img.openSnapshot('3'), 'SNAPSHOT_NOT_FOUND', 'openSnapshot of an unknown id');
      } finally {
        await img.close();
      }
    });

    it('reads the vm clock and 64-bit vm state size of a snapshot entry as qemu-img info does', async () => {
      const copy = s.path('snap-vmstate.qcow2');
      copyFileSync(image, copy);
      const h = readRawHeader(copy);
      // First entry: vm_clock_nsec at +24, 32-bit vm_state_size at +32, 64-bit vm_state_size in the extra data at +40.
      writeU64(copy, h.snapshotsOffset + 24, 90_061_001_002_003n);
      writeU32(copy, h.snapshotsOffset + 32, 0);
      writeU64(copy, h.snapshotsOffset + 40, 5n * 2n ** 32n + 4096n);
      const img = await Qcow2Image.open(copy);
      try {
        expectSnapshotsLikeQemu(img, copy);
        assert.equal(img.snapshots[0]?.vmStateSize, 5 * 2 ** 32 + 4096);
        assert.equal(img.snapshots[0]?.vmClockNs, 90_061_001_002_003);
      } finally {
        await img.close();
      }
    });

    it('gives a snapshot view the disk size the snapshot was taken with (image grown afterwards)', async () => {
      const grown = s.path('grown.qcow2');
      createQcow2(grown, { size: 4 * MiB });
      qemuApply(grown, [{ kind: 'write', offset: 0, length: MiB, pattern: 0xa1 }, { kind: 'write', offset: 4 * MiB - 10, length: 10, pattern: 0xa2 }]);
      qemuImg('snapshot', '-c', 'small', grown);
      qemuImg('resize', '-q', '-f', 'qcow2', grown, '+4M');
      qemuApply(grown, [{ kind: 'write', offset: 6 * MiB, length: MiB, pattern: 0xa3 }]);
      const raw = s.path('grown-small.raw');
      convertToRaw(grown, raw, 'small'); // qemu-img convert reports the current size, zeros past the snapshot's
      const img = await Qcow2Image.open(grown);
      try {
        assert.equal(img.size, 8 * MiB);
        assert.equal(img.snapshots[0]?.diskSize, 4 * MiB);
        const view = await img.openSnapshot('small');
        try {
          assert.equal(view.size, 4 * MiB, 'a snapshot view has the size the disk had then');
          const ours = Buffer.alloc(4 * MiB);
          await view.read(ours, 0);
          assert.ok(ours.equals(await readFileAt(raw, 0, 4 * MiB)), 'snapshot content');
          assert.ok((await readFileAt(raw, 4 * MiB, 4 * MiB)).equals(Buffer.alloc(4 * MiB)));
        } finally {
          await view.close();
        }
      } finally {
        await img.close();
      }
    });
  });

  it('reads guest offsets past 4 GiB and 1 TiB of a 3 TiB disk, and maps it, like qemu', async () => {
    const image = s.path('huge.qcow2');
    const size = 3 * 2 ** 40;
    createQcow2(image, { size });
    const ranges: [number, number, number][] = [
      [2 ** 32 - 1000, 2000, 0x11],
      [2 ** 40 + 12345, 70_000, 0x22],
      [size - 4096, 4096, 0x33],
    ];
    qemuApply(image, [
      ...ranges.map(([offset, length, pattern]): GuestOp => ({ kind: 'write', offset, length, pattern })),
      { kind: 'zero', offset: 2 ** 41, length: 65536 },
    ]);
    const disk = await openDisk(image);
    try {
      for (const [offset, length, pattern] of ranges) {
        const got = Buffer.alloc(length + 200, 0xee);
        const from = Math.max(0, offset - 100);
        await disk.read(got.subarray(0, Math.min(got.length, size - from)), from);
        const expected = Buffer.alloc(got.length);
        expected.fill(pattern, offset - from, offset - from + length);
        if (from + got.length > size) expected.fill(0xee, size - from);
        assert.ok(got.equals(expected), `guest ${offset}+${length}`);
      }
      const ours = libraryMap(await chainMap(disk, 0, size));
      const theirs = qemuMap(image);
      assert.deepEqual(ours, theirs, `library: ${describeMap(ours)}\n  qemu: ${describeMap(theirs)}`);
    } finally {
      await disk.close();
    }
  });

  it('probes the backing format when the image does not name it (raw and qcow2 backing files)', async () => {
    for (const format of ['raw', 'qcow2'] as const) {
      const base = s.path(`unnamed-base.${format}`);
      if (format === 'raw') createRaw(base, 4 * MiB);
      else createQcow2(base, { size: 4 * MiB });
      qemuApply(base, [{ kind: 'write', offset: 0, length: MiB, pattern: 0x66 }], format);
      const image = s.path(`unnamed-${format}.qcow2`);
      createQcow2(image, { backing: base, backingFormat: format });
      // Turn the backing-format extension into an unknown one, which QEMU ignores: it must probe.
      const ext = headerExtensions(image).find((e) => e.type === 0xe2792aca);
      assert.ok(ext, 'the fixture has a backing-format extension');
      writeU32(image, ext.at, 0x0badf00d);
      assert.equal(qemuInfo(image)['backing-filename-format'], undefined);
      qemuApply(image, [{ kind: 'write', offset: 100, length: 10, pattern: 0x67 }]);
      await expectReadsLikeQemu(image, [MiB]);
      const disk = await openDisk(image);
      try {
        assert.equal(disk.backing?.format, format);
      } finally {
        await disk.close();
      }
    }
  });

  it('reads images made with preallocation=metadata, falloc and full like qemu-img convert', async () => {
    for (const prealloc of ['metadata', 'falloc', 'full']) {
      const image = s.path(`prealloc-${prealloc}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', '-o', `preallocation=${prealloc}`, image, '6M');
      qemuApply(image, [{ kind: 'write', offset: 70_000, length: 5000, pattern: 0x68 }, { kind: 'zero', offset: MiB, length: 64 * KiB }]);
      await expectReadsLikeQemu(image, [MiB]);
    }
  });

  it('reads a version 2 image with an internal snapshot (no snapshot extra data)', async () => {
    const image = s.path('v2-snap.qcow2');
    createQcow2(image, { size: 4 * MiB, compat: '0.10' });
    qemuApply(image, [{ kind: 'write', offset: 0, length: MiB, pattern: 0x69 }]);
    qemuImg('snapshot', '-c', 'old', image);
    qemuApply(image, [{ kind: 'write', offset: 4096, length: 4096, pattern: 0x6a }]);
    const raw = s.path('v2-snap-old.raw');
    convertToRaw(image, raw, 'old');
    const img = await Qcow2Image.open(image);
    try {
      expectSnapshotsLikeQemu(img, image);
      const view = await img.openSnapshot('old');
      try {
        assert.equal(await diffDiskWithRaw(view, raw, MiB), null);
      } finally {
        await view.close();
      }
    } finally {
      await img.close();
    }
    await expectReadsLikeQemu(image, [MiB]);
  });

  it('opens a raw file through openDisk as a raw disk', async () => {
    const raw = s.path('plain.raw');
    writeFileSync(raw, new XorShift(5).bytes(MiB + 512));
    const disk = await openDisk(raw);
    try {
      assert.equal(disk.format, 'raw');
      assert.equal(disk.size, MiB + 512);
      assert.equal(await diffDiskWithRaw(disk, raw, 100_000), null);
    } finally {
      await disk.close();
    }
  });

  it('reads the header fields qemu-img info reports', async () => {
    const image = s.path('fields.qcow2');
    createQcow2(image, { size: 3 * MiB + 512, clusterSize: 16 * KiB, compat: '1.1' });
    const info = qemuInfo(image);
    const img = await Qcow2Image.open(image);
    try {
      assert.equal(img.size, info['virtual-size']);
      assert.equal(img.clusterSize, info['cluster-size']);
      assert.equal(img.header.version, info['format-specific']?.data?.compat === '1.1' ? 3 : 2);
      assert.equal(img.readOnly, true);
      assert.equal(img.wasDirty, false);
      assert.equal(readBytes(image, HEADER_FIELD.magic, 4).toString('latin1'), 'QFI\xfb');
    } finally {
      await img.close();
    }
  });
});

/** The library's snapshot list equals `qemu-img info`'s. */
function expectSnapshotsLikeQemu(img: Qcow2Image, path: string): void {
  const theirs = (qemuImgJson(path).snapshots ?? []).map((q) => ({
    id: q.id,
    name: q.name,
    vmStateSize: q['vm-state-size'],
    dateMs: q['date-sec'] * 1000 + Math.floor(q['date-nsec'] / 1e6),
    vmClockNs: q['vm-clock-sec'] * 1e9 + q['vm-clock-nsec'],
  }));
  const ours = img.snapshots.map((o) => ({
    id: o.id,
    name: o.name,
    vmStateSize: o.vmStateSize,
    dateMs: o.date.getTime(),
    vmClockNs: o.vmClockNs,
  }));
  assert.deepEqual(ours, theirs, `${path}: snapshots`);
}

interface QemuSnapshotInfo {
  id: string;
  name: string;
  'vm-state-size': number;
  'date-sec': number;
  'date-nsec': number;
  'vm-clock-sec': number;
  'vm-clock-nsec': number;
}

function qemuImgJson(path: string): { snapshots?: QemuSnapshotInfo[] } {
  return JSON.parse(qemuImg('info', '-U', '--output=json', '-f', 'qcow2', path)) as { snapshots?: QemuSnapshotInfo[] };
}

/** The part of a normalised map inside [start, start + length). */
function clip(ranges: ReturnType<typeof qemuMap>, start: number, length: number): ReturnType<typeof qemuMap> {
  const end = start + length;
  const out: ReturnType<typeof qemuMap> = [];
  for (const r of ranges) {
    const a = Math.max(r.offset, start);
    const b = Math.min(r.offset + r.length, end);
    if (b > a) out.push({ ...r, offset: a, length: b - a });
  }
  return out;
}
