import { strict as assert } from 'node:assert';
import { isUsageError } from '../../src/cli/args';
import { formatSize, formatSizeExact, parseBytePattern, parseSize } from '../../src/cli/units';

function usageMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(isUsageError(e), `expected a UsageError, got ${String(e)}`);
    return e.message;
  }
  assert.fail('expected a UsageError');
}

describe('cli units', () => {
  describe('parseSize', () => {
    it('reads plain bytes, decimal and hex', () => {
      assert.equal(parseSize('0', 'SIZE'), 0);
      assert.equal(parseSize('4096', 'SIZE'), 4096);
      assert.equal(parseSize('0x10000', 'SIZE'), 65536);
      assert.equal(parseSize('512B', 'SIZE'), 512);
    });

    it('reads binary suffixes in either case, with or without iB/B', () => {
      for (const s of ['1G', '1g', '1GiB', '1gib', '1GB', '1gb', '1Gb']) assert.equal(parseSize(s, 'SIZE'), 2 ** 30, s);
      assert.equal(parseSize('64K', 'SIZE'), 65536);
      assert.equal(parseSize('64KiB', 'SIZE'), 65536);
      assert.equal(parseSize('3M', 'SIZE'), 3 * 2 ** 20);
      assert.equal(parseSize('2T', 'SIZE'), 2 * 2 ** 40);
    });

    it('accepts a fraction when it comes to whole bytes', () => {
      assert.equal(parseSize('1.5G', 'SIZE'), 1.5 * 2 ** 30);
      assert.equal(parseSize('0.5K', 'SIZE'), 512);
    });

    it('refuses what is not a size, naming the argument and the accepted forms', () => {
      const m = usageMessage(() => parseSize('12X', 'SIZE'));
      assert.match(m, /^SIZE "12X" is not a size/);
      assert.match(m, /K, M, G or T/);
      for (const s of ['', 'G', '-1', '1.2.3', '5iB', '1GG', 'ten', '0x', '1e3']) {
        assert.throws(() => parseSize(s, 'SIZE'), (e: unknown) => isUsageError(e), s);
      }
    });

    it('refuses fractions of a byte and sizes past 2^53', () => {
      assert.match(usageMessage(() => parseSize('1.5', 'LENGTH')), /whole number of bytes/);
      assert.match(usageMessage(() => parseSize('0.3K', 'LENGTH')), /whole number of bytes/);
      assert.match(usageMessage(() => parseSize('99999999T', 'LENGTH')), /too large/);
      assert.match(usageMessage(() => parseSize('0xffffffffffffffff', 'LENGTH')), /too large/);
    });
  });

  describe('parseBytePattern', () => {
    it('reads decimal and hex bytes', () => {
      assert.equal(parseBytePattern('0'), 0);
      assert.equal(parseBytePattern('171'), 171);
      assert.equal(parseBytePattern('255'), 255);
      assert.equal(parseBytePattern('0xab'), 0xab);
      assert.equal(parseBytePattern('0XFF'), 255);
      assert.equal(parseBytePattern('0x7'), 7);
    });

    it('refuses values outside a byte', () => {
      for (const s of ['256', '-1', '0x100', 'ab', '', '1.5', '0x']) {
        assert.match(usageMessage(() => parseBytePattern(s, '--pattern')), /is not a byte: use 0 to 255/, s);
      }
    });
  });

  describe('formatSize', () => {
    it('humanises with binary units, as qemu-img does', () => {
      assert.equal(formatSize(0), '0 B');
      assert.equal(formatSize(1023), '1023 B');
      assert.equal(formatSize(1024), '1 KiB');
      assert.equal(formatSize(196608), '192 KiB');
      assert.equal(formatSize(1.5 * 2 ** 30), '1.5 GiB');
      assert.equal(formatSize(2 ** 40), '1 TiB');
      assert.equal(formatSizeExact(2 ** 30), '1 GiB (1073741824 bytes)');
      assert.equal(formatSizeExact(512), '512 bytes');
    });
  });
});
