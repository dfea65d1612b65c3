// The seed image must read back exactly through the tools a guest's userland uses (blkid for the label cloud-init
// searches, isoinfo for Rock Ridge and Joliet names and bytes), and look like what genisoimage -joliet -rock makes.
// Directory records are parsed here from ECMA-119 directly, never with the writer's own code.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isSeedError, writeSeedImage, type SeedFile } from '../../../src/engine/cloud-init';
import { run, scratchDir } from '../../support/qemu';

/** A missing tool skips the test, or fails it under VMSNAP_REQUIRE_TOOLS=1 (CI). */
function needTools(ctx: Mocha.Context, ...tools: string[]): void {
  for (const tool of tools) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0) continue;
    if (process.env.VMSNAP_REQUIRE_TOOLS === '1') {
      throw new Error(`${tool} is not installed: apt-get install -y genisoimage util-linux (isoinfo, isovfy, blkid).`);
    }
    ctx.skip();
  }
}

function extract(image: string, mode: '-R' | '-J', name: string): Buffer {
  const r = spawnSync('isoinfo', [mode, '-x', `/${name}`, '-i', image], { maxBuffer: 64 * 1024 * 1024 });
  assert.equal(r.status, 0, `isoinfo ${mode} -x /${name}: ${r.stderr.toString()}`);
  return r.stdout;
}

function blkid(image: string): Record<string, string> {
  // blkid keeps a cache keyed by device; -p probes the file itself.
  const out = run('blkid', ['-p', '-o', 'export', image]);
  return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** `isoinfo -l` listing: name → [mode string, size]. */
function listing(image: string, mode: '-R' | '-J' | ''): Map<string, { perms: string; size: number }> {
  const out = run('isoinfo', [...(mode ? [mode] : []), '-l', '-i', image]);
  const m = new Map<string, { perms: string; size: number }>();
  for (const line of out.split('\n')) {
    const f = /^([-d][-rwx]{9})\s+\d+\s+\d+\s+\d+\s+(\d+)\s.*\]\s+(.+?)\s*$/.exec(line);
    if (f) m.set(f[3]!, { perms: f[1]!, size: Number(f[2]) });
  }
  return m;
}

/** The SUSP signatures of each record of the primary root directory, parsed from the raw image. */
function rootSuspSignatures(image: Buffer): string[][] {
  const pvd = image.subarray(16 * 2048, 17 * 2048);
  assert.equal(pvd.toString('latin1', 1, 6), 'CD001');
  const rootExtent = pvd.readUInt32LE(156 + 2);
  const rootSize = pvd.readUInt32LE(156 + 10);
  const out: string[][] = [];
  for (let sector = 0; sector < rootSize / 2048; sector++) {
    let p = (rootExtent + sector) * 2048;
    const end = p + 2048;
    while (p < end && image[p]! > 0) {
      const len = image[p]!;
      const idLen = image[p + 32]!;
      let su = p + 33 + idLen + (idLen % 2 === 0 ? 1 : 0);
      const sigs: string[] = [];
      while (su + 4 <= p + len && image[su + 2]! > 0) {
        sigs.push(image.toString('latin1', su, su + 2));
        su += image[su + 2]!;
      }
      out.push(sigs);
      p += len;
    }
  }
  return out;
}

describe('cloud-init seed image (ISO 9660, Rock Ridge + Joliet)', function () {
  let dir: ReturnType<typeof scratchDir>;
  beforeEach(() => {
    dir = scratchDir('vmsnap-seed-');
  });
  afterEach(() => dir.cleanup());

  const utf8 = '#cloud-config\n# Grüße, 日本語, emoji 🎉, quotes "\' and a NUL-free tab\tend\n';
  const sizes: SeedFile[] = [
    { name: 'meta-data', data: 'instance-id: i-1\nlocal-hostname: dev\n' },
    { name: 'user-data', data: utf8 },
    { name: 'vendor-data', data: '' },
    { name: 'network-config', data: Buffer.from([0x41]) },
    { name: 'sector', data: Buffer.alloc(2048, 0x5a) },
    { name: 'big-file.bin', data: Buffer.from(Array.from({ length: 100 * 1024 }, (_, i) => (i * 31 + 7) & 0xff)) },
  ];

  it('blkid finds an iso9660 volume labelled cidata, as cloud-init searches for it', async function () {
    needTools(this, 'blkid');
    const image = join(dir.dir, 'seed.iso');
    await writeSeedImage(image, sizes);
    const tags = blkid(image);
    assert.equal(tags.TYPE, 'iso9660');
    assert.equal(tags.LABEL, 'cidata');
  });

  it('reads back every file byte for byte through Rock Ridge and through Joliet (0 B, 1 B, 2048 B, 100 KiB, UTF-8)', async function () {
    needTools(this, 'isoinfo');
    const image = join(dir.dir, 'seed.iso');
    await writeSeedImage(image, sizes);
    for (const f of sizes) {
      const want = typeof f.data === 'string' ? Buffer.from(f.data, 'utf8') : f.data;
      assert.ok(extract(image, '-R', f.name).equals(want), `Rock Ridge ${f.name}`);
      assert.ok(extract(image, '-J', f.name).equals(want), `Joliet ${f.name}`);
    }
    assert.equal(extract(image, '-R', 'user-data').toString('utf8'), utf8);
  });

  it('lists the real names, sizes and read-only modes; isoinfo -d sees Joliet level 3 and Rock Ridge', async function () {
    needTools(this, 'isoinfo');
    const image = join(dir.dir, 'seed.iso');
    await writeSeedImage(image, sizes);
    const rr = listing(image, '-R');
    const joliet = listing(image, '-J');
    for (const f of sizes) {
      const size = typeof f.data === 'string' ? Buffer.byteLength(f.data) : f.data.length;
      assert.deepEqual(rr.get(f.name), { perms: '-r--r--r--', size }, `Rock Ridge entry of ${f.name}`);
      assert.equal(joliet.get(f.name)?.size, size, `Joliet entry of ${f.name}`);
    }
    assert.equal(rr.get('.')?.perms, 'dr-xr-xr-x');
    const d = run('isoinfo', ['-d', '-i', image]);
    assert.match(d, /^Volume id: cidata$/m);
    assert.match(d, /^Joliet with UCS level 3 found$/m);
    assert.match(d, /^Rock Ridge signatures version 1 found$/m);
    assert.match(d, new RegExp(`^Volume size is: ${statSync(image).size / 2048}$`, 'm'));
  });

  it('passes isovfy, the ISO 9660 verifier', async function () {
    needTools(this, 'isovfy');
    const image = join(dir.dir, 'seed.iso');
    await writeSeedImage(image, sizes);
    const out = run('isovfy', ['-i', image]);
    assert.match(out, /^No errors found$/m, out);
  });

  it('has the structure genisoimage -volid cidata -joliet -rock gives the same files', async function () {
    needTools(this, 'genisoimage', 'isoinfo', 'blkid');
    const src = join(dir.dir, 'src');
    run('mkdir', ['-p', src]);
    const files = sizes.slice(0, 4); // the four NoCloud names
    for (const f of files) writeFileSync(join(src, f.name), f.data);
    const reference = join(dir.dir, 'reference.iso');
    run('genisoimage', ['-quiet', '-output', reference, '-volid', 'cidata', '-joliet', '-rock', ...files.map((f) => join(src, f.name))]);
    const ours = join(dir.dir, 'seed.iso');
    await writeSeedImage(ours, files);

    const pick = (t: Record<string, string>) => ({ TYPE: t.TYPE, LABEL: t.LABEL });
    assert.deepEqual(pick(blkid(ours)), pick(blkid(reference)));
    const flags = (image: string) =>
      run('isoinfo', ['-d', '-i', image])
        .split('\n')
        .filter((l) => /^(Volume id|Logical block size|Joliet|Rock Ridge)/.test(l));
    assert.deepEqual(flags(ours), flags(reference));
    // Same names in all three trees (level-1 names included) and same sizes; modes differ on purpose (0444).
    for (const mode of ['-R', '-J', ''] as const) {
      const names = (image: string) => [...listing(image, mode)].map(([n, e]) => `${n} ${e.size}`).sort();
      assert.deepEqual(names(ours), names(reference), `isoinfo ${mode} -l`);
    }
    // Same Rock Ridge entries on each record: SP/RR/PX/TF/CE on ".", RR/NM/PX/TF on files.
    const norm = (sigs: string[][]) => sigs.map((s) => [...s].sort().join(','));
    assert.deepEqual(norm(rootSuspSignatures(readFileSync(ours))), norm(rootSuspSignatures(readFileSync(reference))));
  });

  it('keeps many files and names that clash in 8.3 apart (a directory over several sectors)', async function () {
    needTools(this, 'isoinfo');
    const many: SeedFile[] = Array.from({ length: 60 }, (_, i) => ({ name: `network-config-${i}`, data: `file ${i}\n` }));
    const image = join(dir.dir, 'many.iso');
    await writeSeedImage(image, many);
    const plain = listing(image, '');
    assert.equal(new Set(plain.keys()).size, 62); // ".", ".." and 60 distinct level-1 names
    for (const f of many) assert.equal(extract(image, '-R', f.name).toString(), f.data);
    assert.deepEqual([...listing(image, '-J').keys()].filter((n) => n !== '.' && n !== '..').sort(), many.map((f) => f.name).sort());
  });

  it('is written read-only (0444) and replaces an earlier seed without leaving temporary files', async function () {
    needTools(this, 'isoinfo');
    const image = join(dir.dir, 'seed.iso');
    await writeSeedImage(image, [{ name: 'meta-data', data: 'old' }]);
    await writeSeedImage(image, [{ name: 'meta-data', data: 'new' }], { label: 'CIDATA' });
    if (process.platform !== 'win32') assert.equal(statSync(image).mode & 0o777, 0o444);
    assert.deepEqual(readdirSync(dir.dir), ['seed.iso']);
    assert.equal(extract(image, '-R', 'meta-data').toString(), 'new');
    assert.match(run('isoinfo', ['-d', '-i', image]), /^Volume id: CIDATA$/m);
  });

  it('is byte-for-byte reproducible for a fixed time', async function () {
    const modified = new Date('2024-05-01T12:00:00Z');
    await writeSeedImage(join(dir.dir, 'a.iso'), sizes, { modified });
    await writeSeedImage(join(dir.dir, 'b.iso'), sizes, { modified });
    assert.ok(readFileSync(join(dir.dir, 'a.iso')).equals(readFileSync(join(dir.dir, 'b.iso'))));
  });

  it('refuses unsafe names, duplicates, bad labels and an empty list, leaving nothing behind', async function () {
    const image = join(dir.dir, 'seed.iso');
    const refused = async (files: SeedFile[], label?: string) => {
      await assert.rejects(writeSeedImage(image, files, label === undefined ? {} : { label }), (e: unknown) => isSeedError(e) && e.code === 'INVALID_FILE');
    };
    await refused([{ name: '../meta-data', data: '' }]);
    await refused([{ name: 'a/b', data: '' }]);
    await refused([{ name: '.hidden', data: '' }]);
    await refused([{ name: 'x'.repeat(65), data: '' }]);
    await refused([{ name: 'meta-data;1', data: '' }]);
    await refused([{ name: 'méta', data: '' }]);
    await refused([
      { name: 'user-data', data: '' },
      { name: 'USER-DATA', data: '' },
    ]);
    await refused([]);
    await refused([{ name: 'meta-data', data: '' }], 'ci data');
    await refused([{ name: 'meta-data', data: '' }], 'a-label-longer-than-16');
    assert.deepEqual(readdirSync(dir.dir), []);
  });
});
