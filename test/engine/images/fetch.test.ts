// The image cache as `vm create --from-image` relies on it: a cloud image from a URL or a path lands once, whole
// and checked, as a read-only `<sha256>.<format>` file; a second fetch costs no request; and every failure of
// the network, the server or the checksum is one sentence with nothing left in the cache.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fetchImage, isImageFetchError, listCachedImages, removeCachedImage, type CachedImage, type FetchImageOptions, type ImageFetchErrorCode } from '../../../src/engine/images';
import { qemuInfo, qemuSame, scratchDir } from '../../support/qemu';
import { cacheState, closedPort, ImageServer, KiB, makeQcow2, makeRawMbr, requireImageTools, sha256Of } from './image-fixtures';

/** Fails unless `run` throws an ImageFetchError with `code`, and the cache folder is as it was before. */
async function refused(cacheDir: string, code: ImageFetchErrorCode, run: () => Promise<unknown>, message?: RegExp): Promise<Error> {
  const before = cacheState(cacheDir);
  let error: unknown;
  try {
    await run();
  } catch (e) {
    error = e;
  }
  assert.ok(isImageFetchError(error), `expected an ImageFetchError ${code}, got ${error instanceof Error ? error.stack : String(error)}`);
  assert.equal(error.code, code, error.message);
  assert.doesNotMatch(error.message, /\n|\bat .*:\d+:\d+/, 'one sentence, no stack');
  if (message !== undefined) assert.match(error.message, message);
  assert.equal(cacheState(cacheDir), before, 'the cache holds nothing new after a failure');
  return error;
}

function progressLog(): { calls: [number, number | null][]; onProgress: (done: number, total: number | null) => void } {
  const calls: [number, number | null][] = [];
  return { calls, onProgress: (done, total) => calls.push([done, total]) };
}

function assertMonotonic(calls: [number, number | null][], size: number, total: number | null): void {
  assert.ok(calls.length >= 3, `progress reported ${calls.length} times`);
  assert.deepEqual(calls[0], [0, total]);
  for (let i = 1; i < calls.length; i++) assert.ok(calls[i]![0] >= calls[i - 1]![0], `progress went back at ${i}: ${JSON.stringify(calls)}`);
  for (const [done, t] of calls.slice(0, -1)) {
    assert.equal(t, total);
    assert.ok(done <= size);
  }
  assert.deepEqual(calls.at(-1), [size, size]);
}

function assertCachedCopyOf(image: CachedImage, original: string, cacheDir: string): void {
  assert.equal(image.sha256, sha256Of(original));
  assert.equal(image.path, join(cacheDir, `${image.sha256}.${image.format}`));
  assert.equal(sha256Of(image.path), image.sha256);
  assert.equal(statSync(image.path).mode & 0o777, 0o444, 'the cached image is read-only');
  assert.equal(image.size, statSync(original).size);
  const info = qemuInfo(image.path);
  assert.equal(info.format, image.format);
  assert.equal(image.virtualSize, info['virtual-size']);
  assert.ok(qemuSame(original, image.path));
}

describe('image cache: fetching cloud images', function () {
  const scratch = scratchDir('vmsnap-images-');
  let server: ImageServer;
  let qcow2: string;
  let raw: string;
  let n = 0;
  /** A fresh, empty cache folder per test. */
  const freshCache = (): string => {
    const dir = scratch.path(`cache-${++n}`);
    mkdirSync(dir);
    return dir;
  };

  before(async function () {
    requireImageTools();
    qcow2 = scratch.path('cloud.qcow2');
    raw = scratch.path('disk.raw');
    makeQcow2(qcow2);
    makeRawMbr(raw);
    server = await ImageServer.start();
    server.serveFile('/cloud.qcow2', qcow2);
    server.serveFile('/disk.raw', raw, { length: false });
    server.serveFile('/slow.qcow2', qcow2, { chunkDelayMs: 5 });
    server.serveFile('/stall.qcow2', qcow2, { stallAfter: 128 * KiB });
    server.serveFile('/cut.qcow2', qcow2, { cutAfter: 256 * KiB });
    server.route('/no-answer', () => {}); // takes the request, never answers
    server.redirect('/latest', '/cloud.qcow2', 302);
    server.redirect('/moved', '/latest', 301);
    for (let i = 0; i < 7; i++) server.redirect(`/hop${i}`, `/hop${i + 1}`);
    server.route('/login', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body><form>user <input name=u></form></body></html>\n');
    });
    server.route('/error', (_req, res) => {
      res.writeHead(503, 'Service Unavailable');
      res.end();
    });
    server.route('/forbidden', (_req, res) => {
      res.writeHead(403, 'Forbidden');
      res.end();
    });
  });

  after(async function () {
    await server?.close();
    scratch.cleanup();
  });

  it('downloads a qcow2 with monotonic progress, keeps it read-only by hash, and records it in the index', async function () {
    const cacheDir = freshCache();
    const log = progressLog();
    const image = await fetchImage(server.url('/cloud.qcow2'), { cacheDir, onProgress: log.onProgress });
    assert.equal(image.format, 'qcow2');
    assert.equal(image.virtualSize, 64 * 1024 * 1024);
    assert.equal(image.fromCache, false);
    assert.equal(image.source, server.url('/cloud.qcow2'));
    assertCachedCopyOf(image, qcow2, cacheDir);
    assertMonotonic(log.calls, image.size, image.size);
    const index = JSON.parse(readFileSync(join(cacheDir, 'index.json'), 'utf8')) as { sources: Record<string, { sha256: string; size: number; etag?: string }> };
    assert.equal(index.sources[server.url('/cloud.qcow2')]?.sha256, image.sha256);
    assert.equal(index.sources[server.url('/cloud.qcow2')]?.size, image.size);
    assert.equal(index.sources[server.url('/cloud.qcow2')]?.etag, `"${image.size}"`);
    assert.deepEqual(readdirSync(cacheDir).sort(), [`${image.sha256}.qcow2`, 'index.json']);
  });

  it('a second fetch of the same URL returns the cached image without a request', async function () {
    const cacheDir = freshCache();
    const first = await fetchImage(server.url('/cloud.qcow2'), { cacheDir });
    const requests = server.total();
    const log = progressLog();
    const second = await fetchImage(server.url('/cloud.qcow2'), { cacheDir, onProgress: log.onProgress });
    const third = await fetchImage(server.url('/cloud.qcow2'), { cacheDir, sha256: `sha256:${first.sha256.toUpperCase()}` });
    assert.equal(server.total(), requests, 'no request for a cached source');
    assert.equal(second.fromCache, true);
    assert.equal(third.fromCache, true);
    assert.deepEqual({ ...second, fromCache: false }, first);
    assert.deepEqual(log.calls, [[first.size, first.size]]);
  });

  it('a known sha256 finds the image under another URL without a request; refresh fetches again', async function () {
    const cacheDir = freshCache();
    const first = await fetchImage(server.url('/cloud.qcow2'), { cacheDir });
    const requests = server.total();
    const before = server.count('/cloud.qcow2');
    const viaHash = await fetchImage(server.url('/mirror/cloud.qcow2'), { cacheDir, sha256: first.sha256 });
    assert.equal(server.total(), requests);
    assert.equal(viaHash.path, first.path);
    const refreshed = await fetchImage(server.url('/cloud.qcow2'), { cacheDir, refresh: true });
    assert.equal(server.count('/cloud.qcow2'), before + 1);
    assert.equal(refreshed.fromCache, false);
    assert.equal(refreshed.path, first.path);
    assert.equal((await listCachedImages(cacheDir)).length, 1);
  });

  it('downloads a raw image with an MBR sent without Content-Length (total unknown until the end)', async function () {
    const cacheDir = freshCache();
    const log = progressLog();
    const image = await fetchImage(server.url('/disk.raw'), { cacheDir, onProgress: log.onProgress });
    assert.equal(image.format, 'raw');
    assert.equal(image.virtualSize, statSync(raw).size);
    assertCachedCopyOf(image, raw, cacheDir);
    assertMonotonic(log.calls, image.size, null);
  });

  it('follows redirects to the image and records it under the URL asked for', async function () {
    const cacheDir = freshCache();
    const image = await fetchImage(server.url('/moved'), { cacheDir, sha256: sha256Of(qcow2) });
    assert.equal(image.source, server.url('/moved'));
    assertCachedCopyOf(image, qcow2, cacheDir);
    assert.deepEqual((await listCachedImages(cacheDir)).map((i) => i.sources), [[server.url('/moved')]]);
  });

  it('copies a qcow2 and a raw image from a path, and a second fetch of an unchanged file copies nothing', async function () {
    const cacheDir = freshCache();
    const log = progressLog();
    const a = await fetchImage(qcow2, { cacheDir, onProgress: log.onProgress });
    assertCachedCopyOf(a, qcow2, cacheDir);
    assertMonotonic(log.calls, a.size, a.size);
    const b = await fetchImage(raw, { cacheDir });
    assertCachedCopyOf(b, raw, cacheDir);
    assert.equal(b.source, raw);
    const again = await fetchImage(qcow2, { cacheDir });
    assert.equal(again.fromCache, true);
    // A touched file is hashed again: same bytes, same cached image.
    const later = new Date(Date.now() + 5000);
    utimesSync(raw, later, later);
    const touched = await fetchImage(raw, { cacheDir });
    assert.equal(touched.fromCache, false);
    assert.equal(touched.path, b.path);
    const listed = await listCachedImages(cacheDir);
    assert.deepEqual(listed.map((i) => [i.format, i.sha256, i.virtualSize, i.sources]).sort(), [
      ['qcow2', a.sha256, a.virtualSize, [qcow2]],
      ['raw', b.sha256, b.virtualSize, [raw]],
    ].sort());
  });

  it('removes a cached image and its index entries; an unknown hash is NOT_FOUND', async function () {
    const cacheDir = freshCache();
    const a = await fetchImage(server.url('/cloud.qcow2'), { cacheDir });
    await removeCachedImage(cacheDir, a.sha256);
    assert.deepEqual(await listCachedImages(cacheDir), []);
    assert.deepEqual(JSON.parse(readFileSync(join(cacheDir, 'index.json'), 'utf8')).sources, {});
    await refused(cacheDir, 'NOT_FOUND', () => removeCachedImage(cacheDir, a.sha256), /no image with sha256/);
    const again = await fetchImage(server.url('/cloud.qcow2'), { cacheDir });
    assert.equal(again.fromCache, false, 'a removed image is fetched again');
  });

  describe('failures leave nothing behind', function () {
    const opts = (cacheDir: string, more: Partial<FetchImageOptions> = {}): FetchImageOptions => ({ cacheDir, ...more });

    it('a sha256 mismatch names both hashes, over HTTP and from a path', async function () {
      const cacheDir = freshCache();
      const wrong = 'ab'.repeat(32);
      const actual = sha256Of(qcow2);
      const e = await refused(cacheDir, 'CHECKSUM_MISMATCH', () => fetchImage(server.url('/cloud.qcow2'), opts(cacheDir, { sha256: wrong })));
      assert.ok(e.message.includes(wrong) && e.message.includes(actual), e.message);
      await refused(cacheDir, 'CHECKSUM_MISMATCH', () => fetchImage(qcow2, opts(cacheDir, { sha256: `sha256:${wrong}` })), new RegExp(actual));
      // Also when the index already knows the (unchanged) file: refused before any copy.
      const known = await fetchImage(qcow2, opts(cacheDir));
      await refused(cacheDir, 'CHECKSUM_MISMATCH', () => fetchImage(qcow2, opts(cacheDir, { sha256: wrong })), new RegExp(known.sha256));
    });

    it('a malformed sha256 is refused before anything is fetched', async function () {
      const cacheDir = freshCache();
      const before = server.total();
      await refused(cacheDir, 'INVALID_ARGUMENT', () => fetchImage(server.url('/cloud.qcow2'), opts(cacheDir, { sha256: 'abc' })), /64 hexadecimal digits/);
      assert.equal(server.total(), before);
    });

    it('404 is NOT_FOUND; 503 and 403 are HTTP_STATUS with the status', async function () {
      const cacheDir = freshCache();
      await fetchImage(server.url('/cloud.qcow2'), opts(cacheDir)); // a cache with something in it
      await refused(cacheDir, 'NOT_FOUND', () => fetchImage(server.url('/nothing-here.qcow2'), opts(cacheDir)), /does not exist on the server \(404 Not Found\): check the URL/);
      const e = await refused(cacheDir, 'HTTP_STATUS', () => fetchImage(server.url('/error'), opts(cacheDir)), /503 Service Unavailable: the server failed: try again later/);
      assert.equal(isImageFetchError(e) && e.status, 503);
      await refused(cacheDir, 'HTTP_STATUS', () => fetchImage(server.url('/forbidden'), opts(cacheDir)), /403 Forbidden: the server refuses access/);
    });

    it('connection refused and an unknown host are UNREACHABLE', async function () {
      const cacheDir = freshCache();
      const port = await closedPort();
      await refused(cacheDir, 'UNREACHABLE', () => fetchImage(`http://127.0.0.1:${port}/cloud.qcow2`, opts(cacheDir)), /refused the connection.*check the URL, including its port/);
      await refused(cacheDir, 'UNREACHABLE', () => fetchImage('http://vmsnap-test.invalid/cloud.qcow2', opts(cacheDir)), /vmsnap-test\.invalid cannot be found/);
    });

    it('a server that stalls mid-body, or never answers, times out after the idle time', async function () {
      const cacheDir = freshCache();
      const t0 = Date.now();
      await refused(cacheDir, 'TIMEOUT', () => fetchImage(server.url('/stall.qcow2'), opts(cacheDir, { idleTimeoutMs: 300 })), /sent nothing for 300 ms after 131072 bytes: the server stalled; try again later/);
      await refused(cacheDir, 'TIMEOUT', () => fetchImage(server.url('/no-answer'), opts(cacheDir, { idleTimeoutMs: 300 })), /sent nothing/);
      assert.ok(Date.now() - t0 < 5000, 'the idle timeout is honoured');
    });

    it('a connection closed before the whole file is INTERRUPTED', async function () {
      const cacheDir = freshCache();
      await refused(cacheDir, 'INTERRUPTED', () => fetchImage(server.url('/cut.qcow2'), opts(cacheDir)), /broke off after \d+ (of \d+ )?bytes: try again/);
    });

    it('more than 5 redirects are refused', async function () {
      const cacheDir = freshCache();
      await refused(cacheDir, 'BAD_REDIRECT', () => fetchImage(server.url('/hop0'), opts(cacheDir)), /redirected more than 5 times/);
      assert.equal(server.count('/hop5'), 1);
      assert.equal(server.count('/hop6'), 0);
    });

    it('cancelling midway stops the download and removes the partial file', async function () {
      const cacheDir = freshCache();
      const controller = new AbortController();
      let seen = 0;
      const onProgress = (done: number): void => {
        seen = done;
        if (done >= 512 * KiB) controller.abort();
      };
      await refused(cacheDir, 'CANCELLED', () => fetchImage(server.url('/slow.qcow2'), opts(cacheDir, { onProgress, signal: controller.signal })), /was cancelled/);
      assert.ok(seen >= 512 * KiB && seen < statSync(qcow2).size, `cancelled midway (at ${seen})`);
      // A signal aborted before the call: nothing at all happens.
      const before = server.total();
      await refused(cacheDir, 'CANCELLED', () => fetchImage(server.url('/cloud.qcow2'), opts(cacheDir, { signal: AbortSignal.abort() })));
      assert.equal(server.total(), before);
    });

    it('a login page returned with 200 is "a web page, not a disk image"', async function () {
      const cacheDir = freshCache();
      await refused(cacheDir, 'NOT_AN_IMAGE', () => fetchImage(server.url('/login'), opts(cacheDir)), /returned a web page, not a disk image: check the URL/);
    });

    it('a missing local file is NOT_FOUND, a folder is not an image', async function () {
      const cacheDir = freshCache();
      await refused(cacheDir, 'NOT_FOUND', () => fetchImage(scratch.path('no-such.qcow2'), opts(cacheDir)), /does not exist: check the path/);
      await refused(cacheDir, 'NOT_AN_IMAGE', () => fetchImage(scratch.dir, opts(cacheDir)), /is a folder/);
      await refused(cacheDir, 'INVALID_ARGUMENT', () => fetchImage('ftp://example.org/x.qcow2', opts(cacheDir)), /ftp:\/\/" addresses cannot be fetched/);
    });

    it('leftover partial files of a dead fetch are swept, fresh ones are left alone', async function () {
      const cacheDir = freshCache();
      await fetchImage(raw, opts(cacheDir));
      const old = join(cacheDir, 'deadbeef.partial');
      const fresh = join(cacheDir, 'cafe.partial');
      writeFileSync(old, 'x');
      writeFileSync(fresh, 'y');
      const past = new Date(Date.now() - 3600_000);
      utimesSync(old, past, past);
      copyFileSync(qcow2, scratch.path('other.qcow2'));
      await fetchImage(scratch.path('other.qcow2'), opts(cacheDir));
      const names = cacheState(cacheDir);
      assert.doesNotMatch(names, /deadbeef\.partial/);
      assert.match(names, /cafe\.partial/);
    });
  });
});
