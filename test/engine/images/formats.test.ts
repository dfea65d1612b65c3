// What the image cache takes and what it refuses, on real files: formats made by qemu-img itself (VMDK, VDI,
// VHD, VHDX, qcow2 overlays), the real compressors, a real ISO from genisoimage, and small files with the right
// magic. Each refusal says what the file is and what to do, from a path and over HTTP, and leaves nothing.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync, closeSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { fetchImage, isImageFetchError, type ImageFetchErrorCode } from '../../../src/engine/images';
import { qemuImg, run, scratchDir } from '../../support/qemu';
import { cacheState, ImageServer, KiB, makeQcow2, makeRawMbr, MiB, requireImageTools, writeBytes } from './image-fixtures';

interface Case {
  name: string;
  file: string;
  code: ImageFetchErrorCode;
  message: RegExp;
  /** Over HTTP the sentence may differ (a web page "returned"). */
  httpMessage?: RegExp;
}

describe('image cache: formats taken and refused', function () {
  const scratch = scratchDir('vmsnap-image-formats-');
  let server: ImageServer;
  let raw: string;
  const cases: Case[] = [];
  const cacheDir = scratch.path('cache');

  function add(name: string, file: string, code: ImageFetchErrorCode, message: RegExp, httpMessage?: RegExp): void {
    cases.push({ name, file, code, message, ...(httpMessage !== undefined ? { httpMessage } : {}) });
  }

  before(async function () {
    requireImageTools();
    mkdirSync(cacheDir);
    const f = scratch.path;
    raw = f('disk.raw');
    makeRawMbr(raw);
    const qcow2 = f('base.qcow2');
    makeQcow2(qcow2);

    for (const [tool, ext, what] of [['xz', 'xz', 'xz'], ['gzip', 'gz', 'gzip'], ['bzip2', 'bz2', 'bzip2'], ['zstd', 'zst', 'zstd']] as const) {
      writeFileSync(f(`disk.raw.${ext}`), execFileSync(tool, ['-c', raw], { maxBuffer: 64 * MiB }));
      add(`${what}-compressed`, f(`disk.raw.${ext}`), 'UNSUPPORTED_FORMAT', new RegExp(`is ${what}-compressed: decompress it first`));
    }
    qemuImg('convert', '-q', '-O', 'vmdk', raw, f('disk.vmdk'));
    add('VMDK (sparse)', f('disk.vmdk'), 'UNSUPPORTED_FORMAT', /is a VMware disk \(VMDK\): convert it with "qemu-img convert -O qcow2/);
    qemuImg('convert', '-q', '-O', 'vmdk', '-o', 'subformat=monolithicFlat', raw, f('flat.vmdk'));
    add('VMDK (descriptor)', f('flat.vmdk'), 'UNSUPPORTED_FORMAT', /is a VMware disk \(VMDK\)/);
    qemuImg('convert', '-q', '-O', 'vdi', raw, f('disk.vdi'));
    add('VDI', f('disk.vdi'), 'UNSUPPORTED_FORMAT', /is a VirtualBox disk \(VDI\)/);
    qemuImg('convert', '-q', '-O', 'vhdx', raw, f('disk.vhdx'));
    add('VHDX', f('disk.vhdx'), 'UNSUPPORTED_FORMAT', /is a Hyper-V disk \(VHDX\)/);
    qemuImg('convert', '-q', '-O', 'vpc', raw, f('dynamic.vhd'));
    add('VHD (dynamic)', f('dynamic.vhd'), 'UNSUPPORTED_FORMAT', /is a Virtual PC \/ Hyper-V disk \(VHD\)/);
    // A fixed VHD is the raw disk (MBR and all) plus a footer: only the footer tells it apart.
    qemuImg('convert', '-q', '-O', 'vpc', '-o', 'subformat=fixed,force_size=on', raw, f('fixed.vhd'));
    add('VHD (fixed, footer only)', f('fixed.vhd'), 'UNSUPPORTED_FORMAT', /\(VHD\)/);

    mkdirSync(f('iso-root'));
    writeFileSync(f('iso-root/README.TXT'), 'installer\n');
    run('genisoimage', ['-quiet', '-V', 'INSTALL', '-o', f('install.iso'), f('iso-root')]);
    add('ISO 9660', f('install.iso'), 'UNSUPPORTED_FORMAT', /is an ISO 9660 CD\/DVD image, not a disk image: use --iso to install from it/);
    // A hybrid installer ISO also has a boot signature at 510: still an ISO.
    const hybrid = readFileSync(f('install.iso'));
    hybrid[510] = 0x55;
    hybrid[511] = 0xaa;
    writeFileSync(f('hybrid.iso'), hybrid);
    add('hybrid ISO (with an MBR)', f('hybrid.iso'), 'UNSUPPORTED_FORMAT', /use --iso/);

    qemuImg('create', '-q', '-f', 'qcow2', '-b', qcow2, '-F', 'qcow2', f('overlay.qcow2'));
    add('qcow2 overlay', f('overlay.qcow2'), 'UNSUPPORTED_FORMAT', /is a qcow2 overlay on the backing file ".*base\.qcow2", but a cloud image must stand alone/);
    // A qcow2 whose L1 table points past the end of the file.
    const broken = readFileSync(qcow2);
    broken.writeBigUInt64BE(BigInt(1) << BigInt(40), 40);
    writeFileSync(f('broken.qcow2'), broken);
    add('damaged qcow2', f('broken.qcow2'), 'NOT_AN_IMAGE', /is a damaged qcow2 image .*: fetch or copy it again/);

    writeFileSync(f('page.html'), '<!doctype html>\n<html><body>Please sign in</body></html>\n');
    add('an HTML page', f('page.html'), 'NOT_AN_IMAGE', /is a web page \(HTML\), not a disk image/, /returned a web page, not a disk image/);
    writeFileSync(f('SHA256SUMS'), 'ab'.repeat(32) + '  debian-12-genericcloud-amd64.qcow2\n');
    add('a text file', f('SHA256SUMS'), 'NOT_AN_IMAGE', /is a text file, not a disk image/, /returned text, not a disk image/);
    writeFileSync(f('empty.img'), '');
    add('an empty file', f('empty.img'), 'NOT_AN_IMAGE', /is empty/);
    writeBytes(f('random.img'), [{ offset: 0, bytes: Buffer.from([0x00, 0x13, 0x37, 0x00, 0xff]) }], 64 * KiB);
    add('binary without a partition table', f('random.img'), 'NOT_AN_IMAGE', /has no qcow2 header and no MBR or GPT partition table/);
    writeBytes(f('short.img'), [{ offset: 510, bytes: Buffer.from([0x55, 0xaa]) }], 1000);
    add('MBR but not whole sectors', f('short.img'), 'NOT_AN_IMAGE', /its size \(1000 bytes\) is not a multiple of 512/);
    writeBytes(f('zip.img'), [{ offset: 0, bytes: 'PK\x03\x04' }], 4 * KiB);
    add('a zip archive', f('zip.img'), 'UNSUPPORTED_FORMAT', /is a zip archive: extract the disk image/);
    writeBytes(f('tar.img'), [{ offset: 0, bytes: 'disk.raw' }, { offset: 257, bytes: 'ustar\x0000' }], 10 * KiB);
    add('a tar archive', f('tar.img'), 'UNSUPPORTED_FORMAT', /is a tar archive: extract the disk image/);
    // Tiny files with only the magic, as a truncated download would leave them.
    writeBytes(f('magic.vmdk'), [{ offset: 0, bytes: 'KDMV' }], 512);
    add('VMDK magic', f('magic.vmdk'), 'UNSUPPORTED_FORMAT', /VMDK/);
    writeBytes(f('magic.vhdx'), [{ offset: 0, bytes: 'vhdxfile' }], 512);
    add('VHDX magic', f('magic.vhdx'), 'UNSUPPORTED_FORMAT', /VHDX/);
    writeBytes(f('magic.vhd'), [{ offset: 510, bytes: Buffer.from([0x55, 0xaa]) }, { offset: 2048 - 512, bytes: 'conectix' }], 2048);
    add('VHD footer magic', f('magic.vhd'), 'UNSUPPORTED_FORMAT', /VHD/);

    server = await ImageServer.start();
    for (const c of cases) server.serveFile(`/${encodeURIComponent(c.name)}`, c.file);
  });

  after(async function () {
    await server?.close();
    scratch.cleanup();
  });

  async function expectRefusal(source: string, code: ImageFetchErrorCode, message: RegExp): Promise<void> {
    const before = cacheState(cacheDir);
    let error: unknown;
    try {
      const image = await fetchImage(source, { cacheDir });
      assert.fail(`${source} was taken as ${image.format}`);
    } catch (e) {
      error = e;
    }
    assert.ok(isImageFetchError(error), String(error));
    assert.equal(error.code, code, error.message);
    assert.match(error.message, message);
    assert.ok(error.message.startsWith(source), `the sentence names the source: ${error.message}`);
    assert.doesNotMatch(error.message, /\.partial/, 'no temporary name in the sentence');
    assert.equal(cacheState(cacheDir), before, 'nothing left in the cache');
  }

  it('refuses each non-image from a path, saying what it is and what to do', async function () {
    assert.ok(cases.length >= 20);
    for (const c of cases) await expectRefusal(c.file, c.code, c.message);
  });

  it('refuses the same files served over HTTP', async function () {
    for (const c of cases) await expectRefusal(server.url(`/${encodeURIComponent(c.name)}`), c.code, c.httpMessage ?? c.message);
  });

  it('a large xz download is refused from its first bytes, before the rest arrives', async function () {
    const big = scratch.path('big.raw');
    makeRawMbr(big, 32 * MiB);
    // Incompressible content so the .xz stays large.
    const fd = openSync(big, 'r+');
    writeSync(fd, randomBytes(4 * MiB), 0, 4 * MiB, 1 * MiB);
    closeSync(fd);
    const xz = scratch.path('big.raw.xz');
    writeFileSync(xz, execFileSync('xz', ['-0', '-c', big], { maxBuffer: 64 * MiB }));
    server.serveFile('/big.raw.xz', xz, { chunkDelayMs: 5 });
    const progress: number[] = [];
    const requests = server.count('/big.raw.xz');
    await assert.rejects(fetchImage(server.url('/big.raw.xz'), { cacheDir, onProgress: (d) => progress.push(d) }), (e: unknown) => isImageFetchError(e) && e.code === 'UNSUPPORTED_FORMAT');
    assert.ok(readFileSync(xz).length > 1 * MiB);
    assert.equal(server.count('/big.raw.xz'), requests + 1);
    assert.ok(Math.max(...progress) < 256 * KiB, `stopped after ${Math.max(...progress)} bytes`);
  });

  it('takes a raw image with a GPT header and no protective MBR signature', async function () {
    const gpt = scratch.path('gpt.raw');
    writeBytes(gpt, [{ offset: 512, bytes: 'EFI PART' }], 1 * MiB);
    const image = await fetchImage(gpt, { cacheDir });
    assert.equal(image.format, 'raw');
    assert.equal(image.virtualSize, 1 * MiB);
  });
});
