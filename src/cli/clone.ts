// `vmsnap clone`: a new machine (new UUID, new MAC) from a machine's current state or one of its snapshots.
import type { Command } from './args';
import { emit, longOperation, type CliContext } from './output';
import { formatSize } from './units';
import { openLibrary, shortId, VM_ARG } from './vm/shared';

export const cloneCommand: Command<CliContext> = {
  name: 'clone',
  summary: 'clone a machine, linked (instant, shares the source snapshot) or full (standalone copy)',
  description:
    'A linked clone\'s disk is an overlay on the source snapshot: instant and almost no space, but the snapshot\n' +
    'is locked while the clone exists. Linked-cloning the current state first takes a snapshot of the source.\n' +
    'A full clone flattens the chain into a standalone sparse image (Ctrl-C leaves nothing behind).\n' +
    'The source must be powered off; it is not changed in any way you can see.',
  args: [VM_ARG, { name: 'NEW_NAME', description: 'the clone\'s name' }],
  flags: [
    { name: 'linked', kind: 'boolean', description: 'a linked clone' },
    { name: 'full', kind: 'boolean', description: 'a full clone' },
    { name: 'from', kind: 'value', valueName: 'SNAP', description: 'clone this snapshot (name or id) instead of the current state' },
    { name: 'dir', kind: 'value', valueName: 'DIR', description: 'put the clone\'s folder in DIR instead of the library' },
  ],
  choices: [{ flags: ['linked', 'full'], required: true, reason: 'Say which kind of clone to make' }],
  examples: ['vmsnap clone dev dev-test --linked --from "Before upgrade"', 'vmsnap clone dev dev-copy --full'],
  async run(inv, ctx) {
    const vm = inv.required('VM');
    const kind = inv.flag('linked') ? 'linked' : 'full';
    const from = inv.value('from');
    const dir = inv.value('dir');
    const lib = await openLibrary(inv, ctx);
    const r = await longOperation(ctx, `Cloning ${vm}`, (op) =>
      lib.clone(vm, inv.required('NEW_NAME'), { ...op, kind, ...(from === undefined ? {} : { from }), ...(dir === undefined ? {} : { dir }) }),
    );
    if (ctx.out.json) {
      emit(ctx, r, () => '');
      return 0;
    }
    const m = r.machine;
    const lines: string[] = [];
    if (r.takenSnapshot) {
      lines.push(`Took snapshot "${r.takenSnapshot.name}" (id ${shortId(r.takenSnapshot.id)}) of "${vm}" first: a linked clone needs a frozen state to share.`);
    }
    const source = m.clonedFrom ? await lib.show(m.clonedFrom.machineId) : undefined;
    const snap = source?.snapshots.find((s) => s.id === m.clonedFrom?.snapshotId);
    const at = snap ? `snapshot "${snap.name}"` : 'the current state';
    const onDisk = m.snapshots.reduce((n, s) => n + s.sizeBytes, m.currentSizeBytes);
    lines.push(`Made ${kind} clone "${m.name}" (id ${shortId(m.id)}, MAC ${m.macAddress}) of "${source?.name ?? vm}" from ${at}; ${formatSize(onDisk)} on disk.`);
    lines.push(`Disk 0: ${m.disks[0]?.path ?? '-'}`);
    ctx.out.print(lines.join('\n'));
    return 0;
  },
};
