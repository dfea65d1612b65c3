// A full disk under the image cache: a download whose announced length cannot fit is refused before it starts,
// one without a length fails with NO_SPACE when the kernel says ENOSPC, a local copy likewise, and each leaves
// the cache as it was; once space is freed the same fetch succeeds. The disk is a real small tmpfs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import { fetchImage, isImageFetchError } from '../../../src/engine/images';
import { scratchDir } from '../../support/qemu';
import { cacheState, ImageServer, MiB, makeQcow2, requireImageTools } from './image-fixtures';

describe('image cache: a full disk', function () {
  const scratch = scratchDir('vmsnap-image-nospace-');
  const cacheDir = scratch.path('cache');
  const filler = `${cacheDir}/filler`;
  let server: ImageServer;
  let qcow2: string;
  let mounted = false;

  /** Leaves about `free` bytes free on the tmpfs (the filler sits beside the cache folder, on the same tmpfs). */
  function leaveFree(free: number): void {
    rmSync(filler, { force: true });
    const fs = statfsSync(cacheDir);
    writeFileSync(filler, Buffer.alloc(Math.max(0, fs.bavail * fs.bsize - free)));
  }

  before(async function () {
    requireImageTools();
    qcow2 = scratch.path('cloud.qcow2');
    makeQcow2(qcow2);
    mkdirSync(cacheDir);
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', cacheDir], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`The full-disk tests need a small tmpfs, but mount failed (${r.stderr.trim()}): run them as root.`);
    mounted = true;
    mkdirSync(`${cacheDir}/images`);
    server = await ImageServer.start();
    server.serveFile('/with-length.qcow2', qcow2);
    server.serveFile('/without-length.qcow2', qcow2, { length: false });
  });

  after(async function () {
    await server?.close();
    if (mounted) spawnSync('umount', ['-l', cacheDir]);
    scratch.cleanup();
  });

  async function noSpace(source: string, message: RegExp): Promise<void> {
    const dir = `${cacheDir}/images`;
    const before = cacheState(dir);
    await assert.rejects(fetchImage(source, { cacheDir: dir }), (e: unknown) => {
      assert.ok(isImageFetchError(e), String(e));
      assert.equal(e.code, 'NO_SPACE', e.message);
      assert.match(e.message, message);
      return true;
    });
    assert.equal(cacheState(dir), before);
  }

  it('refuses, with nothing left, when the image cannot fit; succeeds once space is freed', async function () {
    const size = statSync(qcow2).size;
    assert.ok(size > 3 * MiB);
    leaveFree(1 * MiB);
    await noSpace(server.url('/with-length.qcow2'), /needs 4 MiB but the disk holding the image cache .* has \d MiB free: free some space/);
    await noSpace(server.url('/without-length.qcow2'), /The disk holding the image cache .* is full: free some space and try again/);
    await noSpace(qcow2, /needs 4 MiB but the disk holding the image cache/);
    rmSync(filler);
    const image = await fetchImage(server.url('/without-length.qcow2'), { cacheDir: `${cacheDir}/images` });
    assert.equal(image.size, size);
  });
});
