import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { countColours, crc32, decodePng, decodePpm, decodeScreen, encodePng, scaleToWidth, ScreenImageError, thumbnailPng, type RgbImage } from '../../../src/engine/runtime/screen-image';
import { run, scratchDir } from '../../support/qemu';

/** A test picture: a gradient with a white box, so scaling and filters have something to get wrong. */
function picture(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      const box = x >= width / 4 && x < width / 2 && y >= height / 4 && y < height / 2;
      data[o] = box ? 255 : (x * 255) / width;
      data[o + 1] = box ? 255 : (y * 255) / height;
      data[o + 2] = box ? 255 : 40;
    }
  }
  return { width, height, data };
}

/** Same size and pixels (a Buffer view and a Uint8Array compare as equal). */
function assertSame(actual: RgbImage, expected: RgbImage): void {
  assert.deepEqual([actual.width, actual.height], [expected.width, expected.height]);
  assert.ok(Buffer.from(actual.data).equals(Buffer.from(expected.data)), 'the pixels differ');
}

function ppm(img: RgbImage, header = `P6\n${img.width} ${img.height}\n255\n`): Buffer {
  return Buffer.concat([Buffer.from(header, 'latin1'), img.data]);
}

describe('screen images: PPM in, thumbnail PNG out, in pure Node', function () {
  it('CRC-32 matches the standard check value', () => {
    assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
  });

  it('reads a binary PPM as QEMU writes it, and one with comments', () => {
    const img = picture(7, 5);
    assertSame(decodePpm(ppm(img)), img);
    assertSame(decodePpm(ppm(img, `P6\n# made by a test\n7 5 255\n`)), img);
  });

  it('a PNG it writes reads back pixel for pixel', () => {
    const img = picture(33, 17);
    const png = encodePng(img);
    assertSame(decodePng(png), img);
    assertSame(decodeScreen(png), img);
  });

  it('a PNG it writes is valid for an independent reader (Python: chunk CRCs, zlib, sizes)', function () {
    const scratch = scratchDir('vmsnap-png-');
    try {
      const file = join(scratch.dir, 'x.png');
      writeFileSync(file, encodePng(picture(240, 135)));
      const py = [
        'import sys, struct, zlib',
        'b = open(sys.argv[1], "rb").read()',
        'assert b[:8] == b"\\x89PNG\\r\\n\\x1a\\n"',
        'i = 8; idat = b""',
        'while i < len(b):',
        '    n, t = struct.unpack(">I4s", b[i:i+8]); body = b[i+8:i+8+n]',
        '    assert zlib.crc32(t + body) == struct.unpack(">I", b[i+8+n:i+12+n])[0], t',
        '    if t == b"IHDR": w, h = struct.unpack(">II", body[:8])',
        '    if t == b"IDAT": idat += body',
        '    i += 12 + n',
        'raw = zlib.decompress(idat)',
        'assert len(raw) == h * (w * 3 + 1)',
        'print(w, h)',
      ].join('\n');
      assert.equal(run('python3', ['-c', py, file]).trim(), '240 135');
    } finally {
      scratch.cleanup();
    }
  });

  it('reads every PNG row filter (Up, Average, Paeth as other encoders use them) and RGBA', () => {
    const img = picture(9, 4);
    const stride = img.width * 4;
    const rgba = new Uint8Array(stride * img.height);
    for (let p = 0; p < img.width * img.height; p++) rgba.set([...img.data.subarray(p * 3, p * 3 + 3), 200], p * 4);
    const paeth = (a: number, b: number, c: number): number => {
      const p = a + b - c;
      const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
      return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    };
    const rows: number[] = [];
    for (let y = 0; y < img.height; y++) {
      const filter = [2, 3, 4, 0][y]!;
      rows.push(filter);
      for (let i = 0; i < stride; i++) {
        const x = rgba[y * stride + i]!;
        const a = i >= 4 ? rgba[y * stride + i - 4]! : 0;
        const b = y > 0 ? rgba[(y - 1) * stride + i]! : 0;
        const c = y > 0 && i >= 4 ? rgba[(y - 1) * stride + i - 4]! : 0;
        const pred = filter === 2 ? b : filter === 3 ? (a + b) >> 1 : filter === 4 ? paeth(a, b, c) : 0;
        rows.push((x - pred) & 0xff);
      }
    }
    const chunk = (type: string, body: Buffer): Buffer => {
      const head = Buffer.alloc(8);
      head.writeUInt32BE(body.length);
      head.write(type, 4, 'latin1');
      const crc = Buffer.alloc(4);
      crc.writeUInt32BE(crc32(Buffer.from(type, 'latin1'), body));
      return Buffer.concat([head, body, crc]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(img.width, 0);
    ihdr.writeUInt32BE(img.height, 4);
    ihdr.set([8, 6, 0, 0, 0], 8);
    const png = Buffer.concat([encodePng(img).subarray(0, 8), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.from(rows))), chunk('IEND', Buffer.alloc(0))]);
    assertSame(decodePng(png), img);
  });

  it('scales down by averaging areas, keeps the aspect, never scales up', () => {
    const img = picture(720, 400);
    const t = scaleToWidth(img, 240);
    assert.deepEqual([t.width, t.height], [240, 133]);
    // The white box survives as white in the middle of its area.
    const o = (Math.floor(133 * 0.375) * 240 + 90) * 3;
    assert.deepEqual([...t.data.subarray(o, o + 3)], [255, 255, 255]);
    // A flat 2×2 block of black and white averages to grey.
    const checker: RgbImage = { width: 2, height: 2, data: new Uint8Array([0, 0, 0, 255, 255, 255, 255, 255, 255, 0, 0, 0]) };
    assert.deepEqual([...scaleToWidth(checker, 1).data], [128, 128, 128]);
    assert.equal(scaleToWidth(img, 1000), img);
  });

  it('a thumbnail of a screendump is a small PNG of the same picture', () => {
    const png = thumbnailPng(ppm(picture(1024, 768)));
    const t = decodePng(png);
    assert.deepEqual([t.width, t.height], [240, 180]);
    assert.ok(countColours(t) > 100);
    assert.ok(png.length < 60_000, `${png.length} bytes`);
  });

  it('refuses cut, hostile or unsupported images with a clear error', () => {
    assert.throws(() => decodePpm(Buffer.from('P6\n100 100\n255\nabc')), /cut short/);
    assert.throws(() => decodePpm(Buffer.from('P6\n100000 100000\n255\n')), ScreenImageError);
    assert.throws(() => decodePpm(Buffer.from('P6\n8192 8192\n255\n')), /larger than this reads/);
    assert.throws(() => decodePpm(Buffer.from('P6\n0 10\n255\n')), /empty or larger/);
    assert.throws(() => decodePpm(Buffer.from('P3\n1 1\n255\n0 0 0')), /P6/);
    assert.throws(() => decodePpm(Buffer.from('P6\n1 1\n65535\n')), /8-bit/);
    const png = encodePng(picture(4, 4));
    const bad = Buffer.from(png);
    bad[bad.length - 20]! ^= 0xff;
    assert.throws(() => decodePng(bad), /CRC|cut|length|PNG/);
    assert.throws(() => decodePng(png.subarray(0, 30)), /cut short|without/);
    assert.throws(() => decodePng(Buffer.from('not a png')), /Not a PNG/);
  });

  it('counts colours: a blank screen has one', () => {
    assert.equal(countColours({ width: 3, height: 1, data: new Uint8Array(9) }), 1);
    assert.ok(countColours(picture(20, 20)) > 20);
  });
});

