// `vmsnap image read`: a range read through the chain, hashed or checked against a byte pattern.
import { createHash } from 'node:crypto';
import { ImageError, openDisk, throwIfAborted } from '../../engine/qcow2';
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { hexByte, parseBytePattern, parseSize } from '../units';
import { closeQuietly, STREAM_CHUNK } from './shared';

export const imageReadCommand: Command<CliContext> = {
  name: 'read',
  summary: 'read a range of the virtual disk through its chain: print its SHA-256, or verify a byte pattern',
  args: [
    { name: 'FILE', description: 'a qcow2 or raw image' },
    { name: 'OFFSET', description: 'guest offset in bytes (suffixes allowed: 1M)' },
    { name: 'LENGTH', description: 'bytes to read (suffixes allowed: 64K)' },
  ],
  flags: [
    { name: 'sha256', kind: 'boolean', description: 'print the SHA-256 of the bytes, in hex' },
    { name: 'pattern', kind: 'value', valueName: 'BYTE', description: 'check every byte equals BYTE; exit 1 at the first that does not' },
  ],
  choices: [{ flags: ['sha256', 'pattern'], required: true }],
  examples: ['vmsnap image read disk.qcow2 0 1G --sha256', 'vmsnap image read disk.qcow2 1M 64K --pattern 0xab'],
  async run(inv, ctx) {
    const file = inv.required('FILE');
    const offset = parseSize(inv.required('OFFSET'), 'OFFSET');
    const length = parseSize(inv.required('LENGTH'), 'LENGTH');
    const patternText = inv.value('pattern');
    const pattern = patternText === undefined ? undefined : parseBytePattern(patternText, '--pattern');

    const disk = await openDisk(file);
    const hash = createHash('sha256');
    let mismatch: { offset: number; found: number } | undefined;
    try {
      if (offset + length > disk.size) {
        throw new ImageError(
          'OUT_OF_RANGE',
          `The range ${offset}..${offset + length} lies past the end of ${file}, whose virtual size is ${disk.size} bytes.`,
          file,
        );
      }
      // One buffer for the whole stream: the length may be many GiB.
      const buf = Buffer.alloc(Math.min(length, STREAM_CHUNK));
      const expected = pattern === undefined ? undefined : Buffer.alloc(buf.length, pattern);
      for (let done = 0; done < length && mismatch === undefined; done += buf.length) {
        throwIfAborted(ctx.signal, `Reading ${file}`);
        const n = Math.min(buf.length, length - done);
        const chunk = buf.subarray(0, n);
        await disk.read(chunk, offset + done);
        if (expected === undefined) {
          hash.update(chunk);
        } else if (!chunk.equals(expected.subarray(0, n))) {
          const at = chunk.findIndex((b) => b !== pattern);
          mismatch = { offset: offset + done + at, found: chunk[at]! };
        }
      }
    } finally {
      await closeQuietly(disk);
    }

    if (pattern === undefined) {
      const digest = hash.digest('hex');
      emit(ctx, { file, offset, length, sha256: digest }, () => digest);
      return 0;
    }
    const result = { file, offset, length, pattern, match: mismatch === undefined };
    if (mismatch === undefined) {
      emit(ctx, result, () => `All ${length} bytes at offset ${offset} are ${hexByte(pattern)}.`);
      return 0;
    }
    ctx.out.document({ ...result, mismatchOffset: mismatch.offset, found: mismatch.found });
    ctx.out.error(`Content mismatch at offset ${mismatch.offset}: expected ${hexByte(pattern)}, found ${hexByte(mismatch.found)}.`);
    return 1;
  },
};
