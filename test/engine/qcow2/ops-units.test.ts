// The range arithmetic and byte scanning the chain operations plan their I/O with.
import { strict as assert } from 'node:assert';
import { alignedBuffer } from '../../../src/engine/qcow2/ops/aligned-buffer';
import { differingRuns, firstDifferentByte, firstNonZeroByte, isAllZero } from '../../../src/engine/qcow2/ops/bytes';
import { pipelined, STOP } from '../../../src/engine/qcow2/ops/pipeline';
import { alignRanges, mergeRanges, splitRanges, subtractRanges, totalLength } from '../../../src/engine/qcow2/ops/ranges';

describe('chain operations: range arithmetic and byte scanning', () => {
  it('merges overlapping and touching ranges and drops empty ones', () => {
    assert.deepEqual(
      mergeRanges([
        { offset: 10, length: 5 },
        { offset: 0, length: 4 },
        { offset: 4, length: 2 },
        { offset: 12, length: 10 },
        { offset: 30, length: 0 },
      ]),
      [
        { offset: 0, length: 6 },
        { offset: 10, length: 12 },
      ],
    );
  });

  it('subtracts ranges, keeping the pieces on either side', () => {
    const from = [{ offset: 0, length: 100 }, { offset: 200, length: 50 }];
    const minus = [{ offset: 10, length: 10 }, { offset: 90, length: 120 }, { offset: 240, length: 100 }];
    assert.deepEqual(subtractRanges(from, minus), [
      { offset: 0, length: 10 },
      { offset: 20, length: 70 },
      { offset: 210, length: 30 },
    ]);
    assert.deepEqual(subtractRanges(from, []), from);
    assert.deepEqual(subtractRanges(from, [{ offset: 0, length: 1000 }]), []);
  });

  it('widens ranges to whole clusters within the disk and splits them on chunk boundaries', () => {
    assert.deepEqual(alignRanges([{ offset: 100, length: 10 }, { offset: 4000, length: 200 }], 4096, 6000), [{ offset: 0, length: 6000 }]);
    const pieces = splitRanges([{ offset: 1000, length: 9000 }], 4096);
    assert.deepEqual(pieces, [
      { offset: 1000, length: 3096 },
      { offset: 4096, length: 4096 },
      { offset: 8192, length: 1808 },
    ]);
    assert.equal(totalLength(pieces), 9000);
  });

  it('finds zeros and differences at the exact byte, also past the first megabyte', () => {
    const a = Buffer.alloc(3 * 1024 * 1024);
    assert.equal(isAllZero(a), true);
    assert.equal(firstNonZeroByte(a), -1);
    a[2 * 1024 * 1024 + 5] = 1;
    assert.equal(isAllZero(a), false);
    assert.equal(firstNonZeroByte(a), 2 * 1024 * 1024 + 5);
    const b = Buffer.from(a);
    assert.equal(firstDifferentByte(a, b), -1);
    b[4097] = 9;
    b[4098] = 9;
    b[9000] = 9;
    assert.equal(firstDifferentByte(a, b), 4097);
    assert.deepEqual(differingRuns(a, b, 100), {
      ranges: [
        { offset: 4197, length: 2 },
        { offset: 9100, length: 1 },
      ],
      bytes: 3,
    });
  });

  it('gives page-aligned buffers of the asked size', () => {
    const buf = alignedBuffer(3 * 65536 + 7);
    assert.equal(buf.length, 3 * 65536 + 7);
    assert.equal(buf.byteOffset, 0);
  });

  for (const readAhead of [0, 2]) {
    it(`streams pieces in order and stops early (read ahead ${readAhead})`, async () => {
      const pieces = [0, 1, 2, 3, 4, 5].map((i) => ({ offset: i * 10, length: 10 }));
      const seen: number[] = [];
      await pipelined(
        pieces,
        async (buf, p) => {
          await new Promise((r) => setTimeout(r, (5 - p.offset / 10) * 2));
          buf.fill(p.offset / 10);
        },
        (buf, p) => {
          assert.equal(buf[0], p.offset / 10, 'each piece gets its own bytes');
          seen.push(p.offset);
          return p.offset === 40 ? STOP : undefined;
        },
        { readAhead },
      );
      assert.deepEqual(seen, [0, 10, 20, 30, 40]);
    });
  }

  it('passes a failed read on, after reads in flight have settled', async () => {
    const pieces = [0, 1, 2].map((i) => ({ offset: i, length: 1 }));
    await assert.rejects(
      pipelined(
        pieces,
        async (_buf, p) => {
          if (p.offset === 1) throw new Error('read failed');
        },
        () => undefined,
        { readAhead: 2 },
      ),
      /read failed/,
    );
  });
});
