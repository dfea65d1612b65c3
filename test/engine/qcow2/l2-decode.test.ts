// The fast L2 entry decoder (32-bit words) must agree with the exact BigInt one on every kind of entry,
// reserved bits and compressed entries included, for standard and extended L2 and every cluster size.
import { strict as assert } from 'node:assert';
import { decodeL2, decodeL2At } from '../../../src/engine/qcow2/layout';

describe('L2 entries decoded from 32-bit words agree with the exact decoder', () => {
  it('on random, edge and hand-made entries', () => {
    let seed = 0x2545f491;
    const rand32 = (): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return seed >>> 0;
    };
    const words: [number, number][] = [
      [0, 0], [0x8000_0000, 0x0001_0000], [0x8000_0000, 0x0001_0001], [0, 1], [0, 0x200], [0x00ff_ffff, 0xffff_fe00],
      [0x80ff_ffff, 0xffff_fe01], [0x4000_0000, 0x1234], [0x7fff_ffff, 0xffff_ffff], [0x0100_0000, 0x10000], [0, 2], [0, 0x100],
      [0xc000_0000, 0], [0x8000_0000, 0],
    ];
    for (let i = 0; i < 20000; i++) {
      const hi = rand32();
      // Mostly plausible entries: clear the reserved bits in most cases so data and zero entries get tested.
      words.push(i % 3 === 0 ? [hi, rand32()] : [hi & 0x80ff_ffff, rand32() & 0xffff_fe01]);
    }
    const table = Buffer.alloc(8);
    for (const [hi, lo] of words) {
      table.writeUInt32BE(hi >>> 0, 0);
      table.writeUInt32BE(lo >>> 0, 4);
      for (const clusterBits of [9, 12, 16, 21]) {
        for (const extendedL2 of [false, true]) {
          assert.deepEqual(
            decodeL2At(table, 0, clusterBits, extendedL2),
            decodeL2(table.readBigUInt64BE(0), clusterBits, extendedL2),
            `${table.toString('hex')} with ${2 ** clusterBits}-byte clusters${extendedL2 ? ', extended L2' : ''}`,
          );
        }
      }
    }
  });
});
