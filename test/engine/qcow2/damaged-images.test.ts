// Damage that once went unnoticed (issue 15): a compressed cluster cut short, a damaged internal snapshot table,
// and the v3 zero flag in a v2 image. Each must be a typed ImageError on read and a corruption in check, with
// nothing written to the image.
import { strict as assert } from 'node:assert';
import { check, checkExitStatus } from '../../../src/engine/qcow2/check';
import { isImageError } from '../../../src/engine/qcow2/errors';
import { Qcow2Image } from '../../../src/engine/qcow2/image';
import { readU64, writeU64 } from '../../support/fixtures';
import { qemuCheck, qemuImg, qemuInfo, requireTool, runStatus, scratchDir, sha256File } from '../../support/qemu';
import { damagedSnapshotTable, shortCompressedImage, v2ZeroFlagImage } from './damaged-fixtures';

/** Reads the whole disk; resolves with the error, or null when every byte read. */
async function readAll(path: string): Promise<unknown> {
  let image: Qcow2Image | null = null;
  try {
    image = await Qcow2Image.open(path);
    const buf = Buffer.alloc(1024 * 1024);
    for (let at = 0; at < image.size; at += buf.length) await image.read(buf.subarray(0, Math.min(buf.length, image.size - at)), at);
    return null;
  } catch (e) {
    return e;
  } finally {
    await image?.close();
  }
}

describe('qcow2 damaged images: typed errors and corruptions, never silent damage', function () {
  this.timeout(60000);
  const scratch = scratchDir('vmsnap-damaged-');
  const p = scratch.path;
  before(() => {
    requireTool('qemu-img');
    requireTool('qemu-io');
  });
  after(() => scratch.cleanup());

  it('a compressed cluster whose deflate stream is cut short is an INVALID_IMAGE error, not zero-padded data', async () => {
    shortCompressedImage(p('short.qcow2'), p('short.raw'));
    // QEMU refuses it too: the fixture is what it claims.
    assert.notEqual(runStatus('qemu-img', ['convert', '-U', '-O', 'raw', p('short.qcow2'), p('short-qemu.raw')]).status, 0);
    const before = sha256File(p('short.qcow2'));
    const e = await readAll(p('short.qcow2'));
    assert.ok(isImageError(e) && e.code === 'INVALID_IMAGE', `expected INVALID_IMAGE, got ${String(e)}`);
    assert.match((e as Error).message, /compressed cluster at offset \d+ decompresses to \d+ bytes instead of 65536/);
    assert.equal(sha256File(p('short.qcow2')), before, 'a read must not write to the image');
  });

  it('a v2 image with the v3 zero flag in an L2 entry: reading it is refused and check counts a corruption', async () => {
    v2ZeroFlagImage(p('v2zero.qcow2'));
    assert.notEqual(runStatus('qemu-img', ['convert', '-U', '-O', 'raw', p('v2zero.qcow2'), p('v2zero.raw')]).status, 0);
    const before = sha256File(p('v2zero.qcow2'));
    const e = await readAll(p('v2zero.qcow2'));
    assert.ok(isImageError(e) && e.code === 'INVALID_IMAGE', `expected INVALID_IMAGE, got ${String(e)}`);
    const r = await check(p('v2zero.qcow2'));
    assert.equal(r.corruptions, 1, r.errors.join('\n'));
    assert.match(r.errors.join('\n'), /version 3 zero flag is set in a version 2 image/);
    assert.equal(checkExitStatus(r), 2);
    assert.equal(sha256File(p('v2zero.qcow2')), before);
  });

  for (const damage of ['too-many', 'past-end', 'nul-in-name', 'l1-past-end'] as const) {
    it(`a damaged snapshot table (${damage}): opening refuses it, check exits 2 like qemu-img, and repair does not claim to fix it`, async () => {
      const path = p(`snap-${damage}.qcow2`);
      damagedSnapshotTable(path, damage);
      await assert.rejects(Qcow2Image.open(path), (e: unknown) => isImageError(e) && e.code === 'INVALID_IMAGE');
      if (damage !== 'nul-in-name') assert.equal(qemuCheck(path).status, 2, 'qemu-img check finds the damage too');
      const before = sha256File(path);
      const r = await check(path);
      assert.equal(sha256File(path), before);
      assert.ok(r.corruptions >= 1, r.errors.join('\n'));
      assert.match(r.errors.join('\n'), /snapshot table is damaged|snapshot L1 table/);
      assert.equal(checkExitStatus(r), 2);
      const repaired = await check(path, { repair: true });
      assert.ok(repaired.corruptions >= 1, 'the damage is still reported after a repair');
      assert.equal(checkExitStatus(repaired), 2);
      await assert.rejects(Qcow2Image.open(path), (e: unknown) => isImageError(e) && e.code === 'INVALID_IMAGE');
    });
  }
  it('a virtual size in the header that is not a multiple of 512 is seen as QEMU sees it: rounded down to whole sectors', async () => {
    // Found by the fuzz test: we read one byte more than qemu-img convert gave.
    qemuImg('create', '-q', '-f', 'qcow2', p('odd.qcow2'), '1M');
    writeU64(p('odd.qcow2'), 24, 1024 * 1024 + 1);
    assert.equal(qemuInfo(p('odd.qcow2'))['virtual-size'], 1024 * 1024);
    qemuImg('snapshot', '-c', 'odd', p('odd.qcow2'));
    const image = await Qcow2Image.open(p('odd.qcow2'));
    try {
      assert.equal(image.size, 1024 * 1024);
      assert.equal((await image.openSnapshot('odd')).size, 1024 * 1024);
    } finally {
      await image.close();
    }
  });
  it('a damaged refcount table: read-only opens read the data as qemu-img does (the rescue path), writing is refused', async () => {
    // Found by the fuzz test: qemu-img converts such an image; we refused it even for reading.
    const path = p('refcount.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', path, '1M');
    runStatus('qemu-io', ['-c', 'write -P 0x5c 0 192k', path]);
    const table = Number(readU64(path, 48));
    writeU64(path, table, readU64(path, table) | 0x100n); // the first refcount block's offset, no longer aligned
    assert.equal(runStatus('qemu-img', ['convert', '-U', '-O', 'raw', path, p('refcount-qemu.raw')]).status, 0, 'qemu-img reads it');
    const before = sha256File(path);
    assert.equal(await readAll(path), null);
    const image = await Qcow2Image.open(path);
    try {
      const head = Buffer.alloc(192 * 1024);
      await image.read(head, 0);
      assert.ok(head.every((b) => b === 0x5c));
    } finally {
      await image.close();
    }
    await assert.rejects(Qcow2Image.open(path, { writable: true }), (e: unknown) => isImageError(e) && /refcount table entry 0 is not cluster aligned/.test(e.message));
    assert.equal(sha256File(path), before);
    assert.equal(qemuCheck(path).status, 2, 'check still reports it');
  });

  describe('header fields QEMU refuses are refused too (found by the fuzz test)', () => {
    const cases: Array<{ name: string; damage: (path: string) => void }> = [
      { name: 'an unaligned snapshot table offset with no snapshots', damage: (f) => writeU64(f, 64, 700) },
      { name: 'the compression type bit with zlib compression', damage: (f) => writeU64(f, 72, 1n << 3n) },
      { name: 'an end-of-extensions marker whose length runs past the header cluster', damage: (f) => writeU64(f, 112, 0x11c00) },
      { name: 'the data-file-raw autoclear bit without an external data file', damage: (f) => writeU64(f, 88, 2n) },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const path = p(`header-${cases.indexOf(c)}.qcow2`);
        qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', path, '1M');
        for (let at = 112; at < 512; at += 8) writeU64(path, at, 0n); // no extensions: only the end marker at 112
        c.damage(path);
        assert.notEqual(runStatus('qemu-img', ['convert', '-U', '-O', 'raw', path, p('header.raw')]).status, 0, 'qemu-img refuses it');
        await assert.rejects(Qcow2Image.open(path), (e: unknown) => isImageError(e) && e.code === 'INVALID_IMAGE');
      });
    }
  });
});
