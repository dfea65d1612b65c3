// The image cache shared by several processes (two windows, the CLI) and reached over HTTPS: concurrent fetches
// of one image both succeed and leave one file and one index; HTTPS downloads work with a trusted certificate,
// an untrusted one is refused, and a redirect from https down to http is refused.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { fetchImage, isImageFetchError } from '../../../src/engine/images';
import { scratchDir } from '../../support/qemu';
import { cacheState, ImageServer, makeCertificate, makeQcow2, requireImageTools, sha256Of } from './image-fixtures';

interface ChildOutcome {
  image?: { path: string; sha256: string; fromCache: boolean };
  error?: { code: string; message: string };
}

describe('image cache: several processes, and HTTPS', function () {
  const scratch = scratchDir('vmsnap-image-procs-');
  let child: string;
  let qcow2: string;
  let plain: ImageServer;
  let secure: ImageServer;
  let certFile: string;

  function runChild(source: string, cacheDir: string, env: NodeJS.ProcessEnv = {}): Promise<ChildOutcome> {
    return new Promise((resolve, reject) => {
      const p = spawn(process.execPath, [child, source, cacheDir], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      p.on('error', reject);
      p.on('close', (status) => {
        if (status !== 0) reject(new Error(`fetch-child exited ${status}: ${err}`));
        else resolve(JSON.parse(out) as ChildOutcome);
      });
    });
  }

  before(async function () {
    requireImageTools();
    child = scratch.path('fetch-child.js');
    buildSync({ entryPoints: [join(__dirname, 'fetch-child.ts')], bundle: true, platform: 'node', format: 'cjs', target: 'node20', outfile: child, logLevel: 'warning' });
    qcow2 = scratch.path('cloud.qcow2');
    makeQcow2(qcow2);
    const tls = makeCertificate(scratch.dir);
    certFile = tls.certFile;
    plain = await ImageServer.start();
    // Slow enough that the processes' downloads overlap.
    plain.serveFile('/cloud.qcow2', qcow2, { chunkDelayMs: 15 });
    secure = await ImageServer.start(tls);
    secure.serveFile('/cloud.qcow2', qcow2);
    secure.redirect('/to-https', '/cloud.qcow2');
    secure.redirect('/to-http', plain.url('/cloud.qcow2'));
  });

  after(async function () {
    await plain?.close();
    await secure?.close();
    scratch.cleanup();
  });

  it('four processes fetching the same URL into one cache all get the same image, stored once', async function () {
    const cacheDir = scratch.path('shared-cache');
    mkdirSync(cacheDir);
    const outcomes = await Promise.all([1, 2, 3, 4].map(() => runChild(plain.url('/cloud.qcow2'), cacheDir)));
    const sha = sha256Of(qcow2);
    for (const o of outcomes) {
      assert.equal(o.error, undefined, o.error?.message);
      assert.equal(o.image?.sha256, sha);
      assert.equal(o.image?.path, join(cacheDir, `${sha}.qcow2`));
    }
    assert.ok(outcomes.filter((o) => o.image?.fromCache === false).length >= 2, 'at least two downloads ran at the same time');
    assert.deepEqual(readdirSync(cacheDir).sort(), [`${sha}.qcow2`, 'index.json']);
    assert.equal(sha256Of(join(cacheDir, `${sha}.qcow2`)), sha);
    const index = JSON.parse(readFileSync(join(cacheDir, 'index.json'), 'utf8')) as { sources: Record<string, { sha256: string }> };
    assert.deepEqual(Object.keys(index.sources), [plain.url('/cloud.qcow2')]);
  });

  it('downloads over HTTPS from a trusted server, following an https redirect', async function () {
    const cacheDir = scratch.path('https-cache');
    mkdirSync(cacheDir);
    const o = await runChild(secure.url('/to-https'), cacheDir, { NODE_EXTRA_CA_CERTS: certFile });
    assert.equal(o.error, undefined, o.error?.message);
    assert.equal(o.image?.sha256, sha256Of(qcow2));
  });

  it('refuses a redirect from https down to http, leaving nothing', async function () {
    const cacheDir = scratch.path('downgrade-cache');
    mkdirSync(cacheDir);
    const before = plain.count('/cloud.qcow2');
    const o = await runChild(secure.url('/to-http'), cacheDir, { NODE_EXTRA_CA_CERTS: certFile });
    assert.equal(o.error?.code, 'BAD_REDIRECT');
    assert.match(o.error?.message ?? '', /redirected from https to plain http .*which is refused/);
    assert.equal(plain.count('/cloud.qcow2'), before, 'the http address is never asked');
    assert.deepEqual(readdirSync(cacheDir), []);
  });

  it('an untrusted certificate is UNREACHABLE with the reason', async function () {
    const cacheDir = scratch.path('untrusted-cache');
    mkdirSync(cacheDir);
    await assert.rejects(fetchImage(secure.url('/cloud.qcow2'), { cacheDir }), (e: unknown) => {
      assert.ok(isImageFetchError(e), String(e));
      assert.equal(e.code, 'UNREACHABLE');
      assert.match(e.message, /TLS certificate is not trusted \(DEPTH_ZERO_SELF_SIGNED_CERT\)/);
      return true;
    });
    assert.equal(cacheState(cacheDir), '');
  });
});
