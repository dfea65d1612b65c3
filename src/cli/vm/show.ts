// `vmsnap vm show`: one machine in full: identity, disks, snapshots, lineage and sizes.
import { formatSnapshotTree } from '../snapshot-tree';
import type { Command } from '../args';
import { emit, type CliContext } from '../output';
import { formatSize, formatSizeExact } from '../units';
import { describeLineage, formatDate, openLibrary, VM_ARG } from './shared';
import { describeDevices, describePolicy } from './edit';
import { describeGuest } from './power';

export const vmShowCommand: Command<CliContext> = {
  name: 'show',
  summary: 'show a machine: identity, disks, snapshots, lineage and sizes',
  args: [VM_ARG],
  flags: [],
  examples: ['vmsnap vm show dev', 'vmsnap vm show dev --json'],
  async run(inv, ctx) {
    const lib = await openLibrary(inv, ctx);
    const m = await lib.show(inv.required('VM'));
    const guest = m.powerState === 'off' ? null : await lib.guestInfo(m.id);
    if (ctx.out.json) {
      emit(ctx, { ...m, guest }, () => '');
      return 0;
    }
    const [machines, tree] = await Promise.all([lib.list(), lib.snapshotTree(m.id)]);
    const parent = m.snapshots.find((s) => s.id === m.current);
    const lines = [
      `Machine:     ${m.name}`,
      `ID:          ${m.id}`,
      `MAC:         ${m.macAddress}`,
      `Power:       ${m.powerState}`,
      ...describeGuest(guest),
      `CPUs:        ${m.cpus}`,
      `Memory:      ${m.memoryMiB} MiB`,
      `Created:     ${formatDate(m.createdAt)}`,
      `Folder:      ${m.folder}`,
      `Lineage:     ${m.clonedFrom ? describeLineage(m.clonedFrom, machines) : 'original'}`,
    ];
    if (m.note !== '') lines.push(`Note:        ${m.note.replace(/\n/g, ' ')}`);
    for (const d of m.disks) lines.push(`Disk ${d.index}:      ${d.path} (${formatSizeExact(d.virtualSize)} virtual)`);
    lines.push(...describeDevices(m));
    lines.push(`Auto:        ${m.autoCheckpoints === null ? 'off' : describePolicy(m.autoCheckpoints)}`);
    if (m.kvmFailedAt !== null) lines.push(`Accelerator: TCG (KVM could not run this guest, ${formatDate(m.kvmFailedAt)})`);
    lines.push(
      `Current:     ${parent ? `descends from snapshot "${parent.name}"` : 'descends from no snapshot'}; ${formatSize(m.currentChangedBytes)} changed since, ${formatSize(m.currentSizeBytes)} on disk`,
      `Snapshots:   ${m.snapshots.length === 0 ? 'none' : `${m.snapshots.length}, ${formatSize(m.snapshots.reduce((n, s) => n + s.sizeBytes, 0))} on disk`}`,
    );
    if (m.snapshots.length > 0) lines.push(...formatSnapshotTree(tree).map((l) => `  ${l}`));
    ctx.out.print(lines.join('\n'));
    return 0;
  },
};
