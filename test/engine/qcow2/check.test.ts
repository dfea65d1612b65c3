import assert from 'node:assert/strict';
import { closeSync, openSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { check, checkExitStatus, type CheckResult } from '../../../src/engine/qcow2/check';
import { isImageError } from '../../../src/engine/qcow2/errors';
import { readBytes } from '../../support/fixtures';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, requireTool, runStatus, scratchDir, sha256File } from '../../support/qemu';

// Independent of the code under test: raw byte pokes at the places the qcow2 spec names.

function writeBytes(path: string, offset: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

function u64(value: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(value);
  return b;
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value);
  return b;
}

interface Geometry {
  clusterSize: number;
  refcountBits: number;
  refcountTableOffset: number;
  l1TableOffset: number;
}

function geometry(path: string): Geometry {
  const h = readBytes(path, 0, 104);
  const version = h.readUInt32BE(4);
  return {
    clusterSize: 2 ** h.readUInt32BE(20),
    refcountBits: version === 3 ? 2 ** h.readUInt32BE(96) : 16,
    refcountTableOffset: Number(h.readBigUInt64BE(48)),
    l1TableOffset: Number(h.readBigUInt64BE(40)),
  };
}

/** Where the refcount entry of a host cluster lives: byte offset, and bit shift for sub-byte widths. */
function refcountSlot(path: string, cluster: number): { byte: number; shift: number; bits: number } {
  const g = geometry(path);
  const perBlock = (g.clusterSize * 8) / g.refcountBits;
  const entry = readBytes(path, g.refcountTableOffset + Math.floor(cluster / perBlock) * 8, 8).readBigUInt64BE(0);
  assert.notEqual(entry, 0n, `cluster ${cluster} has no refcount block`);
  const bit = (cluster % perBlock) * g.refcountBits;
  return { byte: Number(entry) + Math.floor(bit / 8), shift: bit % 8, bits: g.refcountBits };
}

function getRefcount(path: string, cluster: number): bigint {
  const s = refcountSlot(path, cluster);
  if (s.bits < 8) return BigInt((readBytes(path, s.byte, 1)[0]! >> s.shift) & ((1 << s.bits) - 1));
  const raw = readBytes(path, s.byte, s.bits / 8);
  return BigInt('0x' + raw.toString('hex'));
}

function setRefcount(path: string, cluster: number, value: bigint): void {
  const s = refcountSlot(path, cluster);
  if (s.bits < 8) {
    const old = readBytes(path, s.byte, 1)[0]!;
    const mask = ((1 << s.bits) - 1) << s.shift;
    writeBytes(path, s.byte, Buffer.from([(old & ~mask) | ((Number(value) << s.shift) & mask)]));
    return;
  }
  writeBytes(path, s.byte, Buffer.from(value.toString(16).padStart(s.bits / 4, '0'), 'hex'));
}

/** Host offsets of the data clusters `qemu-img map` reports for the active layer. */
function dataOffsets(path: string): number[] {
  const map = JSON.parse(qemuImg('map', '--output=json', path)) as { data: boolean; offset?: number; length: number }[];
  return map.filter((e) => e.data && e.offset !== undefined).map((e) => e.offset!);
}

function qemuFigures(path: string): { allocated: number; total: number; end: number } {
  const r = runStatus('qemu-img', ['check', '--output=json', path]);
  const j = JSON.parse(r.stdout) as { 'allocated-clusters'?: number; 'total-clusters'?: number; 'image-end-offset'?: number };
  return { allocated: j['allocated-clusters'] ?? 0, total: j['total-clusters'] ?? 0, end: j['image-end-offset'] ?? 0 };
}

/** Our check agrees with qemu-img check on counts and figures, and reads without writing. */
async function agreesWithQemu(path: string): Promise<CheckResult> {
  const before = sha256File(path);
  const ours = await check(path);
  assert.equal(sha256File(path), before, 'a check without repair must not change the file');
  const theirs = qemuCheck(path);
  assert.equal(ours.corruptions, theirs.corruptions, `corruptions differ: ${ours.errors.join('\n')}\nqemu: ${theirs.raw}`);
  assert.equal(ours.leaks, theirs.leaks, `leaks differ: ${ours.errors.join('\n')}\nqemu: ${theirs.raw}`);
  const f = qemuFigures(path);
  assert.equal(ours.allocatedClusters, f.allocated, 'allocated clusters');
  assert.equal(ours.totalClusters, f.total, 'total clusters');
  assert.equal(ours.imageEndOffset, f.end, 'image end offset');
  assert.equal(checkExitStatus(ours), theirs.status, 'exit status');
  return ours;
}

async function expectImageError(path: string, code?: string): Promise<void> {
  const before = sha256File(path);
  await assert.rejects(check(path), (e: unknown) => isImageError(e) && (code === undefined || e.code === code));
  assert.equal(sha256File(path), before);
}

describe('qcow2 check', function () {
  this.timeout(60000);
  const scratch = scratchDir('vmsnap-check-');
  let n = 0;
  const image = (createOptions: string, size = '64M', ...io: string[]): string => {
    const path = scratch.path(`img${n++}.qcow2`);
    qemuImg('create', '-q', '-f', 'qcow2', ...(createOptions ? ['-o', createOptions] : []), path, size);
    if (io.length > 0) qemuIo(path, io);
    return path;
  };
  const withData = (createOptions = '', size = '64M'): string =>
    image(createOptions, size, 'write -P 0x11 0 1M', 'write -P 0x22 5M 192k', 'write -z 8M 128k', 'write -P 0x33 20M 4k');

  before(() => {
    requireTool('qemu-img');
    requireTool('qemu-io');
  });
  after(() => scratch.cleanup());

  describe('clean images report nothing, like qemu-img check', () => {
    it('an empty image', async () => {
      const r = await agreesWithQemu(image(''));
      assert.deepEqual([r.corruptions, r.leaks, r.errors, r.dirty], [0, 0, [], false]);
    });
    it('a version 2 image', async () => {
      await agreesWithQemu(withData('compat=0.10'));
    });
    for (const clusterSize of [512, 4096, 65536, 2 * 1024 * 1024]) {
      it(`cluster size ${clusterSize}`, async () => {
        const r = await agreesWithQemu(withData(`cluster_size=${clusterSize}`));
        assert.equal(r.corruptions + r.leaks, 0);
        assert.ok(r.allocatedClusters > 0);
      });
    }
    for (const bits of [1, 2, 4, 8, 16, 32, 64]) {
      it(`refcount_bits=${bits}`, async () => {
        const path = withData(`refcount_bits=${bits}`);
        // Snapshots need refcounts of 2, which 1-bit refcounts cannot hold.
        if (bits > 1) {
          qemuImg('snapshot', '-c', 'one', path);
          qemuIo(path, ['write -P 0x44 0 64k']);
        }
        const r = await agreesWithQemu(path);
        assert.equal(r.corruptions + r.leaks, 0, r.errors.join('\n'));
      });
    }
    it('compressed clusters, also ones whose sectors span host clusters', async () => {
      // Half-random clusters compress to ~2 KiB each, so they pack across 4 KiB host cluster boundaries.
      const raw = scratch.path(`raw${n++}.img`);
      const data = Buffer.alloc(256 * 4096);
      let seed = 7;
      for (let c = 0; c < 256; c++) {
        for (let i = 0; i < 2000; i++) {
          seed = (seed * 1103515245 + 12345) >>> 0;
          data[c * 4096 + i] = seed >>> 24;
        }
      }
      writeFileSync(raw, data);
      const path = scratch.path(`compressed${n++}.qcow2`);
      qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', raw, path);
      const r = await agreesWithQemu(path);
      assert.equal(r.corruptions + r.leaks, 0);
      assert.equal(r.allocatedClusters, 256);

      // The fixture must really hold compressed clusters that touch two host clusters (spec: x = 62 - (12 - 8)).
      const g = geometry(path);
      const l2 = Number(readBytes(path, g.l1TableOffset, 8).readBigUInt64BE(0) & 0x00fffffffffffe00n);
      const table = readBytes(path, l2, 4096);
      let spanning = 0;
      for (let i = 0; i < 256; i++) {
        const e = table.readBigUInt64BE(i * 8);
        assert.ok(e & (1n << 62n), `entry ${i} is compressed`);
        const x = 62n - 4n;
        const coffset = Number(e & ((1n << x) - 1n));
        const sectors = Number((e >> x) & ((1n << 4n) - 1n)) + 1;
        const end = Math.ceil((coffset + 1) / 512) * 512 + (sectors - 1) * 512;
        if (Math.floor(coffset / 4096) !== Math.floor((end - 1) / 4096)) spanning++;
      }
      assert.ok(spanning > 10, `only ${spanning} compressed clusters span two host clusters`);
    });
    it('internal snapshots sharing clusters with the active layer', async () => {
      const path = withData();
      qemuImg('snapshot', '-c', 'first', path);
      qemuIo(path, ['write -P 0x55 0 256k', 'discard 5M 64k']);
      qemuImg('snapshot', '-c', 'second', path);
      qemuImg('snapshot', '-c', 'third', path);
      qemuIo(path, ['write -P 0x66 30M 1M']);
      qemuImg('snapshot', '-d', 'second', path);
      const r = await agreesWithQemu(path);
      assert.equal(r.corruptions + r.leaks, 0, r.errors.join('\n'));
    });
    it('extended L2 entries (subclusters)', async () => {
      const path = image('extended_l2=on,cluster_size=128k', '64M', 'write -P 1 4k 8k', 'write -z 1M 32k', 'write -P 2 3M 1M', 'discard 3M 64k');
      const r = await agreesWithQemu(path);
      assert.equal(r.corruptions + r.leaks, 0, r.errors.join('\n'));
    });
    it('persistent bitmaps are counted', async () => {
      const path = withData();
      qemuImg('bitmap', '--add', path, 'b0');
      qemuImg('bitmap', '--add', '-g', '512k', path, 'b1');
      qemuIo(path, ['write -P 9 40M 1M']);
      const r = await agreesWithQemu(path);
      assert.equal(r.corruptions + r.leaks, 0, r.errors.join('\n'));
    });
    it('an overlay with a backing file', async () => {
      const base = withData();
      const top = scratch.path(`top${n++}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top);
      qemuIo(top, ['write -P 7 64k 64k']);
      await agreesWithQemu(top);
    });
  });

  describe('leaks', () => {
    for (const bits of [1, 16, 64]) {
      it(`a raised refcount (refcount_bits=${bits}) is a leak qemu-img also sees, and repair clears it`, async () => {
        const path = withData(`refcount_bits=${bits}`);
        // Free a cluster in the middle of the file, then claim it again in the refcount block only.
        // The first extent is guest 0..1M, contiguous on the host: guest 64k is the cluster after its start.
        const victim = (dataOffsets(path)[0]! + 65536) / geometry(path).clusterSize;
        qemuIo(path, ['discard 64k 64k']);
        assert.equal(getRefcount(path, victim), 0n);
        setRefcount(path, victim, 1n);
        const found = await agreesWithQemu(path);
        assert.equal(found.leaks, 1);
        assert.equal(checkExitStatus(found), 3);
        assert.match(found.errors.join('\n'), new RegExp(`cluster 0x${(victim * 65536).toString(16)} refcount 1, referenced 0`));

        const fixed = await check(path, { repair: true });
        assert.deepEqual([fixed.leaks, fixed.corruptions, fixed.repairedLeaks], [0, 0, 1]);
        assert.equal(qemuCheck(path).status, 0);
        assert.equal(getRefcount(path, victim), 0n);
        qemuIo(path, ['read -P 0x11 0 64k', 'read -P 0x11 128k 896k', 'read -P 0x22 5M 192k']);
      });
    }
    it('a cluster shared with a snapshot, counted one time too many', async () => {
      const path = withData('refcount_bits=8');
      qemuImg('snapshot', '-c', 'snap', path);
      const cluster = dataOffsets(path)[0]! / 65536;
      assert.equal(getRefcount(path, cluster), 2n);
      setRefcount(path, cluster, 3n);
      const found = await agreesWithQemu(path);
      assert.equal(found.leaks, 1);
      const fixed = await check(path, { repair: true });
      assert.equal(fixed.repairedLeaks, 1);
      assert.equal(qemuCheck(path).status, 0);
      assert.equal(getRefcount(path, cluster), 2n);
    });
  });

  describe('corruptions', () => {
    it('a used cluster with refcount 0 is reported as qemu-img reports it, and repair raises it', async () => {
      const path = withData();
      const cluster = dataOffsets(path)[0]! / 65536;
      setRefcount(path, cluster, 0n);
      const found = await agreesWithQemu(path);
      assert.ok(found.corruptions >= 1);
      assert.equal(checkExitStatus(found), 2);
      assert.match(found.errors.join('\n'), new RegExp(`cluster 0x${(cluster * 65536).toString(16)} refcount 0, referenced 1`));
      assert.match(found.errors.join('\n'), /COPIED/);

      const fixed = await check(path, { repair: true });
      assert.equal(fixed.corruptions, 0, fixed.errors.join('\n'));
      assert.ok(fixed.repairedCorruptions >= 1);
      assert.equal(qemuCheck(path).status, 0);
      assert.equal(getRefcount(path, cluster), 1n);
      qemuIo(path, ['read -P 0x11 0 1M']);
    });
    it('a wrong COPIED flag is a corruption, and repair flips it', async () => {
      const path = withData();
      const g = geometry(path);
      const l1 = readBytes(path, g.l1TableOffset, 8).readBigUInt64BE(0);
      writeBytes(path, g.l1TableOffset, u64(l1 & ~(1n << 63n)));
      const found = await agreesWithQemu(path);
      assert.equal(found.corruptions, 1);
      const fixed = await check(path, { repair: true });
      assert.deepEqual([fixed.corruptions, fixed.repairedCorruptions], [0, 1]);
      assert.equal(readBytes(path, g.l1TableOffset, 8).readBigUInt64BE(0), l1);
    });
    it('a refcount block missing from the table: repair adds a new one at the end of the file', async () => {
      const path = withData();
      const g = geometry(path);
      writeBytes(path, g.refcountTableOffset, u64(0n));
      const found = await agreesWithQemu(path);
      assert.ok(found.corruptions > 10);
      const size = statSync(path).size;
      const fixed = await check(path, { repair: true });
      assert.equal(fixed.corruptions, 0, fixed.errors.join('\n'));
      assert.equal(qemuCheck(path).status, 0, qemuCheck(path).raw);
      assert.ok(statSync(path).size > size);
      qemuIo(path, ['read -P 0x11 0 1M', 'read -P 0x22 5M 192k']);
    });
    it('a dirty image (lazy refcounts, killed qemu-io): repair fixes the refcounts and clears the dirty bit', async () => {
      const path = image('lazy_refcounts=on');
      // qemu-io raises SIGKILL on itself before it writes the refcounts back.
      const r = runStatus('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 1M', '-c', 'write -P 0xcd 10M 64k', '-c', 'sigraise 9', path]);
      assert.notEqual(r.status, 0);
      assert.equal(qemuInfo(path)['dirty-flag'], true);
      const found = await agreesWithQemu(path);
      assert.equal(found.dirty, true);
      assert.ok(found.corruptions > 0);

      const fixed = await check(path, { repair: true });
      assert.deepEqual([fixed.corruptions, fixed.leaks, fixed.dirty], [0, 0, false], fixed.errors.join('\n'));
      assert.equal(qemuCheck(path).status, 0);
      assert.equal(qemuInfo(path)['dirty-flag'], false);
      qemuIo(path, ['read -P 0xab 0 1M', 'read -P 0xcd 10M 64k']);
    });
    it('an image marked corrupt is checked, and a clean repair clears the bit', async () => {
      const path = withData();
      const features = readBytes(path, 72, 8).readBigUInt64BE(0);
      writeBytes(path, 72, u64(features | 2n));
      const found = await check(path);
      assert.deepEqual([found.corruptions, found.markedCorrupt], [0, true]);
      const fixed = await check(path, { repair: true });
      assert.equal(fixed.markedCorrupt, false);
      assert.equal(readBytes(path, 72, 8).readBigUInt64BE(0), features);
    });
  });

  describe('hostile files: a typed error or a reported corruption, never a crash, a hang or a write', () => {
    it('a file that is not qcow2, or too short for a header', async () => {
      const path = scratch.path('junk.qcow2');
      writeFileSync(path, 'not an image at all, only words');
      await expectImageError(path, 'BAD_MAGIC');
      const short = withData();
      truncateSync(short, 50);
      await expectImageError(short);
      await assert.rejects(check(scratch.path('missing.qcow2')), (e: unknown) => isImageError(e) && e.code === 'NOT_FOUND');
    });
    it('a truncated image: the references past the end are corruptions, as qemu-img counts them', async () => {
      const path = withData();
      truncateSync(path, 6 * 65536);
      const r = await agreesWithQemu(path);
      assert.ok(r.corruptions > 0);
      assert.match(r.errors.join('\n'), /past the end of the file/);
    });
    it('a huge l1_size', async () => {
      const path = withData();
      writeBytes(path, 36, u32(0xffffffff));
      await expectImageError(path, 'INVALID_IMAGE');
    });
    it('a refcount table past the end of the file', async () => {
      const path = withData();
      writeBytes(path, 48, u64(1n << 40n));
      await expectImageError(path, 'INVALID_IMAGE');
    });
    it('an L2 table past the end of the file', async () => {
      const path = withData();
      const g = geometry(path);
      writeBytes(path, g.l1TableOffset, u64((1n << 63n) | 0x10000000n));
      const r = await agreesWithQemu(path);
      assert.ok(r.corruptions > 0);
      // A repair must not crash either; the dangling reference stays a corruption.
      const fixed = await check(path, { repair: true });
      assert.ok(fixed.corruptions > 0);
    });
    it('a data cluster past the end of the file and entries with reserved bits', async () => {
      const path = withData();
      const g = geometry(path);
      const l2 = Number(readBytes(path, g.l1TableOffset, 8).readBigUInt64BE(0) & 0x00fffffffffffe00n);
      writeBytes(path, l2, u64((1n << 63n) | (1n << 50n)));
      writeBytes(path, l2 + 8, u64(readBytes(path, l2 + 8, 8).readBigUInt64BE(0) | 0x0200000000000000n));
      await agreesWithQemu(path);
    });
    it('an L2 table full of random bytes', async () => {
      const path = withData();
      const g = geometry(path);
      const l2 = Number(readBytes(path, g.l1TableOffset, 8).readBigUInt64BE(0) & 0x00fffffffffffe00n);
      let seed = 12345;
      const junk = Buffer.alloc(65536);
      for (let i = 0; i < junk.length; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        junk[i] = seed >>> 24;
      }
      writeBytes(path, l2, junk);
      const before = sha256File(path);
      const r = await check(path);
      assert.ok(r.corruptions > 0);
      assert.ok(r.errors.length <= 1001);
      assert.equal(sha256File(path), before);
    });
    it('every L1 entry pointing at one L2 table, and snapshots sharing one L1 table', async () => {
      const path = withData('cluster_size=4096');
      const g = geometry(path);
      qemuImg('snapshot', '-c', 'a', path);
      qemuImg('snapshot', '-c', 'b', path);
      const first = readBytes(path, g.l1TableOffset, 8);
      const l1Size = readBytes(path, 36, 4).readUInt32BE(0);
      writeBytes(path, g.l1TableOffset, Buffer.concat(Array.from({ length: l1Size }, () => first)));
      const r = await agreesWithQemu(path);
      assert.ok(r.corruptions > 0);
    });
    it('two references to one cluster with 1-bit refcounts overflow, as qemu-img reports', async () => {
      const path = withData('refcount_bits=1');
      const g = geometry(path);
      const l2 = Number(readBytes(path, g.l1TableOffset, 8).readBigUInt64BE(0) & 0x00fffffffffffe00n);
      writeBytes(path, l2 + 8, readBytes(path, l2, 8));
      const r = await agreesWithQemu(path);
      assert.ok(r.corruptions > 0);
      assert.match(r.errors.join('\n'), /more often than its refcount width/);
    });
    it('a snapshot whose L1 table cannot be walked: its clusters look leaked, and repair leaves them alone', async () => {
      const path = withData();
      qemuImg('snapshot', '-c', 'keep', path);
      qemuIo(path, ['write -P 0x77 0 1M']); // the snapshot alone now holds the old data clusters
      const snapshots = Number(readBytes(path, 64, 8).readBigUInt64BE(0));
      const l1 = readBytes(path, snapshots, 8).readBigUInt64BE(0);
      writeBytes(path, snapshots, u64(l1 + 512n));
      const found = await agreesWithQemu(path);
      assert.ok(found.leaks > 0 && found.corruptions > 0);
      const after = await check(path, { repair: true });
      assert.equal(after.repairedLeaks, 0);
      assert.equal(after.leaks, found.leaks);
      assert.match(after.errors.join('\n'), /leaks are not repaired/);
      // Restoring the entry shows nothing the snapshot needs was freed.
      writeBytes(path, snapshots, u64(l1));
      assert.equal(qemuCheck(path).status, 0);
    });
    it('a file too large to count in memory gets a clear error, not an allocation failure', async () => {
      const path = withData('cluster_size=512');
      truncateSync(path, 20 * 1024 * 1024 * 1024); // sparse: 40M clusters of 512 bytes
      const mtime = statSync(path).mtimeMs;
      await assert.rejects(check(path), (e: unknown) => isImageError(e) && /more than the \d+ this check can hold/.test(e.message));
      assert.equal(statSync(path).mtimeMs, mtime);
      truncateSync(path, 0); // do not leave a 20 GiB file for the scratch cleanup to walk
    });
    it('a snapshot table whose entries run past the end of the file: a corruption (exit 2) as in qemu-img', async () => {
      const path = withData();
      qemuImg('snapshot', '-c', 'a', path);
      writeBytes(path, 60, u32(60000));
      const before = sha256File(path);
      const r = await check(path);
      assert.equal(sha256File(path), before);
      assert.match(r.errors.join('\n'), /snapshot table is damaged: entry 1 lies past the end of the file/);
      assert.equal(checkExitStatus(r), 2);
      assert.equal(qemuCheck(path).status, 2);
      // Beyond QEMU's limit of 65536 snapshots both refuse the image (qemu-img check exits 1).
      writeBytes(path, 60, u32(70000));
      await expectImageError(path, 'INVALID_IMAGE');
      assert.equal(runStatus('qemu-img', ['check', path]).status, 1);
    });
    it('a refcount table entry with reserved bits, and one pointing at an L2 table', async () => {
      const path = withData();
      const g = geometry(path);
      const entry = readBytes(path, g.refcountTableOffset, 8).readBigUInt64BE(0);
      const l2 = readBytes(path, g.l1TableOffset, 8).readBigUInt64BE(0) & 0x00fffffffffffe00n;
      writeBytes(path, g.refcountTableOffset + 8, u64(l2));
      const r = await agreesWithQemu(path);
      assert.ok(r.corruptions > 0);
      // A repair never writes into a refcount block that is also an L2 table.
      const l2Before = readBytes(path, Number(l2), 65536);
      await check(path, { repair: true });
      assert.deepEqual(readBytes(path, Number(l2), 65536), l2Before);
      writeBytes(path, g.refcountTableOffset, u64(entry | 1n));
      const r2 = await check(path);
      assert.ok(r2.corruptions > 0);
    });
  });

  it('checkExitStatus maps results like qemu-img check', () => {
    const base: CheckResult = {
      corruptions: 0,
      leaks: 0,
      repairedLeaks: 0,
      repairedCorruptions: 0,
      errors: [],
      allocatedClusters: 0,
      totalClusters: 0,
      imageEndOffset: 0,
      dirty: false,
      markedCorrupt: false,
    };
    assert.equal(checkExitStatus(base), 0);
    assert.equal(checkExitStatus({ ...base, leaks: 3 }), 3);
    assert.equal(checkExitStatus({ ...base, leaks: 3, corruptions: 1 }), 2);
  });
});
