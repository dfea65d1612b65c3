// `vmsnap diff`: what changed between two states of a machine, from the layers' allocation maps.
import type { Command } from './args';
import { emit, longOperation, type CliContext } from './output';
import { formatTable } from './table';
import { formatSize, formatSizeExact } from './units';
import { openLibrary, plural, VM_ARG } from './vm/shared';

const hex = (n: number): string => `0x${n.toString(16)}`;

export const diffCommand: Command<CliContext> = {
  name: 'diff',
  summary: 'how many bytes differ between two states of a machine (snapshots or "current"), and where',
  description:
    'Computed from the layers\' allocation maps: fast, but a range rewritten with the same data counts as changed.\n' +
    '--exact reads both states and counts only bytes that really differ.',
  args: [
    VM_ARG,
    { name: 'A', description: 'a snapshot (name or id), or "current"' },
    { name: 'B', description: 'a snapshot (name or id), or "current"' },
  ],
  flags: [{ name: 'exact', kind: 'boolean', description: 'compare the content, not only the allocation maps' }],
  examples: ['vmsnap diff dev Base current', 'vmsnap diff dev "Before upgrade" "After upgrade" --json'],
  async run(inv, ctx) {
    const vm = inv.required('VM');
    const a = inv.required('A');
    const b = inv.required('B');
    const lib = await openLibrary(inv, ctx);
    const d = await longOperation(ctx, `Comparing ${a} and ${b}`, (op) => lib.diff(vm, a, b, { ...op, exact: inv.flag('exact') }));
    if (ctx.out.json) {
      emit(ctx, d, () => '');
      return 0;
    }
    const m = await lib.show(vm);
    const label = (s: { snapshotId: string | null }): string =>
      s.snapshotId === null ? 'the current state' : `snapshot "${m.snapshots.find((x) => x.id === s.snapshotId)?.name ?? s.snapshotId}"`;
    const lines = [`${formatSizeExact(d.bytes)} differ between ${label(d.a)} and ${label(d.b)} of "${m.name}".`];
    for (const disk of d.disks) {
      if (d.disks.length > 1 || disk.ranges.length > 0) lines.push('', `Disk ${disk.index}: ${formatSize(disk.bytes)} in ${plural(disk.ranges.length, 'range')}`);
      if (disk.ranges.length === 0) continue;
      lines.push(
        formatTable(
          [{ header: 'OFFSET' }, { header: 'AT', align: 'right' }, { header: 'LENGTH', align: 'right' }, { header: 'END', align: 'right' }],
          disk.ranges.map((r) => [hex(r.offset), formatSize(r.offset), formatSize(r.length), formatSize(r.offset + r.length)]),
        ),
      );
    }
    ctx.out.print(lines.join('\n'));
    return 0;
  },
};
