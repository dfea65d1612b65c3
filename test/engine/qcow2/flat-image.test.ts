// Flattening into a new image (the one-pass writer of ops/flat-image.ts) on chains shaped to hit its edges: many
// small scattered runs, zeros in an upper layer over data below, a backing file shorter than the top, a size
// that is not a whole number of clusters, tiny clusters, compressed clusters, and a full disk. QEMU is the
// oracle: qemu-img compare against the chain, qemu-img check on the result.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, statfsSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { flatten } from '../../../src/engine/qcow2/ops';
import { createQcow2, createRaw, expectImageError, type GuestOp, KiB, MiB, qemuApply } from '../../support/fixtures';
import { qemuCheck, qemuImg, qemuSame, requireTool, scratchDir } from '../../support/qemu';

function w(pattern: number, offset: number, length: number): GuestOp {
  return { kind: 'write', offset, length, pattern };
}
function z(offset: number, length: number): GuestOp {
  return { kind: 'zero', offset, length };
}

/** The flattened copy reads like the chain, qemu-img check is clean, and it stores no more data than qemu-img. */
function expectFaithful(copy: string, chain: string, clusterSize = 65536): void {
  assert.ok(qemuSame(copy, chain), `${copy} reads differently from ${chain}`);
  const r = qemuCheck(copy);
  assert.equal(r.corruptions + r.leaks + r.checkErrors, 0, r.raw);
  assert.equal(r.status, 0, r.raw);
  const theirs = `${copy}.qemu.qcow2`;
  qemuImg('convert', '-O', 'qcow2', '-o', `cluster_size=${clusterSize}`, chain, theirs);
  assert.ok(dataBytes(copy) <= dataBytes(theirs), `${copy} stores ${dataBytes(copy)} bytes, qemu-img ${dataBytes(theirs)}`);
}

function dataBytes(image: string): number {
  const entries = JSON.parse(qemuImg('map', '--output=json', image)) as { length: number; depth: number; data: boolean; present: boolean }[];
  return entries.filter((e) => e.depth === 0 && e.present && e.data).reduce((n, e) => n + e.length, 0);
}

describe('flatten into a new image, on chains shaped to hit the writer’s edges', function () {
  this.timeout(120_000);
  let s: ReturnType<typeof scratchDir>;
  before(() => {
    requireTool('qemu-img');
    requireTool('qemu-io');
    s = scratchDir('vmsnap-flat-');
  });
  after(() => s.cleanup());

  it('many small scattered runs over three layers, zero clusters over data below, several L2 tables', async () => {
    const dir = s.path('scattered');
    mkdirSync(dir);
    const base = join(dir, 'base.qcow2');
    const mid = join(dir, 'mid.qcow2');
    const top = join(dir, 'top.qcow2');
    // 4 KiB clusters: one L2 table covers 2 MiB, so the 40 MiB disk needs many.
    createQcow2(base, { size: 40 * MiB, clusterSize: 4096 });
    qemuApply(base, [w(0x11, 0, 12 * MiB), w(0x12, 30 * MiB, 3 * MiB)]);
    createQcow2(mid, { backing: 'base.qcow2', clusterSize: 65536 });
    const scattered: GuestOp[] = [];
    for (let i = 0; i < 300; i++) scattered.push(w((i % 200) + 1, 14 * MiB + i * 37 * KiB, 3 * KiB + (i % 5) * 1000));
    qemuApply(mid, [...scattered, z(2 * MiB, 1 * MiB), w(0x21, 5 * MiB + 123, 70 * KiB)]);
    createQcow2(top, { backing: 'mid.qcow2', clusterSize: 4096 });
    // Zeros over data of both layers below, partly unaligned; data written as zeros (read as zeros, not stored).
    qemuApply(top, [z(0, 64 * KiB), z(14 * MiB, 200 * KiB), w(0x00, 31 * MiB, 1 * MiB), w(0x31, 8 * MiB - 5, 10), z(30 * MiB + 4096, 8 * KiB)]);
    for (const clusterSize of [512, 4096, 65536, 2 * MiB]) {
      const out = join(dir, `flat-${clusterSize}.qcow2`);
      const r = await flatten(top, out, { clusterSize });
      expectFaithful(out, top, clusterSize);
      assert.equal(r.dataBytes, dataBytes(out), "the reported data bytes are what the image stores");
    }
  });

  it('a backing file shorter than the top, and a disk size that is not a whole number of clusters', async () => {
    const dir = s.path('short');
    mkdirSync(dir);
    const base = join(dir, 'base.raw');
    const top = join(dir, 'top.qcow2');
    createRaw(base, 3 * MiB + 512);
    qemuApply(base, [w(0x41, 0, 3 * MiB + 512)], 'raw');
    createQcow2(top, { backing: 'base.raw', backingFormat: 'raw', size: 10 * MiB + 1536 });
    qemuApply(top, [w(0x42, 10 * MiB, 1536), w(0x43, 2 * MiB, 4 * KiB)]);
    const out = join(dir, 'flat.qcow2');
    await flatten(top, out);
    expectFaithful(out, top);
    assert.equal(JSON.parse(qemuImg('info', '--output=json', out))['virtual-size'], 10 * MiB + 1536);
  });

  it('compressed clusters and an empty disk', async () => {
    const dir = s.path('compressed');
    mkdirSync(dir);
    const img = join(dir, 'c.qcow2');
    createQcow2(img, { size: 8 * MiB });
    qemuApply(img, [{ kind: 'compressed', offset: 1 * MiB, length: 256 * KiB, pattern: 0x51 }, w(0x52, 4 * MiB, 64 * KiB)]);
    const out = join(dir, 'flat.qcow2');
    await flatten(img, out);
    expectFaithful(out, img);
    const empty = join(dir, 'empty.qcow2');
    createQcow2(empty, { size: 5 * MiB });
    const flatEmpty = join(dir, 'flat-empty.qcow2');
    assert.equal((await flatten(empty, flatEmpty)).dataBytes, 0);
    expectFaithful(flatEmpty, empty);
  });

  it('a full disk fails with NO_SPACE and leaves no file behind', async function () {
    // Fails rather than skips: the full disk is a real 16 MiB tmpfs, which only root can mount.
    if (process.getuid?.() !== 0) throw new Error('The full-disk test mounts a small tmpfs: run it as root.');
    const source = s.path('source.qcow2');
    createQcow2(source, { size: 64 * MiB });
    qemuApply(source, [w(0x61, 0, 24 * MiB)]);
    const mnt = s.path('small');
    mkdirSync(mnt);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mnt], { encoding: 'utf8' });
    assert.equal(m.status, 0, `mount -t tmpfs failed: ${m.stderr}`);
    try {
      // Leave about 6 MiB free: the copy fails partway through its data.
      const st = statfsSync(mnt);
      const fd = openSync(join(mnt, 'filler'), 'w');
      const chunk = Buffer.alloc(MiB, 0xee);
      for (let left = st.bavail * st.bsize - 6 * MiB; left > 0; left -= MiB) writeSync(fd, chunk, 0, Math.min(MiB, left));
      closeSync(fd);
      const out = join(mnt, 'flat.qcow2');
      await expectImageError(() => flatten(source, out), 'NO_SPACE', 'full disk');
      assert.equal(existsSync(out), false);
      assert.deepEqual(readdirSync(mnt), ['filler'], 'no temporary file is left');
    } finally {
      spawnSync('umount', [mnt]);
    }
  });
});
