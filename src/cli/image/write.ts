// `vmsnap image write`: a byte pattern or zeros into a range of the virtual disk (like qemu-io write).
import { throwIfAborted } from '../../engine/qcow2';
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { formatSize, hexByte, parseBytePattern, parseSize } from '../units';
import { STREAM_CHUNK, withImage } from './shared';

export const imageWriteCommand: Command<CliContext> = {
  name: 'write',
  summary: 'write a byte pattern or zeros into a range of the virtual disk (like qemu-io write -P / -z)',
  args: [
    { name: 'FILE', description: 'a qcow2 image' },
    { name: 'OFFSET', description: 'guest offset in bytes (suffixes allowed: 1M)' },
    { name: 'LENGTH', description: 'bytes to write (suffixes allowed: 64K)' },
  ],
  flags: [
    { name: 'pattern', kind: 'value', valueName: 'BYTE', description: 'fill with this byte (0..255 or 0x00..0xff)' },
    { name: 'zero', kind: 'boolean', description: 'make the range read as zeros' },
  ],
  choices: [{ flags: ['pattern', 'zero'], required: true }],
  examples: ['vmsnap image write disk.qcow2 1M 64K --pattern 0xab', 'vmsnap image write disk.qcow2 0 1G --zero'],
  async run(inv, ctx) {
    const file = inv.required('FILE');
    const offset = parseSize(inv.required('OFFSET'), 'OFFSET');
    const length = parseSize(inv.required('LENGTH'), 'LENGTH');
    const patternText = inv.value('pattern');
    const pattern = patternText === undefined ? undefined : parseBytePattern(patternText, '--pattern');

    await withImage(file, { writable: true }, async (image) => {
      if (pattern === undefined) {
        await image.writeZeroes(offset, length);
      } else {
        const chunk = Buffer.alloc(Math.min(length, STREAM_CHUNK), pattern);
        for (let done = 0; done < length; done += chunk.length) {
          // Stop between chunks on Ctrl-C; every chunk written so far stays written, the image stays consistent.
          throwIfAborted(ctx.signal, `Writing ${file}`);
          const n = Math.min(chunk.length, length - done);
          await image.write(chunk.subarray(0, n), offset + done);
        }
      }
      await image.flush();
    });
    const what = pattern === undefined ? 'zeros' : `pattern ${hexByte(pattern)}`;
    emit(ctx, { file, offset, length, ...(pattern === undefined ? { zero: true } : { pattern }) }, () =>
      `Wrote ${formatSize(length)} (${length} bytes) of ${what} at offset ${offset}.`,
    );
    return 0;
  },
};
