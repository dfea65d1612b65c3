// `vmsnap vm create --from-image` refusing what it cannot use: one sentence each, and nothing left behind (no
// machine, no cache entry, no partial download). The images are real files served by a real HTTP server.
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { writeCountingGuest } from '../support/counting-guest';
import { scratchDir } from '../support/qemu';
import { runCaptured, type Captured } from './in-process';

describe('cli: vm create --from-image, refusals', () => {
  const scratch = scratchDir('vmsnap-from-image-');
  const libDir = join(scratch.dir, 'lib');
  const home = join(scratch.dir, 'home');
  const disk = scratch.path('disk.raw');
  let server: Server;
  let base = '';
  const realHome = process.env['HOME'];

  const run = (args: string[]): Promise<Captured> => runCaptured(['--library', libDir, ...args], { env: { HOME: home } });
  /** What the library holds besides its own bookkeeping: machine folders and cache files. */
  const leftovers = (): string[] => {
    const top = readdirSync(libDir).filter((n) => !['library.json', 'library.lock', '.ssh'].includes(n));
    const cache = top.includes('.images') ? readdirSync(join(libDir, '.images')).filter((n) => !['index.json', 'index.lock'].includes(n)) : [];
    return [...top.filter((n) => n !== '.images'), ...cache.map((n) => `.images/${n}`)];
  };

  before(async () => {
    // A home without SSH keys (the engine looks in os.homedir(), which follows HOME).
    mkdirSync(home, { recursive: true });
    process.env['HOME'] = home;
    writeCountingGuest(disk);
    const bytes = readFileSync(disk);
    server = createServer((req, res) => {
      if (req.url === '/disk.raw') res.end(bytes);
      else if (req.url === '/login') res.setHeader('content-type', 'text/html').end('<!DOCTYPE html><html><body>Sign in</body></html>');
      else res.writeHead(404).end('not found');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => {
    process.env['HOME'] = realHome;
    server.close();
    scratch.cleanup();
  });

  it('refuses a 404, a web page, a wrong checksum, an unreachable host and a missing file, leaving nothing', async () => {
    const cases: [string[], RegExp][] = [
      [[`${base}/nothing.qcow2`], /404|not found/i],
      [[`${base}/login`], /web page/i],
      [[`${base}/disk.raw`, '--sha256', '0'.repeat(64)], /sha-?256|checksum/i],
      [['http://127.0.0.1:1/disk.qcow2'], /reach|refused/i],
      [[scratch.path('missing.qcow2')], /missing\.qcow2/],
    ];
    for (const [[source, ...flags], message] of cases) {
      const r = await run(['vm', 'create', 'dev', '--from-image', source!, ...flags]);
      assert.equal(r.status, 1, `${source}: ${r.stdout}`);
      assert.match(r.stderr, message, source);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
      assert.doesNotMatch(r.stderr, /failed unexpectedly|at .*\.ts:\d+/);
      assert.deepEqual(leftovers(), [], `after ${source}`);
    }
  });

  it('creates from a URL with the right checksum, and a second machine from the same image uses the cache', async () => {
    const sha = createHash('sha256').update(readFileSync(disk)).digest('hex');
    const first = await run(['vm', 'create', 'one', '--from-image', `${base}/disk.raw`, '--sha256', sha, '--json']);
    assert.equal(first.status, 0, first.stderr);
    const made = JSON.parse(first.stdout) as { image: { fromCache: boolean; sha256: string }; key: { generated: boolean; path: string } };
    assert.deepEqual([made.image.fromCache, made.image.sha256], [false, sha]);
    assert.equal(made.key.generated, true, 'no key in HOME: the library makes one');
    assert.equal(made.key.path, join(libDir, '.ssh', 'id_ed25519.pub'));
    const second = await run(['vm', 'create', 'two', '--from-image', `${base}/disk.raw`, '--json']);
    assert.equal(second.status, 0, second.stderr);
    assert.equal((JSON.parse(second.stdout) as { image: { fromCache: boolean } }).image.fromCache, true);
    assert.deepEqual(readdirSync(join(libDir, '.images')).filter((n) => n.endsWith('.raw')), [`${sha}.raw`]);
  });

  it('refuses a bad guest user and an SSH key file that is not a public key, leaving no machine', async () => {
    const before = leftovers();
    const user = await run(['vm', 'create', 'bad', '--from-image', disk, '--user', 'Root User']);
    assert.equal(user.status, 1);
    assert.match(user.stderr, /user/i);
    writeFileSync(scratch.path('not-a-key.pub'), 'hello\n');
    const key = await run(['vm', 'create', 'bad', '--from-image', disk, '--ssh-key', scratch.path('not-a-key.pub')]);
    assert.equal(key.status, 1);
    assert.match(key.stderr, /not an SSH public key/);
    assert.deepEqual(leftovers(), before);
  });
});
