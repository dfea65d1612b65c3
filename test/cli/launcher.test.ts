// bin/vmsnap's V8 code cache, as a user meets it: one per command group, written once, never in the way.
import { strict as assert } from 'node:assert';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCli, vmsnap } from './vmsnap';

describe('vmsnap launcher code cache', function () {
  let home: string;
  const cacheDir = (): string => join(home, 'vmsnap');
  const caches = (): string[] => readdirSync(cacheDir()).filter((f) => f.endsWith('.v8cache')).sort();
  const run = (args: string[]): string => {
    const r = vmsnap(args, { env: { XDG_CACHE_HOME: home } });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };

  before(async function () {
    this.timeout(120000);
    await buildCli();
  });
  beforeEach(() => {
    home = mkdtempSync(join(tmpdir(), 'vmsnap-launcher-'));
  });
  afterEach(() => rmSync(home, { recursive: true, force: true }));

  it('keeps one cache per command, written by its first run and kept after', () => {
    const help = run(['--help']);
    assert.deepEqual(caches().map((f) => f.replace(/^cli-[^-]*-[^-]*-[^-]*-[^-]*-/, '')), ['other.v8cache']);
    run(['image', '--help']);
    run(['image', 'info', '--help']);
    run(['vm', 'list', '--help']);
    const written = caches();
    assert.deepEqual(written.map((f) => f.replace(/^cli-[^-]*-[^-]*-[^-]*-[^-]*-/, '')), ['image-info.v8cache', 'image.v8cache', 'other.v8cache', 'vm-list.v8cache']);
    // Later runs start from those caches and print the same.
    assert.equal(run(['--help']), help);
    run(['image', '--help']);
    assert.deepEqual(caches(), written);
  });

  it('starts normally from a damaged cache and replaces it; caches of another build are removed', () => {
    const help = run(['--help']);
    const [own] = caches();
    assert.ok(own);
    writeFileSync(join(cacheDir(), own), 'not a code cache');
    writeFileSync(join(cacheDir(), 'cli-0.0-1-2-image.v8cache'), 'left by an older build');
    assert.equal(run(['--help']), help);
    assert.deepEqual(caches(), [own]);
    assert.ok(statSync(join(cacheDir(), own)).size > 10000, 'the damaged cache was replaced by a real one');
    assert.ok(readdirSync(cacheDir()).every((f) => !f.includes('.v8cache.')), 'no temporary file is left');
  });
});
