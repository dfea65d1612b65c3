// `vmsnap image map`: which layer serves each range of the virtual disk (like qemu-img map).
import { chainMap, openDisk } from '../../engine/qcow2';
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { formatTable } from '../table';
import { closeQuietly } from './shared';

export interface MapEntry {
  start: number;
  length: number;
  /** 0 = FILE itself, 1 = its backing file, ...; for unallocated, the number of layers. */
  depth: number;
  kind: 'data' | 'zero' | 'unallocated';
  /** The layer that serves the range, or null when no layer has it (it reads as zeros). */
  file: string | null;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

export const imageMapCommand: Command<CliContext> = {
  name: 'map',
  summary: 'show which layer of the chain serves each range of the virtual disk (like qemu-img map)',
  args: [{ name: 'FILE', description: 'a qcow2 or raw image' }],
  flags: [],
  examples: ['vmsnap image map overlay.qcow2', 'vmsnap image map overlay.qcow2 --json'],
  async run(inv, ctx) {
    const disk = await openDisk(inv.required('FILE'));
    let entries: MapEntry[];
    try {
      const extents = await chainMap(disk, 0, disk.size);
      entries = extents.map((e) => ({ start: e.offset, length: e.length, depth: e.depth, kind: e.kind, file: e.path }));
    } finally {
      await closeQuietly(disk);
    }
    emit(ctx, entries, () =>
      formatTable(
        [{ header: 'Offset' }, { header: 'Length' }, { header: 'Mapped' }, { header: 'Depth', align: 'right' }, { header: 'File' }],
        entries.map((e) => [hex(e.start), hex(e.length), e.kind, String(e.depth), e.file ?? '-']),
      ),
    );
    return 0;
  },
};
