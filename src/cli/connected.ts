// `vmsnap --connect URI ...`: the machine verbs run on a libvirt connection instead of the library. The command's
// own grammar (arguments, flags, choices) is parsed as usual; only the verbs a source can serve are accepted.
import { LibvirtSource, snapshotTreeOf } from '../engine/libvirt';
import type { MachineSource, PowerAction, SourceSnapshotNode, SourceSnapshotTree } from '../engine/sources';
import { UsageError, type Invocation } from './args';
import { emit, type CliContext } from './output';
import { drawTree } from './snapshot-tree';
import { stopTimeoutMs } from './vm/power';
import { formatDate } from './vm/shared';
import { formatTable } from './table';

type Handler = (inv: Invocation, ctx: CliContext, source: MachineSource) => Promise<number>;

/** The verbs `--connect` serves, by command path. */
const HANDLERS: Record<string, Handler> = {
  'vm list': vmList,
  'vm show': vmShow,
  'vm start': (inv, ctx, s) => power(inv, ctx, s, 'start'),
  'vm stop': vmStop,
  'vm pause': (inv, ctx, s) => power(inv, ctx, s, 'pause'),
  'vm resume': (inv, ctx, s) => power(inv, ctx, s, 'resume'),
  'snapshot take': snapshotTake,
  'snapshot list': snapshotList,
  'snapshot revert': snapshotRevert,
  'snapshot delete': snapshotDelete,
  'snapshot edit': snapshotEdit,
  clone,
};

/** Commands that read --connect themselves (they act on the library and use the connection as a target). */
const OWN_CONNECT = new Set(['vm export']);

/** True when the invocation runs on a connection (the caller then calls runConnected). */
export function isConnected(inv: Invocation): boolean {
  return inv.global.connect !== undefined && !OWN_CONNECT.has(inv.path.join(' '));
}

export function runConnected(inv: Invocation, ctx: CliContext): Promise<number> {
  const key = inv.path.join(' ');
  const handler = HANDLERS[key];
  if (handler === undefined) {
    throw new UsageError(`--connect applies to ${Object.keys(HANDLERS).join(', ')}; "${key}" works on the library only.`, inv.path);
  }
  if (inv.global.library !== undefined) throw new UsageError('Give --connect or --library, not both: one names a libvirt connection, the other a library.', inv.path);
  return handler(inv, ctx, new LibvirtSource(inv.global.connect as string));
}

async function vmList(_inv: Invocation, ctx: CliContext, source: MachineSource): Promise<number> {
  const machines = await source.listMachines();
  emit(ctx, machines, () => {
    if (machines.length === 0) return `No domains on ${source.id}.`;
    return formatTable(
      [{ header: 'NAME' }, { header: 'UUID' }, { header: 'POWER' }, { header: 'SNAPSHOTS', align: 'right' }, { header: 'CURRENT' }, { header: 'MAC' }],
      machines.map((m) => [m.name, m.uuid, m.powerState, String(m.snapshotCount), m.currentSnapshot ?? '-', m.macAddresses.join(' ') || '-']),
    );
  });
  return 0;
}

async function vmShow(inv: Invocation, ctx: CliContext, source: MachineSource): Promise<number> {
  const m = await source.showMachine(inv.required('VM'));
  if (ctx.out.json) {
    emit(ctx, { ...m, source: { id: source.id, kind: source.kind, capabilities: source.capabilities } }, () => '');
    return 0;
  }
  const tree = snapshotTreeOf(m, m.snapshots);
  const lines = [
    `Machine:     ${m.name}`,
    `Source:      ${source.label}`,
    `UUID:        ${m.uuid}`,
    `MAC:         ${m.macAddresses.join(' ') || '-'}`,
    `Power:       ${m.powerState}`,
    `CPUs:        ${m.cpus}`,
    `Memory:      ${m.memoryMiB} MiB`,
    ...m.disks.map((d) => `Disk ${d.target}:${' '.repeat(Math.max(1, 7 - d.target.length))}${d.path ?? '(not a file)'}${d.format === null ? '' : ` (${d.format})`}`),
    `Current:     ${m.currentSnapshot === null ? 'descends from no snapshot' : `descends from snapshot "${m.currentSnapshot}"`}`,
    `Snapshots:   ${m.snapshots.length === 0 ? 'none' : String(m.snapshots.length)}`,
    ...treeLines(tree).map((l) => `  ${l}`),
  ];
  ctx.out.print(lines.join('\n'));
  return 0;
}

async function power(inv: Invocation, ctx: CliContext, source: MachineSource, action: PowerAction): Promise<number> {
  const vm = inv.required('VM');
  const state = await source.power(vm, action);
  const words: Record<PowerAction, string> = { start: 'Started', stop: 'Shut down', 'force-off': 'Forced off', pause: 'Paused', resume: 'Resumed' };
  emit(ctx, { powerState: state }, () => `${words[action]} "${vm}" on ${source.id}; it is ${state} now.`);
  return 0;
}

/** As `vm stop` for our machines: the guest is asked to shut down, then powered off after the time-out (--force: at once). */
async function vmStop(inv: Invocation, ctx: CliContext, source: MachineSource): Promise<number> {
  const vm = inv.required('VM');
  const timeoutMs = stopTimeoutMs(inv);
  const r = await source.stop(vm, { force: inv.flag('force'), ...(timeoutMs === undefined ? {} : { timeoutMs }) });
  emit(ctx, { ...r, powerState: 'off' }, () => {
    if (r.method === 'already-off') return `"${vm}" is already off on ${source.id}.`;
    const how =
      r.method === 'shutdown'
        ? 'the guest shut down when asked'
        : r.timedOut
          ? `the guest did not shut down within ${Math.round((timeoutMs ?? 60000) / 1000)} s, so it was powered off`
          : 'powered off at once';
    return `Stopped "${vm}" on ${source.id} (${how}).`;
  });
  return 0;
}

async function snapshotTake(inv: Invocation, ctx: CliContext, source: MachineSource): Promise<number> {
  const vm = inv.required('VM');
  const description = inv.value('description');
  const s = await source.takeSnapshot(vm, inv.required('NAME'), { ...(description === undefined ? {} : { description }), diskOnly: inv.flag('disk-only') });
  const what = s.hasMemory ? ' with its memory (reverting brings the machine back running)' : '';
  emit(ctx, s, () => `Took snapshot "${s.name}" of "${vm}" on ${source.id}${what}.`);
  return 0;
}

async function snapshotList(inv: Invocation, ctx: CliContext, source: MachineSource): Promise<number> {
  const tree = await source.snapshotTree(inv.required('VM'));
  emit(ctx, tree, () => [`Snapshots of "${tree.machineName}" on ${source.id}:`, ...treeLines(tree).map((l) => `  ${l}`)].join('\n'));
  return 0;
}

async function snapshotRevert(inv: Invocation, ctx: CliContext, source: MachineSource): Promise<number> {
  const vm = inv.required('VM');
  const save = inv.value('save-current');
  const r = await source.revert(vm, inv.required('SNAP'), save === undefined ? { discardCurrent: true } : { saveCurrentAs: save });
  emit(ctx, r, () => {
    const kept = r.saved === null ? '' : ` The previous current state was saved as snapshot "${r.saved.name}".`;
    return `Reverted "${vm}" to snapshot "${r.snapshot.name}" on ${source.id}; it is ${r.powerState} now.${kept}`;
  });
  return 0;
}

async function snapshotDelete(inv: Invocation, ctx: CliContext, source: MachineSource): Promise<number> {
  const vm = inv.required('VM');
  const deleted = await source.deleteSnapshot(vm, inv.required('SNAP'), { children: inv.flag('children'), signal: ctx.signal });
  emit(ctx, { deleted }, () => `Deleted ${deleted.length === 1 ? 'snapshot' : 'snapshots'} ${deleted.map((d) => `"${d}"`).join(', ')} of "${vm}" on ${source.id}.`);
  return 0;
}

async function snapshotEdit(inv: Invocation, ctx: CliContext, source: MachineSource): Promise<number> {
  const name = inv.value('name');
  const description = inv.value('description');
  if (name === undefined && description === undefined) throw new UsageError('Nothing to change: give --name NEW, --description TEXT, or both.', inv.path);
  const s = await source.editSnapshot(inv.required('VM'), inv.required('SNAP'), { ...(name === undefined ? {} : { name }), ...(description === undefined ? {} : { description }) });
  emit(ctx, s, () => `Snapshot "${s.name}"${s.description === '' ? ' has no description' : `: ${s.description.replace(/\n/g, ' ')}`}.`);
  return 0;
}

async function clone(inv: Invocation, ctx: CliContext, source: MachineSource): Promise<number> {
  if (inv.value('dir') !== undefined) throw new UsageError('--dir applies to the library only: a libvirt clone\'s disks go next to its source\'s.', inv.path);
  const vm = inv.required('VM');
  const from = inv.value('from');
  const kind = inv.flag('linked') ? 'linked' : 'full';
  const r = await source.clone(vm, inv.required('NEW_NAME'), { kind, signal: ctx.signal, ...(from === undefined ? {} : { from }) });
  emit(ctx, r, () => {
    const first = r.takenSnapshot === null ? [] : [`Took external snapshot "${r.takenSnapshot.name}" of "${vm}" first: a linked clone needs a frozen layer to share.`];
    const m = r.machine;
    return [...first, `Made ${kind} clone "${m.name}" (UUID ${m.uuid}, MAC ${m.macAddresses.join(' ') || '-'}) of "${vm}" on ${source.id}.`, ...m.disks.map((d) => `Disk ${d.target}: ${d.path ?? '-'}`)].join('\n');
  });
  return 0;
}

/** A source's snapshot tree as text: '*' on the snapshot the current state descends from, "You are here". */
function treeLines(tree: SourceSnapshotTree): string[] {
  return drawTree(tree.roots, (n: SourceSnapshotNode) => {
    const s = n.snapshot;
    return s === null
      ? '▶ You are here'
      : `${s.name}${n.isCurrentParent ? ' *' : ''}  (${formatDate(s.createdAt)})${s.hasMemory ? '  [running, with memory]' : ''}${s.location === 'external' ? '  [external]' : ''}`;
  });
}
